//! The server's one unrecoverable state: a database (namespace or lock table) whose storage
//! failed an I/O. redb latches such a failure (every later transaction answers
//! `PreviousIo`) and what reached the disk is then unknown, so the only way on is the
//! one PostgreSQL takes after a failed fsync: stop, and let the restart recover from the
//! log (`crate::wal` replays what was durable; clients see a new epoch and revalidate).
//!
//! Owns: recording the first such failure and waking whoever waits for it (the binary,
//! which exits). Must not: decide anything else about errors, or stop the process itself
//! (tests open databases in process and read `failed()`).

use std::sync::OnceLock;
use tokio::sync::watch;

fn signal() -> &'static watch::Sender<Option<String>> {
    static FAILED: OnceLock<watch::Sender<Option<String>>> = OnceLock::new();
    FAILED.get_or_init(|| watch::channel(None).0)
}

/// Records `err` of database `what` if it is a failure of its storage (the first one is
/// kept). Called by the databases' error conversions.
pub fn note(what: &str, err: &redb::Error) {
    if matches!(err, redb::Error::Io(_) | redb::Error::PreviousIo) {
        signal().send_if_modified(|failed| {
            if failed.is_some() {
                return false;
            }
            *failed = Some(format!("{what}: {err}"));
            true
        });
    }
}

/// The first storage failure recorded, if any.
pub fn failed() -> Option<String> {
    signal().borrow().clone()
}

/// Waits until a storage failure is recorded; returns its description.
pub async fn wait() -> String {
    let mut rx = signal().subscribe();
    // The sender is a static, never dropped: `wait_for` ends only with a failure.
    let failed = rx
        .wait_for(Option::is_some)
        .await
        .map(|failed| failed.clone().unwrap_or_default());
    failed.unwrap_or_default()
}
