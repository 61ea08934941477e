//! The network between directory replicas over HTTP: each Raft call (append entries,
//! vote, a snapshot chunk) is one `POST /v1/cluster/raft/<call>` signed with the cluster
//! key by `cluster::peer`, whose answer's MAC is checked before it is believed. A replica
//! is addressed by the `addr` of its `BasicNode` in the membership.
//!
//! Owns: the call names, their bodies (the project's bincode over openraft's serde types),
//! and turning a failed call into the error openraft expects (unreachable: back off;
//! anything else: a network error, retried at the next heartbeat). Must not decide
//! anything about the consensus, or serve calls (`serve` does).

use super::{codec, DirRaft, NodeId, TypeConfig};
use crate::cluster::peer::PeerClient;
use dfs_common::FsError;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;

/// The Raft calls, by the last part of their path under `/v1/cluster/raft/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Append,
    Vote,
    Snapshot,
}

impl Call {
    pub fn name(self) -> &'static str {
        match self {
            Call::Append => "append",
            Call::Vote => "vote",
            Call::Snapshot => "snapshot",
        }
    }

    pub fn from_name(name: &str) -> Option<Call> {
        [Call::Append, Call::Vote, Call::Snapshot]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// The network factory of one replica: calls go out through this node's peer client.
pub struct HttpNetwork {
    peers: Arc<PeerClient>,
}

impl HttpNetwork {
    pub fn new(peers: Arc<PeerClient>) -> HttpNetwork {
        HttpNetwork { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> HttpConnection {
        HttpConnection {
            peers: self.peers.clone(),
            target,
            addr: node.addr.parse().map_err(|_| node.addr.clone()),
        }
    }
}

/// Calls from this replica to one other.
pub struct HttpConnection {
    peers: Arc<PeerClient>,
    target: NodeId,
    /// The target's address, or the text that did not parse as one.
    addr: Result<SocketAddr, String>,
}

/// Why a call did not reach its target or was not understood.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("replica's address {0:?} is not host:port")]
    BadAddress(String),
    #[error("{0}")]
    Peer(#[source] FsError),
    #[error("encoding the call: {0}")]
    Encode(#[source] bincode::error::EncodeError),
    #[error("decoding the answer: {0}")]
    Decode(#[source] bincode::error::DecodeError),
}

type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl HttpConnection {
    async fn call<Req, Resp, E>(&self, call: Call, rpc: &Req, option: &RPCOption) -> Rpc<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let addr = match &self.addr {
            Ok(a) => *a,
            Err(text) => {
                let e = CallError::BadAddress(text.clone());
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let body = codec::encode(rpc)
            .map_err(|e| RPCError::Network(NetworkError::new(&CallError::Encode(e))))?;
        let answer = self
            .peers
            .raft_call(addr, call.name(), body, option.hard_ttl())
            .await
            .map_err(|e| match e {
                FsError::Unavailable(_) => {
                    RPCError::Unreachable(Unreachable::new(&CallError::Peer(e)))
                }
                e => RPCError::Network(NetworkError::new(&CallError::Peer(e))),
            })?;
        let answer: Result<Resp, E> = codec::decode(&answer)
            .map_err(|e| RPCError::Network(NetworkError::new(&CallError::Decode(e))))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        self.call(Call::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(Call::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        self.call(Call::Vote, &rpc, &option).await
    }
}

/// Answers one Raft call (its body already checked against the cluster key): the
/// replica's answer, or its Raft error, encoded for `HttpConnection::call`.
pub async fn serve(raft: &DirRaft, call: Call, body: &[u8]) -> Result<Vec<u8>, FsError> {
    fn bad(e: bincode::error::DecodeError) -> FsError {
        FsError::BadRequest(format!("raft call: {e}"))
    }
    fn encoded<T: Serialize>(answer: &T) -> Result<Vec<u8>, FsError> {
        codec::encode(answer).map_err(|e| FsError::Io(format!("encoding a raft answer: {e}")))
    }
    match call {
        Call::Append => {
            let rpc: AppendEntriesRequest<TypeConfig> = codec::decode(body).map_err(bad)?;
            encoded(&raft.append_entries(rpc).await)
        }
        Call::Vote => {
            let rpc: VoteRequest<NodeId> = codec::decode(body).map_err(bad)?;
            encoded(&raft.vote(rpc).await)
        }
        Call::Snapshot => {
            let rpc: InstallSnapshotRequest<TypeConfig> = codec::decode(body).map_err(bad)?;
            encoded(&raft.install_snapshot(rpc).await)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The calls and their answers survive the trip through the project's bincode: the
    //! formats are serde's derive of openraft's types, which bincode (not self-describing)
    //! carries only if none of them needs a self-describing format.
    use super::super::testkit::create;
    use super::super::{Proposal, RequestId};
    use super::*;
    use openraft::error::{Fatal, SnapshotMismatch};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, Vote};
    use std::fmt::Debug;

    /// Compared by their `Debug` form: not every openraft message is `PartialEq`.
    fn round_trip<T: Serialize + DeserializeOwned + Debug>(value: T) {
        let bytes = codec::encode(&value).unwrap();
        let back = codec::decode::<T>(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn raft_calls_and_answers_survive_the_codec() {
        let proposal = Proposal {
            id: RequestId {
                client: 9,
                serial: 4,
            },
            cmd: create(dfs_common::ROOT_INO, "f", 7),
        };
        round_trip(AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(3, 10)),
            entries: vec![
                Entry {
                    log_id: log_id(3, 11),
                    payload: EntryPayload::Normal(proposal),
                },
                Entry {
                    log_id: log_id(3, 12),
                    payload: EntryPayload::Blank,
                },
            ],
            leader_commit: Some(log_id(3, 10)),
        });
        round_trip(VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 12))));
        round_trip(InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(3, 12)),
                last_membership: Default::default(),
                snapshot_id: "3-12".into(),
            },
            offset: 0,
            data: vec![1, 2, 3],
            done: false,
        });
        let ok: Result<VoteResponse<NodeId>, RaftError<NodeId>> = Ok(VoteResponse::new(
            Vote::new_committed(3, 1),
            Some(log_id(3, 12)),
            true,
        ));
        round_trip(ok);
        let appended: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            Ok(AppendEntriesResponse::Success);
        round_trip(appended);
        let stopped: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            Err(RaftError::Fatal(Fatal::Stopped));
        round_trip(stopped);
        let mismatch: Result<InstallSnapshotResponse<NodeId>, _> = Err(
            RaftError::<NodeId, _>::APIError(InstallSnapshotError::from(SnapshotMismatch {
                expect: openraft::SnapshotSegmentId {
                    id: "a".into(),
                    offset: 0,
                },
                got: openraft::SnapshotSegmentId {
                    id: "b".into(),
                    offset: 5,
                },
            })),
        );
        round_trip(mismatch);
    }

    #[test]
    fn calls_are_named_by_their_path() {
        for call in [Call::Append, Call::Vote, Call::Snapshot] {
            assert_eq!(Call::from_name(call.name()), Some(call));
        }
        assert_eq!(Call::from_name("install"), None);
    }
}
