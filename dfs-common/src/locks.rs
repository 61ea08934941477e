//! Wire messages of the lock service (`/v1/locks/...`, bincode bodies like `/v1/dir`).
//!
//! Two classes of lock live side by side on every file id and never conflict with each
//! other:
//! - `Open`: the writers' turn. A client takes it `Exclusive` when a file is opened for
//!   writing and releases it after the last close has stored the file. Readers never take it.
//! - `Advisory`: flock(2), fcntl(2) byte ranges and `dfs lock`; shared or exclusive.
//!
//! A lock is owned by `(client, owner)`: the client id of the `x-dfs-client` header and an
//! owner within it (the kernel's lock owner, or a process id for the command line). It is a
//! lease: it expires `lease_ms` after its grant or last renewal; `Renew` extends every lock
//! of the calling client at once. Every grant carries a fencing token that increases per
//! file id; a store sends the token of its `Open` lock in `x-dfs-fence`, and the server
//! rejects it (`FsError::Stale`) unless that lock is still held with that token.
//!
//! Resources (all `POST`):
//! - `/v1/locks/acquire` — `LockRequest` → `LockReply` (waits up to `wait_ms` for conflicts).
//! - `/v1/locks/acquire-many` — `Vec<LockRequest>` → `Vec<LockReply>`: taken in the order
//!   given, all or nothing (on a conflict the ones taken are released); used by transactions,
//!   which sort by file id so two batches never deadlock.
//! - `/v1/locks/release` — `ReleaseRequest` → `ReleaseReply`. Releasing what you do not hold
//!   is `FsError::NotFound` and changes nothing.
//! - `/v1/locks/test` — `LockRequest` → `TestReply` (F_GETLK: who would conflict; never waits).
//! - `/v1/locks/renew` — `RenewRequest` → `RenewReply`.
//! - `/v1/locks/list` — `ListRequest` → `Vec<LockInfo>`.

use crate::types::Ino;
use serde::{Deserialize, Serialize};

/// Header on `PUT /v1/files/{ino}`: the fencing token of the writer's `Open` lock.
pub const HDR_FENCE: &str = "x-dfs-fence";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockClass {
    Open,
    Advisory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Bytes `start..=end` of a file; `end == u64::MAX` means to the end of the file, whatever
/// its length. Whole-file locks (flock, `Open`) are `0..=u64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockRange {
    pub start: u64,
    pub end: u64,
}

impl LockRange {
    pub const WHOLE: LockRange = LockRange {
        start: 0,
        end: u64::MAX,
    };

    pub fn overlaps(&self, other: &LockRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// The owner, within a client, of its writers' `Open` locks.
pub const OPEN_OWNER: u64 = 0;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    pub ino: Ino,
    pub class: LockClass,
    pub mode: LockMode,
    pub range: LockRange,
    /// The owner within the calling client.
    pub owner: u64,
    /// Process id shown to others (F_GETLK, `dfs locks`); informational.
    pub pid: u32,
    /// Who to name in conflict messages (user@host, principal); informational.
    pub label: String,
    /// How long to wait for conflicting locks to go; 0 = try once. The server caps it.
    pub wait_ms: u32,
}

/// One held lock, as shown to others.
impl LockRequest {
    /// The writers' turn on `ino` for the calling client: its `Open` lock, exclusive, whole
    /// file, named `label` to others; no wait.
    pub fn writers_turn(ino: Ino, label: String) -> LockRequest {
        LockRequest {
            ino,
            class: LockClass::Open,
            mode: LockMode::Exclusive,
            range: LockRange::WHOLE,
            owner: OPEN_OWNER,
            pid: 0,
            label,
            wait_ms: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub ino: Ino,
    pub class: LockClass,
    pub mode: LockMode,
    pub range: LockRange,
    pub client: u64,
    pub owner: u64,
    pub pid: u32,
    pub label: String,
    pub token: u64,
    /// Milliseconds until the lease runs out unless renewed.
    pub expires_in_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockReply {
    /// Granted (or re-granted to the same owner: an upgrade, downgrade or range change of
    /// its own lock, POSIX-style). `token` is the fencing token.
    Granted { token: u64, lease_ms: u64 },
    /// Still held by someone else when the wait ran out.
    Conflict { holder: LockInfo },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub ino: Ino,
    pub class: LockClass,
    pub owner: u64,
    /// The bytes to unlock (POSIX may split a held range); `None` = everything this owner
    /// holds on `ino` in `class`.
    pub range: Option<LockRange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseReply {
    /// How many held locks were removed or shrunk.
    pub released: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestReply {
    Free,
    Conflict { holder: LockInfo },
}

/// Renews every lock of the calling client. `held` lists the (ino, class, owner) the
/// client believes it holds; the answer names those it no longer holds (expired and
/// taken, or released by an admin), so the client can fail their writers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub held: Vec<(Ino, LockClass, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewReply {
    pub renewed: u32,
    pub lost: Vec<(Ino, LockClass, u64)>,
    pub lease_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    /// Only this file; `None` = every lock (paged by `after`).
    pub ino: Option<Ino>,
    pub after: Option<Ino>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_overlap_inclusively() {
        let a = LockRange { start: 0, end: 9 };
        let b = LockRange { start: 9, end: 20 };
        let c = LockRange { start: 10, end: 20 };
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
        assert!(LockRange::WHOLE.overlaps(&c));
    }
}
