//! The replication service: a cluster of `dfs-server` nodes that each hold some of the
//! blobs, so that file contents survive the loss of a node.
//!
//! Modules, one concern each:
//! - `membership`: who is in the cluster and alive (SWIM gossip, foca), packets signed
//!   with the cluster key;
//! - `key`: the cluster key and the MACs of node-to-node requests and answers;
//! - `placement`: which R nodes should hold a blob (rendezvous hashing), R and W;
//! - `peer`: the HTTP client one node uses to talk to another;
//! - `local`: this node's copies as the others see them (digests, listings, deletes);
//! - `replicate`: putting a new blob on W nodes before a store is acknowledged, pulling
//!   copies (read repair and repair orders);
//! - `repair`: the round on the directory node that compares every node's digests with
//!   what the namespace says must exist, orders missing copies, trims extra ones and
//!   collects garbage;
//! - `scrub`: re-hashing every local copy, dropping and re-pulling bad ones.
//!
//! The `/v1/cluster/` resources a node serves to the others are `crate::api::cluster`'s.
//!
//! This file owns the settings, `Replication` (what the service works on), the counters and the view of the members with their
//! derived state (a dead member past its grace is *departed*). Must not: touch the
//! namespace (only `repair` reads which blobs are referenced) or blob files (`blobs`).
//!
//! The directory service (namespace, locks, callbacks) stays on the one node with the
//! directory role; every node, that one included, stores blobs.

pub mod key;
pub mod local;
pub mod membership;
pub mod peer;
pub mod placement;
pub mod repair;
pub mod replicate;
pub mod scrub;

use crate::blobs::BlobStore;
use crate::namespace::Namespace;
use dfs_common::cluster::{ClusterStatus, MemberState, MemberStatus, ROLE_DATA, ROLE_DIRECTORY};
use dfs_common::BlobId;
use key::ClusterKey;
use membership::Membership;
use placement::Candidate;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the replication service works on: the cluster, this node's blob copies, and the
/// namespace that says which blobs are referenced (read by `repair`, and to drop a copy
/// nothing references).
#[derive(Clone)]
pub struct Replication {
    pub cluster: Arc<Cluster>,
    pub blobs: Arc<BlobStore>,
    pub ns: Arc<Namespace>,
}

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// This node's address (HTTP over TCP and gossip over UDP, same port).
    pub advertise: SocketAddr,
    pub roles: u8,
    pub seeds: Vec<SocketAddr>,
    /// None: a node on its own (no gossip, every blob stored here only).
    pub key: Option<ClusterKey>,
    pub replicas: u32,
    pub write_quorum: Option<u32>,
    /// A dead member keeps its place for this long before its blobs move elsewhere.
    pub dead_grace: Duration,
    pub repair_interval: Duration,
    /// One scrub pass over every local blob per this period.
    pub scrub_interval: Duration,
    /// The GC grace: unreferenced copies younger than this are never deleted.
    pub gc_grace: Duration,
}

impl ClusterSettings {
    /// A node on its own.
    pub fn standalone(advertise: SocketAddr) -> ClusterSettings {
        ClusterSettings {
            advertise,
            roles: ROLE_DIRECTORY | ROLE_DATA,
            seeds: Vec::new(),
            key: None,
            replicas: 1,
            write_quorum: None,
            dead_grace: Duration::from_secs(60),
            repair_interval: Duration::from_secs(10),
            scrub_interval: Duration::from_secs(86_400),
            gc_grace: Duration::from_secs(300),
        }
    }
}

/// Counters shown by `dfs status` (all since start).
#[derive(Default)]
pub struct Counters {
    pub pulls_done: AtomicU64,
    pub pulls_failed: AtomicU64,
    pub scrubbed: AtomicU64,
    pub scrub_bad: AtomicU64,
    pub repairs_ordered: AtomicU64,
    pub rounds: AtomicU64,
}

/// What the last repair round found (directory node only).
#[derive(Default, Clone)]
pub struct RepairView {
    /// Per member: blobs and bytes it reported.
    pub held: HashMap<SocketAddr, (u64, u64)>,
    /// Summed pull totals the members reported.
    pub repairs_done: u64,
    pub repairs_failed: u64,
    pub repairs_pending: u64,
    pub referenced: u64,
    pub under_replicated: u64,
    pub missing: u64,
    pub finished_at: Option<Instant>,
}

/// Placement as this node sees the cluster now.
pub struct View {
    /// Data members not departed: where blobs are placed.
    pub candidates: Vec<Candidate>,
    /// Effective R and W.
    pub r: usize,
    pub w: usize,
    /// Data members alive or suspect: who can be asked.
    pub live: Vec<SocketAddr>,
}

/// A member as this node sees it now.
#[derive(Clone, Debug)]
pub struct Member {
    pub addr: SocketAddr,
    pub roles: u8,
    pub state: MemberState,
    pub since: Instant,
}

/// A member declared dead this recently is still asked (a store's push, a repair
/// round's digests): when a partition heals, members that were never cut off take new
/// gossip identities and are seen down and up again within a second. A node that is
/// really gone fails such a call at once, and only successful copies count.
const FLAP: Duration = Duration::from_secs(2);

impl Member {
    pub fn is_live(&self) -> bool {
        match self.state {
            MemberState::Alive | MemberState::Suspect => true,
            MemberState::Dead => self.since.elapsed() < FLAP,
            MemberState::Departed => false,
        }
    }
}

pub struct Cluster {
    pub settings: ClusterSettings,
    /// `advertise` as text, as it appears in headers and status.
    pub me: String,
    membership: OnceLock<Arc<Membership>>,
    pub peers: Arc<peer::PeerClient>,
    pub counters: Counters,
    pub repair: Mutex<RepairView>,
    pub pulls: replicate::PullQueue,
    started: Instant,
}

impl Cluster {
    pub fn new(settings: ClusterSettings) -> Arc<Cluster> {
        let me = settings.advertise.to_string();
        let peers = Arc::new(peer::PeerClient::new(
            settings.advertise.ip(),
            settings.key.clone(),
            &me,
        ));
        Arc::new(Cluster {
            me,
            peers,
            settings,
            membership: OnceLock::new(),
            counters: Counters::default(),
            repair: Mutex::new(RepairView::default()),
            pulls: replicate::PullQueue::default(),
            started: Instant::now(),
        })
    }

    /// Starts gossip (when a cluster key is set).
    pub async fn join(&self, stop: tokio::sync::watch::Receiver<bool>) -> Result<(), String> {
        let Some(key) = &self.settings.key else {
            return Ok(());
        };
        let cfg = membership::MembershipConfig::new(
            self.settings.advertise,
            self.settings.roles,
            self.settings.seeds.clone(),
            key.gossip_key(),
        );
        let m = Membership::start(cfg, stop)
            .await
            .map_err(|e| format!("cannot start gossip on udp {}: {e}", self.me))?;
        let _ = self.membership.set(m);
        Ok(())
    }

    pub fn is_clustered(&self) -> bool {
        self.settings.key.is_some()
    }

    pub fn is_directory(&self) -> bool {
        self.settings.roles & ROLE_DIRECTORY != 0
    }

    /// Every member, this node included, with departed ones marked.
    pub fn members(&self) -> Vec<Member> {
        let Some(m) = self.membership.get() else {
            return vec![Member {
                addr: self.settings.advertise,
                roles: self.settings.roles,
                state: MemberState::Alive,
                since: self.started,
            }];
        };
        m.members()
            .into_iter()
            .map(|info| {
                let state = match info.state {
                    MemberState::Dead if info.since.elapsed() >= self.settings.dead_grace => {
                        MemberState::Departed
                    }
                    s => s,
                };
                Member {
                    addr: info.addr,
                    roles: info.roles,
                    state,
                    since: info.since,
                }
            })
            .collect()
    }

    /// Candidates, R, W and the live data members, from one look at the members.
    pub fn view(&self) -> View {
        let members = self.members();
        let candidates = Self::candidates(&members);
        View {
            r: self.replicas_for(candidates.len()),
            w: self.write_quorum(),
            candidates,
            live: members
                .iter()
                .filter(|m| m.is_live() && m.roles & ROLE_DATA != 0)
                .map(|m| m.addr)
                .collect(),
        }
    }

    /// The members blobs are placed on: data members that have not departed.
    pub fn candidates(members: &[Member]) -> Vec<Candidate> {
        members
            .iter()
            .filter(|m| m.roles & ROLE_DATA != 0 && m.state != MemberState::Departed)
            .map(|m| Candidate::new(m.addr))
            .collect()
    }

    /// R for a candidate count.
    pub fn replicas_for(&self, candidates: usize) -> usize {
        placement::effective_replicas(self.settings.replicas, candidates)
    }

    /// W. It comes from the configured R, never from how many members this node sees:
    /// a directory that has just restarted, or is cut off from the others, must not
    /// acknowledge a store with fewer copies than the cluster was set up to keep. (Stores
    /// fail instead until enough nodes are back.) Alone, without a cluster key, W is 1.
    pub fn write_quorum(&self) -> usize {
        if !self.is_clustered() {
            return 1;
        }
        let r = self.settings.replicas as usize;
        placement::write_quorum(self.settings.write_quorum, r)
    }

    /// The members with the directory role; more than one is a misconfiguration that
    /// would make each judge the other's blobs garbage.
    pub fn directories(&self) -> Vec<SocketAddr> {
        self.members()
            .into_iter()
            .filter(|m| m.roles & ROLE_DIRECTORY != 0 && m.state != MemberState::Departed)
            .map(|m| m.addr)
            .collect()
    }

    /// Whether `node` may give orders here: the one directory member.
    pub fn is_the_directory(&self, node: &str) -> bool {
        let dirs = self.directories();
        dirs.len() == 1 && dirs[0].to_string() == node
    }

    /// Whether placement puts a copy of `id` on this node.
    pub fn placed_here(&self, id: &BlobId) -> bool {
        let members = self.members();
        let candidates = Self::candidates(&members);
        let r = self.replicas_for(candidates.len());
        placement::placement(&candidates, id, r).contains(&self.settings.advertise)
    }

    /// The live data members, best first for `id`: the nodes to read a copy from.
    pub fn sources_for(&self, id: &BlobId) -> Vec<SocketAddr> {
        let members = self.members();
        let live: Vec<Candidate> = members
            .iter()
            .filter(|m| {
                m.is_live() && m.roles & ROLE_DATA != 0 && m.addr != self.settings.advertise
            })
            .map(|m| Candidate::new(m.addr))
            .collect();
        placement::ranked(&live, id)
            .into_iter()
            .map(|c| c.addr)
            .collect()
    }

    /// The member with the directory role, as far as gossip knows.
    pub fn directory_addr(&self) -> Option<SocketAddr> {
        self.members()
            .into_iter()
            .find(|m| m.roles & ROLE_DIRECTORY != 0)
            .map(|m| m.addr)
    }

    pub fn gossip_rejected(&self) -> u64 {
        self.membership
            .get()
            .map(|m| m.rejected_packets())
            .unwrap_or(0)
    }

    /// The cluster as this node sees it.
    pub fn status(&self) -> ClusterStatus {
        let members = self.members();
        let candidates = Self::candidates(&members).len();
        let view = self
            .repair
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClusterStatus {
            node: self.me.clone(),
            roles: self.settings.roles,
            replicas: self.settings.replicas,
            effective_replicas: self.replicas_for(candidates) as u32,
            write_quorum: self.write_quorum() as u32,
            members: members
                .iter()
                .map(|m| {
                    let held = view.held.get(&m.addr).filter(|_| m.is_live());
                    MemberStatus {
                        addr: m.addr.to_string(),
                        roles: m.roles,
                        state: m.state,
                        state_secs: m.since.elapsed().as_secs(),
                        blobs: held.map(|h| h.0),
                        bytes: held.map(|h| h.1),
                    }
                })
                .collect(),
            referenced_blobs: view.referenced,
            under_replicated: view.under_replicated,
            missing: view.missing,
            repairs_ordered: load(&self.counters.repairs_ordered),
            repairs_done: view.repairs_done,
            repairs_failed: view.repairs_failed,
            repairs_pending: view.repairs_pending,
            rounds: load(&self.counters.rounds),
            last_round_secs: view.finished_at.map(|t| t.elapsed().as_secs()),
            gossip_rejected: self.gossip_rejected(),
            scrubbed: load(&self.counters.scrubbed),
            scrub_bad: load(&self.counters.scrub_bad),
            directory: None,
        }
    }
}
