//! dfs-client: the dfs client as a library, without FUSE.
//!
//! - `cache`: the cache manager (inode API): whole-file fetch on open, store on close, an
//!   on-disk whole-file cache and in-memory metadata LRUs kept valid by callbacks.
//! - `client`: the path API over it (`Dfs`), for programs that do not want a mount.
//! - `callbacks`: the callback channel and the retry of unstored files.
//! - `tx`: transactions: several file operations committed as one atomic unit.
//! - `auth`: whose credentials a request uses; signing and checking (security service).
//! - `privacy`: the protection level and sealed bodies.
//! - `metrics`: the library's counts (cache answers, bytes, server requests, callbacks).
//! - `port`: what the cache asks of a server (`Server`), the only way out of the cache.
//! - `remote`: the port over HTTP; `replica_read`: reads from the nodes a server names.
//! - `control`: the protocol of a mount's local control socket (`dfs` asks, `dfs-mount`
//!   answers).
//! - `progress`: progress bars of long work, for both commands.
//! - `connect`: a cache manager wired to a server over HTTP.
//! - `testing` (feature `testing`): an in-memory server and a fault-injecting port.
//!
//! Owns: everything a client does short of the kernel. Must not know FUSE or parse a
//! command line (the `dfs-fuse` and `dfs-cli` crates do).

pub mod auth;
pub mod cache;
pub mod callbacks;
pub mod client;
mod connect;
pub mod control;
mod file_hash;
pub mod metrics;
pub mod port;
pub mod privacy;
pub mod progress;
pub mod remote;
mod replica_read;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tx;

pub use cache::{CacheError, CacheManager, CacheOptions, MountStatus};
pub use client::{Dfs, DfsFile};

use std::sync::Arc;

/// Starts a manager's background work (callback channel, retry of unstored files) on the
/// current tokio runtime.
///
/// Each is vital: without the callback channel the cache trusts what changed, without the
/// retry unstored files stay unstored, without renewal or release batches locks and the
/// writers' turn are lost or held for ever. A panic of one is logged and ends the process
/// (`dfs_common::tasks`) instead of leaving a mount that looks healthy.
pub fn spawn_background(mgr: &Arc<CacheManager>) {
    use dfs_common::tasks::{spawn_watched, Vital};
    spawn_watched(
        "callback channel",
        callbacks::run_channel(mgr.clone()),
        Vital::Yes,
    );
    spawn_watched(
        "retry of unstored files",
        callbacks::run_dirty_retry(mgr.clone()),
        Vital::Yes,
    );
    spawn_watched(
        "lock lease renewal",
        cache::locks::run_renewal(mgr.clone()),
        Vital::Yes,
    );
    spawn_watched(
        "write-lock release batches",
        cache::writelock::run_release_batches(mgr.clone()),
        Vital::Yes,
    );
}
