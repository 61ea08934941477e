//! The directory service on a Raft log (openraft 0.9, issue #23): the foundation, not yet
//! wired into the running server.
//!
//! Owns: the openraft type configuration of dfs (a log entry is a namespace command with
//! the client's request id), the layout of a replica's directory (`raft-log.redb`, the
//! namespace's `meta.redb`, `snapshots/`), and starting one replica. Submodules:
//! - `log_store`: the log, vote and committed index in their own redb file;
//! - `state_machine`: the namespace as the state machine, with the applied position and
//!   the outcome of every request recorded in the namespace's own transactions;
//! - `snapshot`: snapshot files (a copy of the namespace database) and their transfer type;
//! - `router`: an in-process network between replicas, for tests (the HTTP network
//!   between nodes is not written yet).
//!
//! Must not touch: HTTP, callbacks, locks, the realm, or the namespace's tables (only
//! through `Namespace`'s replicated API). Nothing here reads the clock: time is in the
//! commands.

// openraft's `StorageError` (over 200 bytes) is the error type its storage traits fix; the
// helpers here return it as the traits do, rather than boxing and unboxing at each call.
#![allow(clippy::result_large_err)]

pub mod admin;
mod codec;
pub mod log_store;
pub mod network;
pub mod node;
pub mod propose;
pub mod router;
pub mod snapshot;
pub mod state_machine;
#[cfg(test)]
mod suite_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use crate::namespace::{Namespace, NsCommand, NsOutcome};
use dfs_common::FsError;
use openraft::{BasicNode, Config, Raft};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// A replica's id among the directory nodes (configured explicitly, not from gossip).
pub type NodeId = u64;

/// Identifies one mutation of one client across its retries: the client's id and its own
/// serial number for the request. The state machine applies a request id once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    pub client: u64,
    pub serial: u64,
}

/// A log entry's payload: one namespace command and who asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: RequestId,
    pub cmd: NsCommand,
}

/// What applying an entry gave: the command's outcome (the first application's, for a
/// retry). Entries without a command (blank, membership) give `Ok` of an empty outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub outcome: Result<NsOutcome, FsError>,
    /// This request had been applied before: nothing was applied this time.
    pub repeated: bool,
}

openraft::declare_raft_types!(
    /// dfs's Raft: namespace commands over a redb log, snapshots as files.
    pub TypeConfig:
        D = Proposal,
        R = Reply,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = snapshot::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of one replica.
pub type DirRaft = Raft<TypeConfig>;
/// An error of openraft's storage, as the storage traits return it.
pub type StorageError = openraft::StorageError<NodeId>;

/// One running replica of the directory: its Raft and the namespace it applies to.
pub struct Replica {
    pub id: NodeId,
    pub raft: DirRaft,
    pub ns: Arc<Namespace>,
}

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("namespace: {0}")]
    Namespace(#[source] FsError),
    #[error("raft storage: {0}")]
    Storage(#[source] StorageError),
    #[error("raft: {0}")]
    Raft(#[source] openraft::error::Fatal<NodeId>),
    #[error("raft config: {0}")]
    Config(#[source] openraft::ConfigError),
    #[error("making the first membership: {0}")]
    Initialize(String),
}

/// Settings of the consensus (openraft's `Config`), checked.
pub fn config(
    heartbeat_ms: u64,
    election_min_ms: u64,
    election_max_ms: u64,
) -> Result<Arc<Config>, StartError> {
    let config = Config {
        cluster_name: "dfs-directory".into(),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: election_min_ms,
        election_timeout_max: election_max_ms,
        ..Default::default()
    };
    Ok(Arc::new(config.validate().map_err(StartError::Config)?))
}

/// Opens (or creates) the replica in `dir` (a fresh root gets `root_mode`) and starts its
/// Raft over `network`. A new
/// replica is empty; `DirRaft::initialize` on one of them makes the first membership.
pub async fn start<N>(
    id: NodeId,
    dir: &Path,
    root_mode: u32,
    config: Arc<Config>,
    network: N,
) -> Result<Replica, StartError>
where
    N: openraft::RaftNetworkFactory<TypeConfig>,
{
    let ns = Arc::new(
        Namespace::open_replicated(&dir.join("meta.redb"), root_mode)
            .map_err(StartError::Namespace)?,
    );
    let log = log_store::LogStore::open(&dir.join("raft-log.redb")).map_err(StartError::Storage)?;
    let sm = state_machine::NsStateMachine::open(ns.clone(), &dir.join("snapshots"))
        .map_err(StartError::Storage)?;
    let raft = Raft::new(id, config, network, log, sm)
        .await
        .map_err(StartError::Raft)?;
    Ok(Replica { id, raft, ns })
}
