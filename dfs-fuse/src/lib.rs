//! dfs-fuse: the FUSE mount of dfs (`dfs-mount`), over the client library (`dfs-client`).
//! The `dfs` command is the `dfs-cli` crate.
//!
//! - `fuse`: the FUSE adapter used by `dfs-mount`.
//! - `control`: the mount's side of its local socket, which the `dfs` command asks.
//! - `metrics`: the mount's Prometheus metrics (FUSE operations here, the library's
//!   counts from `dfs_client::metrics`) and their endpoint.
//!
//! Owns: the kernel's side. Must not hold cache policy (the library's `CacheManager`
//! does) or parse the `dfs` command's lines.

pub mod control;
pub mod fuse;
pub mod metrics;
