//! Wire messages of the transaction service (`/v1/tx/...`, bincode bodies like `/v1/dir`).
//!
//! A transaction batches file operations into one atomic unit: the client begins one,
//! stages file contents (each uploaded, fsynced and held for the transaction, invisible to
//! everyone), then commits the list of operations. The server applies the whole list in ONE
//! durable metadata transaction: either every operation and every precondition holds and
//! all of it is visible at once, or nothing changes. A crash of the server at any moment
//! leaves the batch wholly applied or wholly absent.
//!
//! Paths in operations are `/`-separated byte strings resolved by the server from the root
//! of the file system, in order, inside the commit (so `mkdir /a` then `put /a/b` works).
//! Empty components and `.` are skipped; `..` is refused; symbolic links are not followed.
//!
//! Preconditions (`ExpectVersion`, `ExpectAbsent`) may stand anywhere in the list and all
//! refer to the state BEFORE the batch: the first one that does not hold fails the commit
//! (`TxFailure::Precondition`), and nothing changes.
//!
//! Resources (the transaction belongs to the client named by `x-dfs-client` that began it;
//! to any other client it does not exist):
//! - `POST /v1/tx/begin` — `BeginRequest` → `BeginReply` (id and lease).
//! - `PUT /v1/tx/{id}/blobs` — the raw contents of one file, streamed; `content-length`
//!   required, `x-dfs-sha256` optional (checked). → `Staged`. The blob is fsynced and
//!   recorded durably as held by the transaction (not referenced by any file). Renews the lease.
//! - `POST /v1/tx/{id}/commit` — `CommitRequest` → `CommitReply`. Ends the transaction
//!   either way: `Committed` (every other client's promise on what changed is broken, once
//!   each, in one grouped callback frame) or `Failed` (nothing changed; staged blobs are
//!   released). Files whose contents the batch replaces are locked first (the lock
//!   service's `Open` class, taken with acquire-many in inode order) so the batch waits for
//!   a client that has one open for writing; if the wait runs out the commit fails
//!   (`TxFailure::Locked`).
//! - `POST /v1/tx/{id}/abort` — empty body → `TxStatus` (what the transaction came to).
//! - `POST /v1/tx/{id}/renew` — empty body → `RenewReply`. A transaction that is not renewed
//!   (or used) within its lease is aborted by the server and its staged blobs released: a
//!   client that disappears leaves nothing behind. The record of open transactions is on
//!   disk, so this also holds across server restarts.
//! - `GET /v1/tx/{id}` — → `TxStatus`: open, committed (with its results) or aborted. The
//!   outcome of a finished transaction is kept for a day, so a client whose commit request
//!   was cut off (server crash) can learn whether it was applied.
//!
//! Errors: an unknown transaction (or one of another client) is `FsError::NotFound`; one
//! that is no longer open is `FsError::Stale` with the reason.

use crate::error::FsError;
use crate::locks::LockInfo;
use crate::types::{Attr, BlobId, Ino};
use serde::{Deserialize, Serialize};

/// Path prefix of the transaction resources.
pub const PREFIX: &str = "/v1/tx/";
/// Most operations one commit may carry.
pub const MAX_OPS: usize = 200_000;
/// Largest commit request body the server reads.
pub const MAX_COMMIT_REQUEST: usize = 64 << 20;
/// Default permission bits of files a batch creates.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Default permission bits of directories a batch creates.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

/// A transaction id (never reused by a server).
pub type TxId = u64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginRequest {
    /// Who to name in lock conflicts (user@host); informational.
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginReply {
    pub tx: TxId,
    /// Renew (or use) the transaction at least this often, or it is aborted.
    pub lease_ms: u64,
}

/// A staged blob. Empty contents are not stored: `blob` is `None` and `size` 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    pub blob: Option<BlobId>,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewReply {
    pub lease_ms: u64,
}

/// One operation of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxOp {
    /// The file's whole contents become `blob` (staged in this transaction; `None` = empty).
    /// A missing file is created with `mode` (default `DEFAULT_FILE_MODE`); an existing one
    /// must be a regular file and keeps its mode.
    Put {
        path: Vec<u8>,
        blob: Option<BlobId>,
        mode: Option<u32>,
    },
    /// A new empty regular file; an existing name is `Exists`.
    Create { path: Vec<u8>, mode: u32 },
    /// A new directory; an existing name is `Exists`.
    Mkdir { path: Vec<u8>, mode: u32 },
    /// Removes a file, symbolic link or empty directory.
    Remove { path: Vec<u8> },
    /// POSIX rename: replaces `to` if it is a file, or an empty directory when `from` is one.
    Rename { from: Vec<u8>, to: Vec<u8> },
    /// Sets the permission bits.
    SetMode { path: Vec<u8>, mode: u32 },
    /// Precondition: `path` exists and is at `version` (before the batch).
    ExpectVersion { path: Vec<u8>, version: u64 },
    /// Precondition: `path` does not exist (before the batch).
    ExpectAbsent { path: Vec<u8> },
}

/// Shows a path of an operation (quoted, batch-file style, if it has blanks or quotes).
pub fn show_path(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(p);
    let s = if s.starts_with('/') {
        s.into_owned()
    } else {
        format!("/{s}")
    };
    if s.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '\\') {
        format!("'{}'", s.replace('\'', "'\\''"))
    } else {
        s
    }
}

impl TxOp {
    /// The operation as a line of a batch file would say it (without local file names).
    pub fn describe(&self) -> String {
        match self {
            TxOp::Put { path, .. } => format!("put {}", show_path(path)),
            TxOp::Create { path, mode } => format!("create {} {mode:o}", show_path(path)),
            TxOp::Mkdir { path, mode } => format!("mkdir {} {mode:o}", show_path(path)),
            TxOp::Remove { path } => format!("rm {}", show_path(path)),
            TxOp::Rename { from, to } => format!("mv {} {}", show_path(from), show_path(to)),
            TxOp::SetMode { path, mode } => format!("chmod {mode:o} {}", show_path(path)),
            TxOp::ExpectVersion { path, version } => {
                format!("expect-version {} {version}", show_path(path))
            }
            TxOp::ExpectAbsent { path } => format!("expect-absent {}", show_path(path)),
        }
    }

    /// The main path the operation names.
    pub fn path(&self) -> &[u8] {
        match self {
            TxOp::Put { path, .. }
            | TxOp::Create { path, .. }
            | TxOp::Mkdir { path, .. }
            | TxOp::Remove { path }
            | TxOp::SetMode { path, .. }
            | TxOp::ExpectVersion { path, .. }
            | TxOp::ExpectAbsent { path } => path,
            TxOp::Rename { from, .. } => from,
        }
    }

    pub fn is_precondition(&self) -> bool {
        matches!(self, TxOp::ExpectVersion { .. } | TxOp::ExpectAbsent { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRequest {
    pub ops: Vec<TxOp>,
    /// Owner of files and directories the batch creates.
    pub uid: u32,
    pub gid: u32,
    /// How long to wait for writers of files the batch replaces (capped by the server).
    pub lock_wait_ms: u32,
}

/// What a committed transaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub tx: TxId,
    /// One per operation, in order: the attributes right after it of what it wrote,
    /// created or changed (`Put`, `Create`, `Mkdir`, `SetMode`); `None` for the others.
    pub results: Vec<Option<Attr>>,
    /// Inodes whose attributes or contents changed, each once.
    pub changed_inos: Vec<Ino>,
    /// Directory entries added, removed or replaced, each once.
    pub changed_entries: Vec<(Ino, Vec<u8>)>,
}

/// What a precondition expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expected {
    Version(u64),
    Absent,
}

/// What a precondition found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actual {
    Absent,
    Version(u64),
}

/// Why a commit failed. In every case nothing changed and the transaction is over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxFailure {
    /// Operation `op` (a precondition) did not hold.
    Precondition {
        op: u32,
        path: Vec<u8>,
        expected: Expected,
        actual: Actual,
    },
    /// Operation `op` could not be applied.
    Op {
        op: u32,
        what: String,
        error: FsError,
    },
    /// Operation `op` replaces the contents of a file another writer holds, and the lock
    /// wait ran out.
    Locked {
        op: u32,
        path: Vec<u8>,
        holder: LockInfo,
    },
}

impl TxFailure {
    /// The index of the operation that failed.
    pub fn op(&self) -> u32 {
        match self {
            TxFailure::Precondition { op, .. }
            | TxFailure::Op { op, .. }
            | TxFailure::Locked { op, .. } => *op,
        }
    }
}

impl std::fmt::Display for TxFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxFailure::Precondition {
                path,
                expected,
                actual,
                ..
            } => {
                let actual = match actual {
                    Actual::Absent => "does not exist".to_string(),
                    Actual::Version(v) => format!("version {v}"),
                };
                match expected {
                    Expected::Version(v) => write!(
                        f,
                        "expect-version {}: expected version {v}, actual {actual}",
                        show_path(path)
                    ),
                    Expected::Absent => write!(
                        f,
                        "expect-absent {}: expected no such file, actual {actual}",
                        show_path(path)
                    ),
                }
            }
            TxFailure::Op { what, error, .. } => write!(f, "{what}: {error}"),
            TxFailure::Locked { path, holder, .. } => write!(
                f,
                "put {}: the file is being written ({:?} {:?} lock held by {} (client {:#x}, \
                 pid {}), lease ends in {:.1} s); gave up waiting",
                show_path(path),
                holder.mode,
                holder.class,
                if holder.label.is_empty() {
                    "?"
                } else {
                    &holder.label
                },
                holder.client,
                holder.pid,
                holder.expires_in_ms as f64 / 1000.0
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitReply {
    Committed(Committed),
    Failed(TxFailure),
}

/// Why a transaction ended without committing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortReason {
    /// The client asked (`/abort`).
    Client,
    /// Its lease ran out: the client stopped renewing it.
    Expired,
    /// Its commit failed.
    Failed(TxFailure),
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortReason::Client => f.write_str("aborted by the client"),
            AbortReason::Expired => {
                f.write_str("aborted by the server: the client stopped renewing it")
            }
            AbortReason::Failed(why) => write!(f, "commit failed: {why}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxStatus {
    Open {
        expires_in_ms: u64,
        /// Blobs staged so far.
        staged: u32,
    },
    Committed(Committed),
    Aborted(AbortReason),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn failures_name_the_file_and_both_versions() {
        let f = TxFailure::Precondition {
            op: 3,
            path: b"/a/b".to_vec(),
            expected: Expected::Version(3),
            actual: Actual::Version(5),
        };
        assert_eq!(
            f.to_string(),
            "expect-version /a/b: expected version 3, actual version 5"
        );
        let f = TxFailure::Precondition {
            op: 0,
            path: b"x".to_vec(),
            expected: Expected::Absent,
            actual: Actual::Version(1),
        };
        assert_eq!(
            f.to_string(),
            "expect-absent /x: expected no such file, actual version 1"
        );
    }

    #[test]
    fn messages_round_trip() {
        let req = CommitRequest {
            ops: vec![
                TxOp::Put {
                    path: b"/a".to_vec(),
                    blob: Some(BlobId([1; 32])),
                    mode: None,
                },
                TxOp::Rename {
                    from: b"/a".to_vec(),
                    to: b"/b c".to_vec(),
                },
                TxOp::ExpectAbsent {
                    path: b"/z".to_vec(),
                },
            ],
            uid: 1,
            gid: 2,
            lock_wait_ms: 10,
        };
        assert_eq!(
            codec::decode::<CommitRequest>(&codec::encode(&req)).unwrap(),
            req
        );
        assert_eq!(req.ops[1].describe(), "mv /a '/b c'");
    }
}
