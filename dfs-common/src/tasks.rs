//! Background tasks whose end is not dropped: `watch` awaits a spawned task's handle and
//! logs its panic as an error instead of discarding the `JoinError` (`let _ = task.await`
//! did); a task the process cannot do without (`Vital::Yes`) takes the process down with a
//! non-zero exit, so a service manager restarts it rather than leaving a node that looks
//! alive but no longer, say, expires leases. Used by both daemons.
//!
//! Owns: what happens when a background task ends badly. Must not start tasks or decide
//! which are vital (the binaries do).

use std::future::Future;
use tokio::task::{JoinError, JoinHandle};

/// The exit status of a process whose vital background task died (EX_SOFTWARE).
pub const EXIT_TASK_DIED: i32 = 70;

/// Whether the process can go on without a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vital {
    /// Its death makes the process useless: exit with `EXIT_TASK_DIED`.
    Yes,
    /// Its death is logged; the process goes on.
    No,
}

/// Awaits `task` (called `name` in the log) on a task of its own; the returned handle ends
/// when it does, so a shutdown can still wait for it. A panic is logged as an error (and
/// ends the process if `vital`); a cancellation (an abort at shutdown) is not an error.
pub fn watch<T: Send + 'static>(
    name: &'static str,
    task: JoinHandle<T>,
    vital: Vital,
) -> JoinHandle<()> {
    tokio::spawn(async move { ended(name, task.await.map(drop), vital) })
}

/// Spawns `fut` and watches it (`watch`).
pub fn spawn_watched<F>(name: &'static str, fut: F, vital: Vital) -> JoinHandle<()>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    watch(name, tokio::spawn(fut), vital)
}

fn ended(name: &str, outcome: Result<(), JoinError>, vital: Vital) {
    let Err(e) = outcome else {
        return;
    };
    if !e.is_panic() {
        log::debug!("background task {name} was cancelled");
        return;
    }
    log::error!("background task {name} panicked: {}", panic_text(e));
    if vital == Vital::Yes {
        log::error!("{name} is vital: exiting (status {EXIT_TASK_DIED})");
        std::process::exit(EXIT_TASK_DIED);
    }
}

fn panic_text(e: JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_of_a_task_that_is_not_vital_is_survived() {
        let watcher = spawn_watched("test task", async { panic!("boom") }, Vital::No);
        watcher.await.expect("the watcher itself ends normally");
    }

    #[tokio::test]
    async fn an_abort_is_not_a_panic() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        // Vital, yet the process goes on: a cancelled task did not die.
        watch("aborted task", task, Vital::Yes).await.unwrap();
    }

    #[tokio::test]
    async fn the_panic_message_is_kept() {
        let e = tokio::spawn(async { panic!("disk on fire") })
            .await
            .unwrap_err();
        assert_eq!(panic_text(e), "disk on fire");
    }
}
