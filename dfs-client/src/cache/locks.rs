//! Locks on the client: calls to the lock service, the bounded wait for a conflicting
//! holder, the set of advisory locks this client holds, and the loop that renews every
//! lease of this client in one request. The writers' `Open` lock itself is taken and
//! released by `files` (it belongs to the open state). Must not decide when files store.

use super::error::CacheError;
use super::CacheManager;
use crate::port::Who;
use dfs_common::locks::{
    ListRequest, LockClass, LockInfo, LockReply, LockRequest, ReleaseReply, ReleaseRequest,
    RenewReply, RenewRequest, TestReply,
};
use dfs_common::{FsError, Ino};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A lock held, as a renewal names it: file, class, owner.
type Held = (Ino, LockClass, u64);

/// Longest single wait asked of the server; longer waits are several asks, so a server that
/// caps waits lower, or restarts meanwhile, costs nothing.
const WAIT_SLICE: Duration = Duration::from_secs(10);

/// Human description of a lock holder for conflict messages.
pub fn describe(h: &LockInfo) -> String {
    format!(
        "{:?} {:?} lock held by {} (client {:#x}, pid {}, token {}, lease ends in {:.1} s)",
        h.mode,
        h.class,
        if h.label.is_empty() { "?" } else { &h.label },
        h.client,
        h.pid,
        h.token,
        h.expires_in_ms as f64 / 1000.0
    )
}

/// The label other clients see for our locks: host and user. Every create and every open
/// for writing takes a lock, so the host name is read once.
pub fn label_for(uid: u32) -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    });
    format!("uid {uid}@{host}")
}

impl CacheManager {
    /// Takes a lock, waiting up to `wait` for conflicting holders. Returns the fencing token;
    /// `Busy` (EAGAIN) names the holder when the wait runs out.
    pub async fn lock_acquire(
        &self,
        who: &Who,
        mut req: LockRequest,
        wait: Duration,
    ) -> Result<u64, CacheError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(WAIT_SLICE);
            req.wait_ms = slice.as_millis() as u32;
            let reply: LockReply = self.server.lock_acquire(who, &req, slice).await?;
            match reply {
                LockReply::Granted { token, lease_ms } => {
                    self.lease_ms.store(lease_ms.max(1000), Ordering::Relaxed);
                    if req.class == LockClass::Advisory {
                        self.advisory.lock().unwrap().insert((req.ino, req.owner));
                    }
                    return Ok(token);
                }
                LockReply::Conflict { holder } => {
                    if Instant::now() >= deadline {
                        let what = describe(&holder);
                        log::warn!("inode {}: gave up waiting: {what}", req.ino);
                        return Err(FsError::Busy(what).into());
                    }
                }
            }
        }
    }

    /// Whether this client holds advisory locks of `owner` on `ino`.
    pub fn holds_advisory(&self, ino: Ino, owner: u64) -> bool {
        self.advisory.lock().unwrap().contains(&(ino, owner))
    }

    /// Whether this client holds advisory locks of any owner on `ino`.
    pub fn holds_any_advisory(&self, ino: Ino) -> bool {
        self.advisory.lock().unwrap().iter().any(|&(i, _)| i == ino)
    }

    /// How long blocking lock requests wait.
    pub fn lock_wait(&self) -> Duration {
        self.lock_wait
    }

    /// Releases, for `who`, every advisory lock `owner` holds on `ino` (close of a POSIX
    /// lock holder's descriptor, or release of a flock). No round trip unless this client
    /// holds one.
    pub async fn release_advisory_owner(&self, who: &Who, ino: Ino, owner: u64) {
        if !self.holds_advisory(ino, owner) {
            return;
        }
        let req = ReleaseRequest {
            ino,
            class: LockClass::Advisory,
            owner,
            range: None,
        };
        match self.lock_release(who, req).await {
            Err(e) if !e.is_not_found() => {
                log::warn!("inode {ino}: releasing locks of owner {owner:#x}: {e}")
            }
            _ => {}
        }
    }

    /// Releases locks; `NotFound` if nothing matched.
    pub async fn lock_release(&self, who: &Who, req: ReleaseRequest) -> Result<u32, CacheError> {
        if req.class == LockClass::Advisory && req.range.is_none() {
            self.advisory.lock().unwrap().remove(&(req.ino, req.owner));
        }
        let reply: ReleaseReply = self.server.lock_release(who, &req).await?;
        Ok(reply.released)
    }

    /// Who would conflict with `req` (F_GETLK).
    pub async fn lock_test(
        &self,
        who: &Who,
        req: LockRequest,
    ) -> Result<Option<LockInfo>, CacheError> {
        let reply: TestReply = self.server.lock_test(who, &req).await?;
        Ok(match reply {
            TestReply::Free => None,
            TestReply::Conflict { holder } => Some(holder),
        })
    }

    /// Every lock on `ino`, or every lock (first `limit`).
    pub async fn lock_list(
        &self,
        who: &Who,
        ino: Option<Ino>,
        limit: u32,
    ) -> Result<Vec<LockInfo>, CacheError> {
        let req = ListRequest {
            ino,
            after: None,
            limit,
        };
        Ok(self.server.lock_list(who, &req).await?)
    }

    /// What this client believes it holds, for renewal, and the tokens of its writers'
    /// locks.
    fn held_locks(&self) -> (Vec<Held>, HashMap<Ino, u64>) {
        let mut held: Vec<Held> = self
            .advisory
            .lock()
            .unwrap()
            .iter()
            .map(|(ino, owner)| (*ino, LockClass::Advisory, *owner))
            .collect();
        let open: HashMap<Ino, u64> = self.open_locks().into_iter().collect();
        held.extend(
            open.keys()
                .map(|&ino| (ino, LockClass::Open, super::files::OPEN_OWNER)),
        );
        (held, open)
    }

    async fn renew_once(&self, who: &Who) -> Result<(), CacheError> {
        let (held, tokens) = self.held_locks();
        if held.is_empty() {
            return Ok(());
        }
        let reply: RenewReply = self.server.lock_renew(who, &RenewRequest { held }).await?;
        self.lease_ms
            .store(reply.lease_ms.max(1000), Ordering::Relaxed);
        let lost: HashSet<(Ino, LockClass, u64)> = reply.lost.into_iter().collect();
        for (ino, class, owner) in lost {
            match class {
                // A lock given back while the renewal was on its way is no news.
                LockClass::Advisory => {
                    if self.advisory.lock().unwrap().remove(&(ino, owner)) {
                        log::warn!(
                            "inode {ino}: advisory lock of owner {owner:#x} was lost (another client took it after its lease ran out)"
                        );
                    }
                }
                LockClass::Open => {
                    let token = tokens.get(&ino).copied().unwrap_or_default();
                    if self.forget_open_lock(ino, token) {
                        log::warn!("inode {ino}: write lock was lost (another client took it after its lease ran out); the next store must win it back");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Renews this client's leases at a third of the lease, until the runtime stops.
pub async fn run_renewal(mgr: Arc<CacheManager>) {
    loop {
        let lease = Duration::from_millis(mgr.lease_ms.load(Ordering::Relaxed));
        tokio::time::sleep(lease / 3).await;
        // The leases are this client's, not a user's: renewed as nobody.
        if let Err(e) = mgr.renew_once(&Who::ANONYMOUS).await {
            log::debug!("lease renewal: {e}");
        }
    }
}
