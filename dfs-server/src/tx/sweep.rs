//! The sweep of the transaction service: aborts open transactions whose lease ended (their
//! client stopped renewing them) and that have no request in flight, releasing their
//! staged blobs; and forgets outcomes older than `KEEP_OUTCOMES`.
//!
//! Owns: the sweep and its timing. Must not end a transaction any other way than
//! `TxCommand::Expire` / `PruneDone`.

use super::{now_ms, Transactions, KEEP_OUTCOMES};
use crate::namespace::txn::{ms_of, TxApplied, TxCommand};
use dfs_common::tx::TxId;
use dfs_common::{FsError, Timestamp};
use std::time::Duration;
use tokio::sync::watch;

/// One pass of the sweep: aborts open transactions whose lease ended and that have no
/// request in flight; returns how many.
pub async fn sweep(service: &Transactions) -> Result<usize, FsError> {
    let now = Timestamp::now();
    let due = service
        .coherence
        .blocking(move |ns, _| ns.tx_due(ms_of(now)))
        .await?;
    let due: Vec<TxId> = due
        .into_iter()
        .filter(|tx| !service.state.is_busy(*tx))
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let applied = service
        .coherence
        .blocking(move |ns, _| ns.apply_tx(TxCommand::Expire { txs: due, now }))
        .await?;
    match applied {
        TxApplied::Expired(ended) => {
            for tx in &ended {
                log::info!(
                    "transaction {tx} aborted: its client stopped renewing it; its staged blobs are released"
                );
            }
            Ok(ended.len())
        }
        other => Err(FsError::Io(format!("expire came to {other:?}"))),
    }
}

/// Runs the sweep every quarter lease (between 100 ms and 1 s), and forgets old outcomes
/// every hour, until `stop` turns true.
pub fn spawn_sweeper(
    service: Transactions,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            let period = Duration::from_millis((service.state.lease_ms() / 4).clamp(100, 1000));
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.wait_for(|v| *v) => return,
            }
            if let Err(e) = sweep(&service).await {
                log::warn!("transaction sweep: {e}");
            }
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(std::time::Instant::now());
                let before_ms = now_ms().saturating_sub(KEEP_OUTCOMES.as_millis() as u64);
                let r = service
                    .coherence
                    .blocking(move |ns, _| ns.apply_tx(TxCommand::PruneDone { before_ms }))
                    .await;
                if let Err(e) = r {
                    log::warn!("transaction outcome pruning: {e}");
                }
            }
        }
    })
}
