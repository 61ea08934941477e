//! dfs-server: the directory, file and callback services of dfs behind one HTTP edge.
//!
//! Modules, one per concern:
//! - `namespace`: the directory service, a deterministic state machine over redb.
//! - `blobs`: content-addressed blob files and their garbage collection.
//! - `callbacks`: callback promises, breaks, and the per-client callback channel.
//! - `cluster`: the replication service: gossip membership, blob placement on R nodes,
//!   write quorum, repair rounds, scrubbing.
//! - `coherence`: the promise/break rule: reads that promise and commits that break
//!   behind one gate (`observe`, `mutate`).
//! - `files`: whole-file fetch and store (and setattr's resize).
//! - `lock`: the lock service: leased read/write locks on file ids, lock table on disk.
//! - `tx`: the transaction service: staged blobs and atomic batches of file operations.
//! - `api`: every HTTP resource, one module per area, the routing, the authentication
//!   hook, error answers.
//! - `net`: the hyper server: connections, their caps and timeouts, body types.
//! - `kdc`, `auth`: the security service: the realm's KDC, ticket checks, permissions.
//! - `metrics`: the node's Prometheus metrics and who may read them.
//! - `config`: every option of a node, from the command line and a TOML file.
//! - `services`: the composition root: the services wired together, each given the parts
//!   it works on (only it and `api` know `Services`).
//! - `raft`: the directory service on a Raft log (openraft): log storage, the namespace as
//!   its state machine, snapshots; not yet wired into the server.
//! - `storage_failure`: a database whose storage failed an I/O, which the server stops on.
//! - `testing` (tests and feature `testing` only): a node's services opened in process on
//!   a data dir, the one fixture of the in-process tests here and in dfs-client.
//!
//! The binary (`main.rs`) owns the command line, the runtime and signals.

pub mod api;
pub mod auth;
pub mod blobs;
pub mod callbacks;
pub mod clients;
pub mod cluster;
pub mod coherence;
pub mod config;
pub mod errors;
pub mod files;
pub mod kdc;
pub mod lock;
pub mod metrics;
pub mod namespace;
pub mod net;
pub mod raft;
pub mod services;
pub mod storage_failure;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tx;
pub mod wal;
