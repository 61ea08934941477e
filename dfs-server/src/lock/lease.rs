//! Leases and fencing of the lock service: `renew` restarts every lease of a client,
//! the sweep drops holders lapsed past their keep (`record`), and `check_store` is the
//! test a store must pass with (or without) its fence token. `rewrite` is their shared
//! step: change records of given ids under their stripes and commit them.
//!
//! Owns: those operations. Must not decide a grant (`super`, `record`).

use super::record::{Holder, InoRecord};
use super::table::{self, Put};
use super::{now_ms, LockService, CHUNK};
use dfs_common::locks::{RenewReply, RenewRequest};
use dfs_common::{FsError, Ino};
use std::sync::Arc;
use std::time::Duration;

/// How often the sweep looks for expired leases.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl LockService {
    /// Applies `f` to the records of `inos` under their stripes (after dropping expired
    /// holders) and commits what changed. Returns the sum of what `f` returned and the
    /// number of records written.
    async fn rewrite(
        &self,
        inos: Vec<Ino>,
        durability: table::Durability,
        f: impl Fn(&mut InoRecord, u64) -> (bool, u32) + Send + Sync + 'static,
    ) -> Result<(u32, usize), FsError> {
        self.rewrite_at(inos, durability, None, f).await
    }

    /// `rewrite` as of wall-clock time `at` (ms since the epoch; `None`: now).
    async fn rewrite_at(
        &self,
        inos: Vec<Ino>,
        durability: table::Durability,
        at: Option<u64>,
        f: impl Fn(&mut InoRecord, u64) -> (bool, u32) + Send + Sync + 'static,
    ) -> Result<(u32, usize), FsError> {
        let idx = self.stripes_of(inos.iter().copied());
        let guards = self.lock_stripes(&idx).await;
        let (total, puts) = self.read(move |snap| {
            let now = at.unwrap_or_else(now_ms);
            let mut total = 0u32;
            let mut puts = Vec::new();
            for ino in inos {
                let Some(mut rec) = snap.record(ino)? else {
                    continue;
                };
                let pruned = rec.prune(now);
                let (changed, n) = f(&mut rec, now);
                total = total.saturating_add(n);
                if pruned || changed {
                    puts.push(Put {
                        ino,
                        record: Some(rec),
                    });
                }
            }
            Ok((total, puts))
        })?;
        let written = puts.len();
        self.writer
            .submit(puts, durability, guards, self.notifies(&idx))
            .await?;
        Ok((total, written))
    }

    /// `/v1/locks/renew`: restarts the lease of every lock of `client`; names the entries
    /// of `held` it no longer holds.
    pub async fn renew(&self, client: u64, req: RenewRequest) -> Result<RenewReply, FsError> {
        Self::check_client(client)?;
        let lease = self.lease_ms();
        let mut renewed = 0u32;
        let mut after = None;
        self.writer.caught_up().await;
        loop {
            let inos = self.read(move |snap| snap.client_inos(client, after, CHUNK))?;
            let Some(&last) = inos.last() else { break };
            let full = inos.len() == CHUNK;
            let (n, _) = self
                // Not waiting for the disk: renewals must not queue behind fsyncs on a
                // loaded server, and a crash that forgets one only ends the lease sooner
                // (at the expiry the last durable commit holds), as a late renewal would.
                .rewrite(inos, table::Durability::Lapsable, move |rec, now| {
                    let n = rec.renew(client, now, now.saturating_add(lease));
                    (n > 0, n)
                })
                .await?;
            renewed = renewed.saturating_add(n);
            if !full {
                break;
            }
            after = Some(last);
        }
        let held = req.held;
        self.writer.caught_up().await;
        let lost = self.read(move |snap| {
            let now = now_ms();
            let mut lost = Vec::new();
            for (ino, class, owner) in held {
                let holds = snap
                    .record(ino)?
                    .is_some_and(|r| r.holds(class, client, owner, now));
                if !holds {
                    lost.push((ino, class, owner));
                }
            }
            Ok(lost)
        })?;
        Ok(RenewReply {
            renewed,
            lost,
            lease_ms: lease,
        })
    }

    /// One pass of the sweep: drops every holder lapsed past its keep (see `record`);
    /// returns how many records changed.
    pub async fn sweep(&self) -> Result<u64, FsError> {
        self.sweep_at(None).await
    }

    /// `sweep` as of wall-clock time `at` (`None`: now).
    pub(super) async fn sweep_at(&self, at: Option<u64>) -> Result<u64, FsError> {
        let mut cursor = (0u64, 0u64);
        let mut changed = 0u64;
        loop {
            let now = at.unwrap_or_else(now_ms);
            let keys = self.read(move |snap| snap.expired(cursor, now, CHUNK))?;
            let Some(&last) = keys.last() else { break };
            let full = keys.len() == CHUNK;
            let inos = keys.into_iter().map(|(_, ino)| ino).collect();
            let durable = table::Durability::Durable;
            let (_, written) = self
                .rewrite_at(inos, durable, at, |_, _| (false, 0))
                .await?;
            changed += written as u64;
            if !full {
                break;
            }
            cursor = last;
        }
        Ok(changed)
    }

    /// The check a store of `ino` by `client` must pass. With a fence token the client must
    /// still have the writers' turn it was given with that token, live or lapsed with
    /// nobody having taken it since (`Stale` otherwise); without one, no other client may
    /// hold it (`Busy`).
    pub async fn check_store(
        &self,
        client: u64,
        ino: Ino,
        fence: Option<u64>,
    ) -> Result<(), FsError> {
        self.writer.caught_up().await;
        let (writer, turn): (Option<Holder>, bool) = self.read(move |snap| {
            let now = now_ms();
            let rec = snap.record(ino)?;
            let turn = match (&rec, fence) {
                (Some(r), Some(t)) => r.has_turn(client, t, now),
                _ => false,
            };
            Ok((rec.and_then(|r| r.writer(now).cloned()), turn))
        })?;
        match (fence, writer) {
            (Some(_), _) if turn => Ok(()),
            (Some(t), Some(w)) => Err(FsError::Stale(format!(
                "inode {ino}: fence token {t} is not the current write lock: {}",
                w.describe()
            ))),
            (Some(t), None) => Err(FsError::Stale(format!(
                "inode {ino}: the write lock with fence token {t} is gone (released, or taken by another writer since its lease expired)"
            ))),
            (None, Some(w)) if w.client != client => Err(FsError::Busy(format!(
                "inode {ino} is being written: {}",
                w.describe()
            ))),
            (None, _) => Ok(()),
        }
    }

    /// Runs the sweep every `SWEEP_EVERY` until `stop` turns true.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                    _ = stop.wait_for(|v| *v) => return,
                }
                match svc.sweep().await {
                    Ok(0) => {}
                    Ok(n) => log::debug!("lock sweep: {n} records with expired leases"),
                    Err(e) => log::warn!("lock sweep: {e}"),
                }
            }
        })
    }
}
