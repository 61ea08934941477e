//! The client's end of the callback channel: one long-lived streaming request per client.
//! It feeds `Hello`, breaks and heartbeats to the cache manager, declares the channel dead
//! after three silent heartbeat periods, reconnects with backoff, and after every
//! (re)connect revalidates cached files by version and stores files left dirty.
//! Also runs the periodic retry of unstored files. The channel and the revalidation act for
//! nobody (`Who::ANONYMOUS`: no user asked for them); each retried store acts for the user
//! who wrote the file (`CacheManager::store_dirty`). Must not decide what is cached.

use crate::cache::CacheManager;
use crate::port::{CallbackStream, Who};
use dfs_common::proto::{CallbackFrame, HEARTBEAT_SECS};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Runs until the runtime shuts down.
pub async fn run_channel(mgr: Arc<CacheManager>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match mgr.server.callbacks().await {
            Ok(frames) => {
                let served = serve(&mgr, frames).await;
                mgr.channel_lost();
                if served {
                    backoff = Duration::from_millis(100);
                }
                log::warn!("callback channel lost; cached promises are void until it returns");
            }
            Err(e) => log::debug!("callback channel: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Reads frames until the channel fails. Returns whether a `Hello` was seen.
async fn serve(mgr: &Arc<CacheManager>, mut frames: CallbackStream) -> bool {
    let silence = Duration::from_secs(3 * HEARTBEAT_SECS);
    let mut greeted = false;
    loop {
        let frame = match tokio::time::timeout(silence, frames.next()).await {
            Err(_) => {
                log::warn!("callback channel silent for {silence:?}");
                return greeted;
            }
            Ok(None) => return greeted,
            Ok(Some(Err(e))) => {
                log::debug!("callback channel: {e}");
                return greeted;
            }
            Ok(Some(Ok(f))) => f,
        };
        if !greeted && !matches!(frame, CallbackFrame::Hello { .. }) {
            log::error!("callback channel did not start with Hello");
            return false;
        }
        apply(mgr, frame);
        greeted = true;
    }
}

fn apply(mgr: &Arc<CacheManager>, frame: CallbackFrame) {
    match frame {
        CallbackFrame::Hello { epoch, .. } => {
            if mgr.channel_connected(epoch) {
                log::info!("server restarted (epoch {epoch:#x}); revalidating cached files");
            } else {
                log::info!("callback channel up (epoch {epoch:#x})");
            }
            let mgr = mgr.clone();
            tokio::spawn(async move {
                if let Err(e) = mgr.revalidate_cached(&Who::ANONYMOUS).await {
                    log::warn!("revalidation after reconnect: {e}");
                }
                mgr.store_dirty().await;
            });
        }
        CallbackFrame::Break { ino } => mgr.break_ino(ino),
        CallbackFrame::EntryBreak { dir, name } => mgr.break_entry(dir, name),
        CallbackFrame::Group(frames) => mgr.break_group(frames),
        CallbackFrame::RevalidateAll => mgr.revalidate_all_promises(),
        CallbackFrame::Heartbeat => {}
    }
}

/// Retries unstored files every few seconds.
pub async fn run_dirty_retry(mgr: Arc<CacheManager>) {
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if mgr.dirty_count() > 0 {
            let left = mgr.store_dirty().await;
            if left > 0 {
                log::warn!("{left} file(s) still waiting to be stored on the server");
            }
        }
    }
}
