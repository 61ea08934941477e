//! flock(2) and fcntl(2) locks at the FUSE edge: kernel lock requests become advisory
//! locks of the cluster-wide lock service, owned by (this client, the kernel's lock owner).
//! A blocking request waits in a tokio task, bounded by the manager's lock wait (fuser
//! cannot interrupt a held request, so the wait must end by itself).

use super::attrs::errno;
use dfs_client::cache::CacheManager;
use dfs_client::port::Who;
use dfs_common::locks::{LockClass, LockMode, LockRange, LockRequest, ReleaseRequest};
use dfs_common::Ino;
use fuser::{ReplyEmpty, ReplyLock};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kernel says "to end of file" with OFFSET_MAX.
const KERNEL_EOF: u64 = i64::MAX as u64;

fn range(start: u64, end: u64) -> LockRange {
    LockRange {
        start,
        end: if end >= KERNEL_EOF { u64::MAX } else { end },
    }
}

fn kernel_end(end: u64) -> u64 {
    end.min(KERNEL_EOF)
}

fn mode_of(typ: i32) -> Option<LockMode> {
    match typ {
        libc::F_RDLCK => Some(LockMode::Shared),
        libc::F_WRLCK => Some(LockMode::Exclusive),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn setlk(
    mgr: Arc<CacheManager>,
    rt: &tokio::runtime::Handle,
    ino: Ino,
    owner: u64,
    start: u64,
    end: u64,
    typ: i32,
    pid: u32,
    uid: u32,
    sleep: bool,
    reply: ReplyEmpty,
) {
    // Locks are taken for, and checked against, the caller (their credentials in a realm).
    let who = Who::user(uid);
    rt.spawn(super::answered_in_task(async move {
        let result = match mode_of(typ) {
            None => {
                let req = ReleaseRequest {
                    ino,
                    class: LockClass::Advisory,
                    owner,
                    range: Some(range(start, end)),
                };
                match mgr.lock_release(&who, req).await {
                    // POSIX: unlocking what is not locked is not an error.
                    Err(e) if !e.is_not_found() => Err(e),
                    _ => Ok(()),
                }
            }
            Some(mode) => {
                let req = LockRequest {
                    ino,
                    class: LockClass::Advisory,
                    mode,
                    range: range(start, end),
                    owner,
                    pid,
                    label: dfs_client::cache::locks::label_for(uid),
                    wait_ms: 0,
                };
                let wait = if sleep {
                    mgr.lock_wait()
                } else {
                    Duration::ZERO
                };
                mgr.lock_acquire(&who, req, wait).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }));
}

#[allow(clippy::too_many_arguments)]
pub fn getlk(
    mgr: Arc<CacheManager>,
    rt: &tokio::runtime::Handle,
    ino: Ino,
    owner: u64,
    start: u64,
    end: u64,
    typ: i32,
    pid: u32,
    uid: u32,
    reply: ReplyLock,
) {
    let who = Who::user(uid);
    rt.spawn(super::answered_in_task(async move {
        let Some(mode) = mode_of(typ) else {
            return reply.error(fuser::Errno::EINVAL);
        };
        let req = LockRequest {
            ino,
            class: LockClass::Advisory,
            mode,
            range: range(start, end),
            owner,
            pid,
            label: String::new(),
            wait_ms: 0,
        };
        match mgr.lock_test(&who, req).await {
            Ok(None) => reply.locked(start, end, libc::F_UNLCK, 0),
            Ok(Some(h)) => {
                let typ = match h.mode {
                    LockMode::Shared => libc::F_RDLCK,
                    LockMode::Exclusive => libc::F_WRLCK,
                };
                reply.locked(h.range.start, kernel_end(h.range.end), typ, h.pid)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }));
}

/// Read-only opens that the kernel closes without a FLUSH request (FOPEN_NOFLUSH). The
/// flush of a read-only descriptor only drops the caller's fcntl locks, so the cache lets
/// an open skip it unless this client holds locks on the file when it opens
/// (`OpenResult::noflush`). A lock taken later through such a descriptor is dropped at its
/// release (the last close of that open file) instead of at the first close(2). This
/// keeps which handles those are, the kernel's state; the policy is the cache's.
#[derive(Default)]
pub struct QuietCloses {
    lock_owners: Mutex<HashMap<u64, Vec<u64>>>,
}

impl QuietCloses {
    /// Tracks handle `fh`, which the cache let close without a flush
    /// (`OpenResult::noflush`), until `released`.
    pub fn admit(&self, fh: u64) {
        self.lock_owners.lock().unwrap().insert(fh, Vec::new());
    }

    /// Notes that `owner` locked through handle `fh`.
    pub fn locked_through(&self, fh: u64, owner: u64) {
        if let Some(owners) = self.lock_owners.lock().unwrap().get_mut(&fh) {
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
    }

    /// Forgets `fh`; returns the owners whose locks its release must drop.
    pub fn released(&self, fh: u64) -> Vec<u64> {
        self.lock_owners
            .lock()
            .unwrap()
            .remove(&fh)
            .unwrap_or_default()
    }
}
