//! The server's shared error conversions: a redb error of one of its databases (which one
//! the caller names) and a blocking or spawned task that failed, each as the `FsError`
//! users see. Written once here so the namespace, the lock service and the services agree.
//!
//! Owns: those conversions. Must not invent texts of its own beyond what they always said,
//! or decide anything on an error's text.

use dfs_common::FsError;

/// Maps any redb error of the database called `database` ("metadata database", "lock
/// database") to the error users see; a failed storage I/O is recorded first
/// (`storage_failure`), a full disk is `NoSpace`.
pub fn db_err(database: &str, e: impl Into<redb::Error>) -> FsError {
    let e: redb::Error = e.into();
    crate::storage_failure::note(database, &e);
    if let redb::Error::Io(io) = &e {
        if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
            return FsError::NoSpace;
        }
    }
    FsError::Io(format!("{database}: {e}"))
}

/// A blocking or spawned task of a request that failed (it panicked or was cancelled).
pub fn join_err(e: tokio::task::JoinError) -> FsError {
    FsError::Io(format!("internal task failed: {e}"))
}
