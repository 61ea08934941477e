//! The replication service's wire contract: what cluster nodes say to each other under
//! `/v1/cluster/`, and the cluster status that `dfs status` and the tests read.
//!
//! Owns: message shapes, header names, bucket arithmetic for digests. Must not do I/O.
//!
//! Node-to-node requests and their answers are authenticated with the cluster key (an
//! HMAC over method, path, time and the body's SHA-256, see `dfs-server::cluster::key`);
//! blob bodies are covered by their content hash instead. `GET /v1/cluster/status` is
//! open to anyone (it shows addresses and counts, never names or contents).

use crate::BlobId;
use serde::{Deserialize, Serialize};

/// Prefix of every cluster resource.
pub const PREFIX: &str = "/v1/cluster/";
/// `GET` (anyone): [`ClusterStatus`], bincode.
pub const STATUS_PATH: &str = "/v1/cluster/status";

/// Header: the sending node's address (`HOST:PORT`).
pub const HDR_NODE: &str = "x-dfs-node";
/// Header: the sender's clock, unix milliseconds.
pub const HDR_NODE_TIME: &str = "x-dfs-node-time";
/// Header: hex HMAC-SHA256 with the cluster key (request or answer).
pub const HDR_NODE_MAC: &str = "x-dfs-node-mac";

/// Number of placement ranges (buckets) blob ids are split into for digests: the first
/// byte of the id.
pub const BUCKETS: usize = 256;

/// Which bucket a blob belongs to.
pub fn bucket(id: &BlobId) -> usize {
    id.0[0] as usize
}

/// Roles a node can have (bit set).
pub const ROLE_DIRECTORY: u8 = 1;
pub const ROLE_DATA: u8 = 2;

/// What gossip says about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Alive,
    Suspect,
    /// Declared down by the failure detector; still counted in placement until its grace
    /// runs out.
    Dead,
    /// Down for longer than the grace: its blobs are being re-replicated elsewhere.
    Departed,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Departed => "departed",
        }
    }
}

/// One member as the answering node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub addr: String,
    pub roles: u8,
    pub state: MemberState,
    /// Seconds since the state last changed.
    pub state_secs: u64,
    /// Blobs and bytes held, as last reported to the directory's repair round (None when
    /// unknown: not reported yet, or down).
    pub blobs: Option<u64>,
    pub bytes: Option<u64>,
}

/// The cluster as one node sees it. Repair figures come from the node with the directory
/// role (they are zero elsewhere).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node.
    pub node: String,
    pub roles: u8,
    /// Configured and effective replica counts (R is capped at the members not departed).
    pub replicas: u32,
    pub effective_replicas: u32,
    pub write_quorum: u32,
    pub members: Vec<MemberStatus>,
    /// Blobs referenced by the namespace.
    pub referenced_blobs: u64,
    /// Referenced blobs with fewer than `effective_replicas` verified copies on live nodes.
    pub under_replicated: u64,
    /// Referenced blobs with no copy on any live node.
    pub missing: u64,
    /// Copies ordered by repair since start, made, and failed.
    pub repairs_ordered: u64,
    pub repairs_done: u64,
    pub repairs_failed: u64,
    /// Copies waiting in the members' pull queues now.
    pub repairs_pending: u64,
    /// Repair rounds completed since start, and seconds since the last one ended.
    pub rounds: u64,
    pub last_round_secs: Option<u64>,
    /// Gossip packets refused (bad cluster key, bad format, too old).
    pub gossip_rejected: u64,
    /// This node's scrubber: blobs checked, bad copies found, since start.
    pub scrubbed: u64,
    pub scrub_bad: u64,
    /// The directory's Raft log as this node's replica sees it (`None`: the directory is
    /// not replicated, or this node holds no replica).
    pub directory: Option<RaftStatus>,
}

/// One directory replica's view of the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// This replica's id among the voters.
    pub id: u64,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub leader_addr: Option<String>,
    /// Index of the last entry in this replica's log, and of the last one applied.
    pub last_log: Option<u64>,
    pub applied: Option<u64>,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// On the leader: each other replica's matched index and how far it lags.
    pub replicas: Vec<ReplicaLag>,
    /// The voters of the membership in force: id and `IP:PORT`.
    pub voters: Vec<(u64, String)>,
}

/// `POST {PREFIX}{DIRECTORY_MEMBERS}` (cluster key; `dfs-server admin`): a change of the
/// directory's voters, made by its leader, answered with the `RaftStatus` after it.
pub const DIRECTORY_MEMBERS: &str = "directory/members";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// No change: the log state as the answering node sees it.
    Show,
    /// A new voter: it joins as a learner, catches up (from the log or a snapshot), then
    /// the voters become the old ones plus it.
    AddVoter { id: u64, addr: String },
    /// The voters become the old ones without it.
    RemoveVoter { id: u64 },
}

/// How far one replica has matched the leader's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaLag {
    pub id: u64,
    pub addr: String,
    pub matched: Option<u64>,
    /// Entries the leader has that this replica has not matched.
    pub lag: u64,
}

/// `GET /v1/cluster/digests`: what a node holds, per bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// The node's clock when it listed (unix ms); echoed by delete orders.
    pub listed_at_ms: u64,
    /// Per bucket: SHA-256 over the sorted ids held in it (all zero when empty).
    pub digests: Vec<[u8; 32]>,
    pub blobs: u64,
    pub bytes: u64,
    /// The node's pull queue and totals (repair progress).
    pub pulls_queued: u64,
    pub pulls_done: u64,
    pub pulls_failed: u64,
    pub scrubbed: u64,
    pub scrub_bad: u64,
}

/// `POST /v1/cluster/listing`: ids held in the asked buckets, with each blob's age.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingRequest {
    pub buckets: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub listed_at_ms: u64,
    /// (id, size, mtime in unix ms)
    pub blobs: Vec<(BlobId, u64, u64)>,
}

/// `POST /v1/cluster/pull`: fetch these blobs from the first source that has a good copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullOrder {
    pub blobs: Vec<(BlobId, Vec<String>)>,
}

/// `POST /v1/cluster/delete`: remove these copies, unless changed since `listed_at_ms`
/// (the node's own clock from the listing the decision was made on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOrder {
    pub listed_at_ms: u64,
    pub blobs: Vec<BlobId>,
}

/// Request header of a client fetch: the client can read the contents from another
/// node itself (it is not at the privacy level, where only the directory node's sealed
/// answer will do).
pub const HDR_REPLICA_OK: &str = "x-dfs-replica-ok";
/// Answer header (status 303) of a fetch whose contents the directory node does not
/// hold: the nodes holding them, best first, comma separated.
pub const HDR_REPLICAS: &str = "x-dfs-replicas";
/// Answer header next to `HDR_REPLICAS`: `<expiry unix ms>.<hex MAC>`, the directory's
/// permission for this client to read this one blob from those nodes until the expiry.
pub const HDR_READ_TOKEN: &str = "x-dfs-read-token";
/// `GET {READ_PREFIX}<blob hex>?token=<HDR_READ_TOKEN value>`: a client reading a blob
/// from a node with a read token. The client checks the bytes against the blob id.
pub const READ_PREFIX: &str = "/v1/cluster/read/";

/// Blob resource of a node: `GET` streams a verified copy, `PUT` stores one (fsynced
/// before the answer), both cluster-authenticated.
pub fn blob_path(id: &BlobId) -> String {
    format!("{PREFIX}blobs/{}", id.to_hex())
}
