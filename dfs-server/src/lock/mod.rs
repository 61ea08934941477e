//! The lock service: read-many / write-one leased locks on file ids (wire contract:
//! `dfs_common::locks`), with the lock table on disk and a striped mutex pool.
//!
//! - The state of every file id lives in redb (`table`, file `DATA/locks.redb`), never in
//!   memory: memory is O(pool size) plus redb's fixed cache, disk O(locked ids).
//! - A file id hashes to one of `pool_size` stripes (an async mutex plus a `Notify`). An
//!   operation takes its stripe(s), reads the records, decides (`record`), and hands the new
//!   records with the stripe guards to the group-commit writer, which releases the guards
//!   only once the records are durable. So two operations on one id never interleave, and
//!   operations on different stripes run in parallel and share fsyncs. Operations that
//!   need several stripes (acquire-many, renew, sweep) take them in ascending order, and
//!   nobody waits for anything else while holding a stripe, so there are no deadlocks.
//! - Leases: every holder has an absolute wall-clock expiry. Expired holders are dropped
//!   whenever their record is written, and by a periodic sweep over the expiry index.
//!   `renew` extends every lock of a client (found through the per-client index).
//! - Fencing: tokens come from one persisted counter, so they increase per file id even
//!   when a record is deleted and recreated; `check_store` is the test a store must pass.
//! - Waiting: a blocked acquire sleeps (holding no stripe) until its stripe is notified, the
//!   conflicting holder's lease ends, or its wait runs out, then re-decides. The future is
//!   dropped when the HTTP connection goes away, which ends the wait.
//!
//! Renewals, the sweep of lapsed holders and the fencing check of a store are `lease`'s.
//!
//! Owns: stripes, waiting, the operations' flow. Must not touch: the namespace, blobs,
//! callbacks, HTTP bodies (`crate::api::locks` decodes and encodes).

mod lease;
pub mod record;
pub mod table;
#[cfg(test)]
mod tests;

use crate::errors::join_err;
use dfs_common::locks::{
    LockClass, LockInfo, LockReply, LockRequest, ReleaseReply, ReleaseRequest, TestReply,
};
use dfs_common::{FsError, Ino};
use record::{Decision, InoRecord};
use redb::Database;
use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use table::{Put, Snapshot, Writer};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

/// Settings of the lock service.
#[derive(Clone, Debug)]
pub struct LockConfig {
    /// Number of stripes (mutexes).
    pub pool_size: usize,
    /// How long a grant or renewal holds.
    pub lease: Duration,
    /// Longest wait a request may ask for.
    pub max_wait: Duration,
}

/// Inos a multi-stripe pass (renew, sweep) handles per commit.
const CHUNK: usize = 512;
/// Most releases one `release-many` carries.
pub const RELEASE_MANY_MAX: usize = 4096;
/// Most locks `list` returns in one page.
const LIST_MAX: u32 = 10_000;
/// Batches of at most this many requests are decided on the calling async thread.
const DECIDE_INLINE: usize = 16;
/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Stripe {
    mutex: Arc<Mutex<()>>,
    notify: Arc<Notify>,
}

pub struct LockService {
    db: Arc<Database>,
    writer: Writer,
    stripes: Vec<Stripe>,
    config: LockConfig,
}

/// What one try of an acquire (of one or many requests) came to.
enum Attempt {
    Granted(Vec<u64>),
    Conflict { holder: LockInfo, wake_at_ms: u64 },
}

impl LockService {
    /// Opens (or creates) the lock table at `path` and starts its writer. Blocking.
    pub fn open(path: &Path, config: LockConfig) -> Result<Arc<LockService>, FsError> {
        let (db, next_token) = table::open(path)?;
        let db = Arc::new(db);
        let writer = Writer::start(db.clone(), next_token)?;
        let stripes = (0..config.pool_size.max(1))
            .map(|_| Stripe {
                mutex: Arc::new(Mutex::new(())),
                notify: Arc::new(Notify::new()),
            })
            .collect();
        Ok(Arc::new(LockService {
            db,
            writer,
            stripes,
            config,
        }))
    }

    pub fn lease_ms(&self) -> u64 {
        self.config.lease.as_millis() as u64
    }

    fn stripe_of(&self, ino: Ino) -> usize {
        // A multiplicative hash spreads consecutive inode numbers over the stripes.
        let h = ino.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> 32) % self.stripes.len() as u64) as usize
    }

    /// The stripes of `inos`, ascending and distinct.
    fn stripes_of(&self, inos: impl Iterator<Item = Ino>) -> Vec<usize> {
        let mut s: Vec<usize> = inos.map(|i| self.stripe_of(i)).collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    async fn lock_stripes(&self, idx: &[usize]) -> Vec<OwnedMutexGuard<()>> {
        let mut guards = Vec::with_capacity(idx.len());
        for &i in idx {
            guards.push(self.stripes[i].mutex.clone().lock_owned().await);
        }
        guards
    }

    fn notifies(&self, idx: &[usize]) -> Vec<Arc<Notify>> {
        idx.iter()
            .map(|&i| self.stripes[i].notify.clone())
            .collect()
    }

    /// Runs `f` on a fresh snapshot, on the calling async thread: a read of the lock
    /// table takes microseconds from redb's cache, less than a hop to the blocking pool.
    /// A caller without the guards of the stripes it reads waits for `writer.caught_up()`
    /// first, or it may miss a not-durable grant already answered.
    fn read<T>(&self, f: impl FnOnce(&Snapshot) -> Result<T, FsError>) -> Result<T, FsError> {
        f(&Snapshot::new(&self.db)?)
    }

    fn check_client(client: u64) -> Result<(), FsError> {
        if client == 0 {
            return Err(FsError::BadRequest(format!(
                "lock requests need a client id ({})",
                dfs_common::proto::HDR_CLIENT
            )));
        }
        Ok(())
    }

    fn validate(req: &LockRequest) -> Result<(), FsError> {
        if req.range.start > req.range.end {
            return Err(FsError::Invalid(format!(
                "lock range {}..={} is empty",
                req.range.start, req.range.end
            )));
        }
        Ok(())
    }

    /// One try: take the stripes of `reqs`, decide them in order against the records, and
    /// if all are granted commit them together. Nothing is written on a conflict.
    async fn attempt(&self, client: u64, reqs: &Arc<Vec<LockRequest>>) -> Result<Attempt, FsError> {
        let idx = self.stripes_of(reqs.iter().map(|r| r.ino));
        let guards = self.lock_stripes(&idx).await;
        let (tokens, lease) = (self.writer.tokens.clone(), self.lease_ms());
        // A few records are decided right here, from redb's cache: a hop to the blocking
        // pool and back costs more. Large batches go to the pool.
        let decided = if reqs.len() <= DECIDE_INLINE {
            decide(&Snapshot::new(&self.db)?, reqs, client, lease, &tokens)?
        } else {
            let (db, reqs) = (self.db.clone(), reqs.clone());
            tokio::task::spawn_blocking(move || {
                decide(&Snapshot::new(&db)?, &reqs, client, lease, &tokens)
            })
            .await
            .map_err(join_err)??
        };
        match decided {
            Err((holder, wake_at_ms)) => Ok(Attempt::Conflict { holder, wake_at_ms }),
            Ok((tokens, puts)) => {
                let wake = self.notifies(&idx);
                let durability = durability_of(reqs.iter().map(|r| r.class));
                self.writer.submit(puts, durability, guards, wake).await?;
                Ok(Attempt::Granted(tokens))
            }
        }
    }

    /// Acquires every request in order, all or nothing, waiting up to the longest `wait_ms`
    /// of the requests (capped by `max_wait`) for conflicts to go. On a conflict nothing is
    /// held and every reply is that conflict (its `holder.ino` says which file).
    pub async fn acquire_many(
        &self,
        client: u64,
        reqs: Vec<LockRequest>,
    ) -> Result<Vec<LockReply>, FsError> {
        Self::check_client(client)?;
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        for r in &reqs {
            Self::validate(r)?;
        }
        let wait_ms = reqs.iter().map(|r| r.wait_ms).max().unwrap_or(0);
        let wait = Duration::from_millis(wait_ms as u64).min(self.config.max_wait);
        let deadline = Instant::now() + wait;
        let reqs = Arc::new(reqs);
        let idx = self.stripes_of(reqs.iter().map(|r| r.ino));
        loop {
            // Listen before looking, so a release between the look and the sleep is heard.
            let mut listeners: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = Vec::new();
            if !wait.is_zero() {
                for &i in &idx {
                    let mut n = Box::pin(self.stripes[i].notify.notified());
                    n.as_mut().enable();
                    listeners.push(n);
                }
            }
            match self.attempt(client, &reqs).await? {
                Attempt::Granted(tokens) => {
                    crate::metrics::LOCKS_GRANTED.add(tokens.len() as u64);
                    let lease_ms = self.lease_ms();
                    return Ok(tokens
                        .into_iter()
                        .map(|token| LockReply::Granted { token, lease_ms })
                        .collect());
                }
                Attempt::Conflict { holder, wake_at_ms } => {
                    let now = Instant::now();
                    if now >= deadline {
                        crate::metrics::LOCK_CONFLICTS.inc();
                        return Ok(vec![LockReply::Conflict { holder }; reqs.len()]);
                    }
                    let to_expiry = wake_at_ms.saturating_sub(now_ms()).saturating_add(1);
                    let until = now
                        .checked_add(Duration::from_millis(to_expiry))
                        .map_or(deadline, |expiry| expiry.min(deadline));
                    let notified = async {
                        if listeners.is_empty() {
                            std::future::pending::<()>().await;
                        }
                        futures_util::future::select_all(listeners).await;
                    };
                    let _waiting = crate::metrics::Waiting::new();
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(until.into()) => {}
                    }
                }
            }
        }
    }

    /// `/v1/locks/acquire`.
    pub async fn acquire(&self, client: u64, req: LockRequest) -> Result<LockReply, FsError> {
        let mut replies = self.acquire_many(client, vec![req]).await?;
        replies
            .pop()
            .ok_or_else(|| FsError::Io("acquire produced no reply".into()))
    }

    /// `/v1/locks/release`: `NotFound` (and no change) if nothing matched.
    pub async fn release(&self, client: u64, req: ReleaseRequest) -> Result<ReleaseReply, FsError> {
        Self::check_client(client)?;
        if let Some(r) = req.range {
            if r.start > r.end {
                return Err(FsError::Invalid(format!(
                    "range {}..={} is empty",
                    r.start, r.end
                )));
            }
        }
        let idx = [self.stripe_of(req.ino)];
        let guards = self.lock_stripes(&idx).await;
        let ino = req.ino;
        let decided = self.read(move |snap| {
            let now = now_ms();
            let Some(mut rec) = snap.record(ino)? else {
                return Ok(None);
            };
            rec.prune(now);
            let n = rec.release(req.class, client, req.owner, req.range);
            Ok((n > 0).then_some((n, rec)))
        })?;
        let Some((released, rec)) = decided else {
            return Err(FsError::NotFound);
        };
        let puts = vec![Put {
            ino,
            record: Some(rec),
        }];
        let durability = durability_of([req.class]);
        self.writer
            .submit(puts, durability, guards, self.notifies(&idx))
            .await?;
        crate::metrics::LOCKS_RELEASED.add(released as u64);
        Ok(ReleaseReply { released })
    }

    /// `/v1/locks/release-many`: every release of `reqs` (a client's writers' turns given
    /// back together), run side by side so that the writer commits them together. One a
    /// client no longer holds counts nothing; any other failure fails the answer.
    pub async fn release_many(
        &self,
        client: u64,
        reqs: Vec<ReleaseRequest>,
    ) -> Result<ReleaseReply, FsError> {
        if reqs.len() > RELEASE_MANY_MAX {
            return Err(FsError::Invalid(format!(
                "{} releases in one request; at most {RELEASE_MANY_MAX}",
                reqs.len()
            )));
        }
        let all = futures_util::future::join_all(reqs.into_iter().map(|r| self.release(client, r)));
        let mut released = 0;
        for one in all.await {
            match one {
                Ok(r) => released += r.released,
                Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ReleaseReply { released })
    }

    /// `/v1/locks/test`: who would conflict with `req` (never waits, changes nothing).
    pub async fn test(&self, client: u64, req: LockRequest) -> Result<TestReply, FsError> {
        Self::check_client(client)?;
        Self::validate(&req)?;
        self.writer.caught_up().await;
        self.read(move |snap| {
            let now = now_ms();
            let rec = snap.record(req.ino)?.unwrap_or_default();
            let holder = rec
                .conflicts(&req, client, now)
                .next()
                .map(|h| h.info(req.ino, now));
            Ok(match holder {
                None => TestReply::Free,
                Some(holder) => TestReply::Conflict { holder },
            })
        })
    }

    /// `/v1/locks/list`: the live locks of one file, or a page of all (in ino order; a page
    /// ends after the file that reaches `limit`, so `after` = its last ino continues it).
    pub async fn list(
        &self,
        ino: Option<Ino>,
        after: Option<Ino>,
        limit: u32,
    ) -> Result<Vec<LockInfo>, FsError> {
        let limit = if limit == 0 {
            1000
        } else {
            limit.min(LIST_MAX)
        } as usize;
        self.writer.caught_up().await;
        self.read(move |snap| {
            let now = now_ms();
            let mut out = Vec::new();
            let take = |ino: Ino, rec: InoRecord, out: &mut Vec<LockInfo>| {
                out.extend(
                    rec.holders
                        .iter()
                        .filter(|h| h.live(now))
                        .map(|h| h.info(ino, now)),
                );
            };
            match ino {
                Some(ino) => {
                    if let Some(rec) = snap.record(ino)? {
                        take(ino, rec, &mut out);
                    }
                }
                None => snap.records(after, |ino, rec| {
                    take(ino, rec, &mut out);
                    out.len() < limit
                })?,
            }
            Ok(out)
        })
    }
}

/// Writers' turns need not reach the disk before they are answered (fencing covers a
/// crash that forgets one, see `table`); a change that touches any other lock does.
fn durability_of(classes: impl IntoIterator<Item = LockClass>) -> table::Durability {
    if classes.into_iter().all(|c| c == LockClass::Open) {
        table::Durability::Lapsable
    } else {
        table::Durability::Durable
    }
}

/// What `decide` found: the tokens granted and the records to write, or the first
/// conflict (its holder and when to try again, in ms since the epoch).
type Decided = Result<(Vec<u64>, Vec<Put>), (LockInfo, u64)>;

/// What `attempt` decides for `reqs` against the records in `snap`.
fn decide(
    snap: &Snapshot,
    reqs: &[LockRequest],
    client: u64,
    lease: u64,
    tokens: &AtomicU64,
) -> Result<Decided, FsError> {
    let now = now_ms();
    let mut work: BTreeMap<Ino, InoRecord> = BTreeMap::new();
    let mut granted = Vec::with_capacity(reqs.len());
    for req in reqs {
        let rec = match work.entry(req.ino) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let mut rec = snap.record(req.ino)?.unwrap_or_default();
                rec.prune(now);
                e.insert(rec)
            }
        };
        match rec.acquire(req, client, now, lease, || {
            tokens.fetch_add(1, Ordering::SeqCst)
        }) {
            Decision::Granted { token } => granted.push(token),
            Decision::Conflict { holder, wake_at_ms } => {
                return Ok(Err((holder.info(req.ino, now), wake_at_ms)));
            }
        }
    }
    let puts = work
        .into_iter()
        .map(|(ino, record)| Put {
            ino,
            record: Some(record),
        })
        .collect::<Vec<_>>();
    Ok(Ok((granted, puts)))
}
