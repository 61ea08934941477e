//! A `dfs-server` node's directory replica: the voters as configured
//! (`--directory-voters ID=HOST:PORT,...`, this node's own id by `--directory-id`), the
//! replica started in the node's data dir over the HTTP network, the first membership
//! made once, and the state `dfs status` shows.
//!
//! Owns: parsing the voters, the consensus timing of a node, starting and initializing
//! its replica, its status. Must not serve HTTP or propose commands.

use super::network::HttpNetwork;
use super::{config, start, NodeId, Replica, StartError};
use crate::cluster::peer::PeerClient;
use dfs_common::cluster::{MembershipChange, RaftStatus, ReplicaLag};
use dfs_common::FsError;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Leader heartbeats (ms), and the silence after which a follower stands for election
/// (a random time in the range, so that one usually stands alone). A lost leader is
/// replaced in well under 2 s; a heartbeat has 4 chances to arrive before anyone stands.
pub const HEARTBEAT_MS: u64 = 100;
pub const ELECTION_MIN_MS: u64 = 400;
pub const ELECTION_MAX_MS: u64 = 800;

/// How long after a quorum last acknowledged it a leader still answers clients. A
/// follower refuses to vote for another leader for the longest election timeout after a
/// heartbeat (openraft's leader lease), so within the shortest one, half of that, no other
/// leader can have been elected, let alone committed anything.
pub const LEASE_MS: u64 = ELECTION_MIN_MS;

/// The configured voters of the directory, by id.
pub type Voters = BTreeMap<NodeId, SocketAddr>;

/// Parses `ID=HOST:PORT` items; ids are positive and unique, addresses unique.
pub fn parse_voters(items: &[String]) -> Result<Voters, String> {
    let mut voters = Voters::new();
    for item in items {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("directory voter {item:?}: expected ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("directory voter {item:?}: the id must be a number > 0"))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("directory voter {item:?}: {addr:?} is not IP:PORT"))?;
        if voters.values().any(|a| *a == addr) {
            return Err(format!("directory voter {item:?}: address given twice"));
        }
        if voters.insert(id, addr).is_some() {
            return Err(format!("directory voter {item:?}: id {id} given twice"));
        }
    }
    Ok(voters)
}

/// Starts this node's replica (`id` among `voters`) in `dir`; the voter with the lowest
/// id makes the first membership if the log has none (a restart finds it in the log).
pub async fn start_node(
    id: NodeId,
    voters: &Voters,
    dir: &Path,
    root_mode: u32,
    peers: Arc<PeerClient>,
) -> Result<Replica, StartError> {
    let config = config(HEARTBEAT_MS, ELECTION_MIN_MS, ELECTION_MAX_MS)?;
    let replica = start(id, dir, root_mode, config, HttpNetwork::new(peers)).await?;
    let first = voters.keys().next() == Some(&id);
    if first {
        let members: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.to_string())))
            .collect();
        match replica.raft.initialize(members).await {
            Ok(()) => log::info!(
                "directory: made the first membership of {} voters",
                voters.len()
            ),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(RaftError::APIError(e)) => return Err(StartError::Initialize(e.to_string())),
            Err(RaftError::Fatal(e)) => return Err(StartError::Raft(e)),
        }
    }
    Ok(replica)
}

/// `Ok` while this replica leads the directory and holds its lease; else where clients
/// should go (`NotLeader` with the leader's address, or empty while none is known).
pub fn leading(replica: &Replica) -> Result<(), FsError> {
    // Asked on every client request: the metrics are read in place, not cloned.
    let metrics = replica.raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    if m.state == ServerState::Leader {
        let single = membership.voter_ids().count() == 1;
        let held = m.millis_since_quorum_ack.is_some_and(|ms| ms < LEASE_MS);
        if held || single {
            return Ok(());
        }
        return Err(FsError::NotLeader(String::new()));
    }
    let leader = m
        .current_leader
        .filter(|l| *l != replica.id)
        .and_then(|l| membership.get_node(&l))
        .map(|n| n.addr.clone());
    Err(FsError::NotLeader(leader.unwrap_or_default()))
}

/// The replica's view of the log, for `dfs status`: its term and state, the leader, and
/// on the leader how far each replica has matched the log.
pub fn status(replica: &Replica) -> RaftStatus {
    let m = replica.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let addr_of = |id: &NodeId| membership.get_node(id).map(|n| n.addr.clone());
    let last = m.last_log_index;
    let replicas = m
        .replication
        .iter()
        .flatten()
        .map(|(id, matched)| {
            let matched = matched.map(|l| l.index);
            ReplicaLag {
                id: *id,
                addr: addr_of(id).unwrap_or_default(),
                matched,
                lag: last.unwrap_or(0).saturating_sub(matched.unwrap_or(0)),
            }
        })
        .collect();
    let voters = membership
        .voter_ids()
        .map(|id| (id, addr_of(&id).unwrap_or_default()))
        .collect();
    RaftStatus {
        voters,
        id: replica.id,
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        leader_addr: m.current_leader.as_ref().and_then(addr_of),
        last_log: last,
        applied: m.last_applied.map(|l| l.index),
        millis_since_quorum_ack: m.millis_since_quorum_ack,
        replicas,
    }
}

/// Carries out `change` (on the leader; a membership change waits until the new voter
/// has caught up and the new membership is committed) and answers the state after it.
pub async fn change_members(
    replica: &Replica,
    change: MembershipChange,
) -> Result<RaftStatus, FsError> {
    let voters = || -> BTreeSet<NodeId> {
        let m = replica.raft.metrics().borrow().clone();
        m.membership_config.membership().voter_ids().collect()
    };
    match change {
        MembershipChange::Show => {}
        MembershipChange::AddVoter { id, addr } => {
            leading(replica)?;
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| FsError::Invalid(format!("{addr:?} is not IP:PORT")))?;
            let node = BasicNode::new(addr.to_string());
            replica
                .raft
                .add_learner(id, node, true)
                .await
                .map_err(write_error)?;
            let mut ids = voters();
            ids.insert(id);
            replica
                .raft
                .change_membership(ids, false)
                .await
                .map_err(write_error)?;
            log::info!("directory: voter {id} at {addr} added");
        }
        MembershipChange::RemoveVoter { id } => {
            leading(replica)?;
            let mut ids = voters();
            if !ids.remove(&id) {
                return Err(FsError::NotFound);
            }
            if ids.is_empty() {
                return Err(FsError::Invalid("the last voter cannot be removed".into()));
            }
            replica
                .raft
                .change_membership(ids, false)
                .await
                .map_err(write_error)?;
            log::info!("directory: voter {id} removed");
        }
    }
    Ok(status(replica))
}

/// A refused write of the log (a command or a membership change) as the error clients see.
pub fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> FsError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            FsError::NotLeader(f.leader_node.map(|n| n.addr).unwrap_or_default())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            FsError::Invalid(format!("directory membership: {e}"))
        }
        RaftError::Fatal(e) => {
            FsError::Unavailable(format!("this node's directory replica stopped: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn voters_parse_and_refuse_what_is_not_a_membership() {
        let v = parse_voters(&items(&["1=127.0.0.1:7001", "3=127.0.0.3:7001"])).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[&3], "127.0.0.3:7001".parse().unwrap());
        for bad in [
            &["1:127.0.0.1:7001"][..],
            &["0=127.0.0.1:7001"],
            &["x=127.0.0.1:7001"],
            &["1=localhost"],
            &["1=127.0.0.1:7001", "1=127.0.0.2:7001"],
            &["1=127.0.0.1:7001", "2=127.0.0.1:7001"],
        ] {
            assert!(parse_voters(&items(bad)).is_err(), "{bad:?}");
        }
    }
}
