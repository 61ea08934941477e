//! dfs-fuse: the FUSE mount of dfs and the `dfs` command, over the client library
//! (`dfs-client`).
//!
//! - `fuse`: the FUSE adapter used by `dfs-mount`.
//! - `control`: the mount's local socket, used by the `dfs` command.
//! - `login`: `dfs login | logout | whoami | user`.
//! - `metrics`: the mount's Prometheus metrics (FUSE operations here, the library's
//!   counts from `dfs_client::metrics`) and their endpoint.
//! - `show`: how the `dfs` command shows times and sizes, or JSON.
//! - `progress`: progress bars on a terminal, plain lines elsewhere.
//! - `tx`: `dfs tx`: batch files and their commands.
//!
//! Owns: the kernel's side and the command lines. Must not hold cache policy (the
//! library's `CacheManager` does).

pub mod control;
pub mod fuse;
pub mod login;
pub mod metrics;
pub mod progress;
pub mod show;
pub mod tx;
