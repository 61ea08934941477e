//! dfs-fuse: the dfs client.
//!
//! - `cache`: the cache manager, the client library (inode API): whole-file fetch on open,
//!   store on close, an on-disk whole-file cache and in-memory metadata LRUs kept valid by
//!   callbacks.
//! - `client`: the path API over it (`Dfs`), for programs that do not want a mount.
//! - `callbacks`: the callback channel and the retry of unstored files.
//! - `fuse`: the FUSE adapter used by `dfs-mount`.
//! - `tx`: transactions: several file operations committed as one atomic unit, and the
//!   batch files of `dfs tx apply`.
//! - `control`: the mount's local socket, used by the `dfs` command.
//! - `auth`: whose credentials a request uses; signing and checking (security service).
//! - `login`: `dfs login | logout | whoami | user`.
//! - `metrics`: the mount's Prometheus metrics and their endpoint.
//! - `privacy`: the mount's protection level and sealed bodies.
//! - `show`: how the `dfs` command shows times and sizes, or JSON.
//! - `progress`: progress bars on a terminal, plain lines elsewhere.
//! - `remote` (private): HTTP to the server.

pub mod auth;
pub mod cache;
pub mod callbacks;
pub mod client;
pub mod control;
pub mod fuse;
pub mod login;
pub mod metrics;
pub mod privacy;
pub mod progress;
pub mod remote;
mod replica_read;
pub mod show;
pub mod tx;

pub use cache::{CacheManager, CacheOptions};
pub use client::{Dfs, DfsFile};

use std::sync::Arc;

/// Starts a manager's background work (callback channel, retry of unstored files) on the
/// current tokio runtime.
pub fn spawn_background(mgr: &Arc<CacheManager>) {
    tokio::spawn(callbacks::run_channel(mgr.clone()));
    tokio::spawn(callbacks::run_dirty_retry(mgr.clone()));
    tokio::spawn(cache::locks::run_renewal(mgr.clone()));
    tokio::spawn(cache::writelock::run_release_batches(mgr.clone()));
}
