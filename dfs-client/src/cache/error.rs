//! The cache manager's error (`CacheError`): what failed, with its cause kept as its
//! `source()`: the server's answer (`FsError`), the port's own failures (`PortError`), a
//! local file of the cache (`io::Error`) or the cache index (`redb::Error`). Converted
//! with `From`; it becomes an errno at the FUSE edge (`dfs-fuse`'s `fuse::attrs::errno`),
//! and an `FsError` where the path API or the control socket hands it on (`From` below).
//!
//! Owns: the type, its conversions, and the questions the cache asks of an error (by
//! variant, never by its text). Must not pick errnos.

use crate::port::PortError;
use dfs_common::FsError;
use std::sync::Arc;

/// Why a cache manager call failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file-system error: the server's answer, or a rule the cache applies itself (a
    /// name too long, an open of a directory, ...).
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A call through the port that failed other than by the server's answer: a fetch
    /// cut short or whose bytes failed their check, a local file of the transfer.
    #[error(transparent)]
    Port(PortError),
    /// A local file of the cache: a copy, a part file, `lost+found`.
    #[error("cache file: {0}")]
    Local(#[from] std::io::Error),
    /// The cache index (`index.redb`); shared, since one commit answers several waiters.
    #[error("cache index: {0}")]
    Index(#[source] Arc<redb::Error>),
    /// The cache index's writer thread has stopped.
    #[error("cache index: its writer has stopped")]
    IndexStopped,
    /// The fetch filling the copy a handle reads failed: every reader gets its error, as
    /// the fetch's own caller would have reported it (the fetch logs the whole error).
    #[error("fetch of this file failed: {0}")]
    Fetch(#[source] FsError),
}

impl From<PortError> for CacheError {
    /// The server's answer becomes `Fs` (so the cache decides on it in one place); the
    /// port's own failures stay `Port`, with their cause.
    fn from(e: PortError) -> CacheError {
        match e {
            PortError::Answer(e) => CacheError::Fs(e),
            e => CacheError::Port(e),
        }
    }
}

impl From<redb::Error> for CacheError {
    fn from(e: redb::Error) -> CacheError {
        CacheError::Index(Arc::new(e))
    }
}

/// Index errors of every kind redb has, through `redb::Error`.
macro_rules! index_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for CacheError {
            fn from(e: $t) -> CacheError {
                CacheError::from(redb::Error::from(e))
            }
        }
    )*};
}
index_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl CacheError {
    /// The server's file-system error, if this is one.
    pub fn fs(&self) -> Option<&FsError> {
        match self {
            CacheError::Fs(e) => Some(e),
            _ => None,
        }
    }

    /// The server says the inode does not exist (never a local file missing).
    pub fn is_not_found(&self) -> bool {
        matches!(self.fs(), Some(FsError::NotFound))
    }

    /// The server could not be reached, or a fetch from it broke off: a cached copy may
    /// stand in.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            CacheError::Fs(FsError::Unavailable(_)) | CacheError::Port(PortError::CutShort { .. })
        )
    }
}

impl From<CacheError> for FsError {
    /// The error as the path API and the control socket report it: the errno the FUSE
    /// edge gives the same error, with the cause as text.
    fn from(e: CacheError) -> FsError {
        match e {
            CacheError::Fs(e) => e,
            CacheError::Port(e) => FsError::from(e),
            CacheError::Local(e) => FsError::from_io(&e),
            e @ (CacheError::Index(_) | CacheError::IndexStopped) => FsError::Io(e.to_string()),
            CacheError::Fetch(e) => e,
        }
    }
}

pub type CacheResult<T> = Result<T, CacheError>;
