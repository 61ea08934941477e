//! An in-process network between replicas: each call goes straight to the target's `Raft`
//! in the same process. For tests (and measurements of the consensus without a network);
//! the node-to-node HTTP network (`cluster::peer`, signed with the cluster key) is not
//! written yet and will implement the same `RaftNetwork` trait.
//!
//! Owns: the table of replicas reachable in this process, and which ones are cut off (a
//! partition: every call to or from a cut replica fails as unreachable). Must not touch
//! storage or decide anything about the consensus.

use super::{DirRaft, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// The replicas of one process.
#[derive(Default)]
pub struct Router {
    nodes: Mutex<BTreeMap<NodeId, DirRaft>>,
    cut: Mutex<BTreeSet<NodeId>>,
}

/// Why a call did not reach its target.
#[derive(Debug, thiserror::Error)]
pub enum Unreached {
    #[error("replica {0} is not running")]
    Stopped(NodeId),
    #[error("replica {0} is cut off")]
    Cut(NodeId),
}

impl Router {
    pub fn new() -> Arc<Router> {
        Arc::new(Router::default())
    }

    /// Makes `raft` reachable as `id`.
    pub fn add(&self, id: NodeId, raft: DirRaft) {
        self.lock_nodes().insert(id, raft);
    }

    /// Makes `id` unreachable (a stopped replica).
    pub fn remove(&self, id: NodeId) -> Option<DirRaft> {
        self.lock_nodes().remove(&id)
    }

    /// Cuts `id` off from every other replica, or heals it.
    pub fn set_cut(&self, id: NodeId, cut: bool) {
        let mut set = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        if cut {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// The network of replica `me`.
    pub fn network(self: &Arc<Router>, me: NodeId) -> Network {
        Network {
            router: self.clone(),
            me,
        }
    }

    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, DirRaft>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The target's `Raft`, if a call from `from` reaches it.
    fn reach(&self, from: NodeId, to: NodeId) -> Result<DirRaft, Unreachable> {
        let cut = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        for id in [from, to] {
            if cut.contains(&id) {
                return Err(Unreachable::new(&Unreached::Cut(id)));
            }
        }
        drop(cut);
        self.lock_nodes()
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::new(&Unreached::Stopped(to)))
    }
}

/// The network factory of one replica.
pub struct Network {
    router: Arc<Router>,
    me: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection {
            router: self.router.clone(),
            from: self.me,
            to: target,
        }
    }
}

/// Calls from one replica to another.
pub struct Connection {
    router: Arc<Router>,
    from: NodeId,
    to: NodeId,
}

type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl Connection {
    fn target(&self) -> Result<DirRaft, Unreachable> {
        self.router.reach(self.from, self.to)
    }

    /// After the call: a partition made meanwhile drops the answer too.
    fn answered<T, E: std::error::Error>(&self, res: Result<T, E>) -> Rpc<T, E> {
        if let Err(e) = self.router.reach(self.from, self.to) {
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let raft = self.target().map_err(RPCError::Unreachable)?;
        let res = raft.append_entries(rpc).await;
        self.answered(res)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let raft = self.target().map_err(RPCError::Unreachable)?;
        let res = raft.install_snapshot(rpc).await;
        self.answered(res)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        let raft = self.target().map_err(RPCError::Unreachable)?;
        let res = raft.vote(rpc).await;
        self.answered(res)
    }
}
