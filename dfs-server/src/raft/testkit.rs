//! A cluster of replicas in one process over the in-process router, for the Raft tests:
//! start, stop, wipe and restart replicas, propose commands as a client would (retrying the
//! same request id until some leader answers), and read each replica's namespace whole.
//! Every wait is for a condition, with a deadline.

use super::router::Router;
use super::{config, start, NodeId, Proposal, Replica, Reply, RequestId};
use crate::namespace::{Namespace, NsCommand};
use dfs_common::{Attr, FileKind, Ino, Timestamp, ROOT_INO};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for anything in these tests.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Cluster {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pub router: Arc<Router>,
    pub nodes: BTreeMap<NodeId, Replica>,
}

impl Cluster {
    /// Replicas `1..=n`, started, with node 1 initializing the membership of all of them.
    pub async fn new(n: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            root: dir.path().to_path_buf(),
            _dir: dir,
            router: Router::new(),
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            c.start(id).await;
        }
        let members: BTreeMap<NodeId, BasicNode> = (1..=n)
            .map(|id| (id, BasicNode::new(format!("node-{id}"))))
            .collect();
        c.nodes[&1].raft.initialize(members).await.unwrap();
        c
    }

    fn dir_of(&self, id: NodeId) -> PathBuf {
        self.root.join(format!("node-{id}"))
    }

    /// Starts replica `id` on its directory (as it was left, or empty).
    pub async fn start(&mut self, id: NodeId) {
        let dir = self.dir_of(id);
        std::fs::create_dir_all(&dir).unwrap();
        let config = config(50, 150, 300).unwrap();
        let replica = start(id, &dir, 0o755, config, self.router.network(id))
            .await
            .unwrap();
        self.router.add(id, replica.raft.clone());
        self.nodes.insert(id, replica);
    }

    /// Stops replica `id` and waits until its databases are closed (its directory may then
    /// be reopened or removed).
    pub async fn stop(&mut self, id: NodeId) {
        self.router.remove(id);
        let replica = self.nodes.remove(&id).unwrap();
        replica.raft.shutdown().await.unwrap();
        drop(replica.raft);
        let ns = replica.ns;
        let end = Instant::now() + DEADLINE;
        // The state machine's tasks end after the core; the namespace is closed with them.
        while Arc::strong_count(&ns) > 1 {
            assert!(
                Instant::now() < end,
                "replica {id} did not close its namespace"
            );
            tokio::task::yield_now().await;
        }
    }

    /// Stops replica `id` and removes everything it had on disk.
    pub async fn wipe(&mut self, id: NodeId) {
        self.stop(id).await;
        std::fs::remove_dir_all(self.dir_of(id)).unwrap();
    }

    /// The leader the running replicas agree on (waits for one).
    pub async fn leader(&self) -> NodeId {
        let end = Instant::now() + DEADLINE;
        loop {
            for (id, r) in &self.nodes {
                let m = r.raft.metrics().borrow().clone();
                if m.state == ServerState::Leader && m.current_leader == Some(*id) {
                    return *id;
                }
            }
            assert!(Instant::now() < end, "no leader");
            let any = self.nodes.values().next().expect("a running replica");
            // Wakes on the next change of that replica's metrics (or after a heartbeat).
            let _ = any
                .raft
                .wait(Some(Duration::from_millis(100)))
                .metrics(|m| m.state == ServerState::Leader, "a leader")
                .await;
        }
    }

    /// Proposes `cmd` as request `id` as a client does: to the leader, again (same id) to
    /// whichever leader there is after a failure, until one answers.
    pub async fn propose(&self, id: RequestId, cmd: NsCommand) -> Reply {
        let end = Instant::now() + DEADLINE;
        loop {
            let leader = self.leader().await;
            let proposal = Proposal {
                id,
                cmd: cmd.clone(),
            };
            let raft = &self.nodes[&leader].raft;
            match raft.client_write(proposal).await {
                Ok(resp) => return resp.data,
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))
                | Err(RaftError::Fatal(_)) => {
                    // Deposed: wait for it to notice before asking for the leader again.
                    let _ = raft
                        .wait(Some(Duration::from_millis(100)))
                        .metrics(|m| m.state != ServerState::Leader, "deposed")
                        .await;
                }
                Err(e) => panic!("proposal {id:?}: {e}"),
            }
            assert!(Instant::now() < end, "proposal {id:?} never answered");
        }
    }

    /// Waits until every running replica has applied `index`.
    pub async fn applied_everywhere(&self, index: u64) {
        for r in self.nodes.values() {
            r.raft
                .wait(Some(DEADLINE))
                .applied_index_at_least(Some(index), "applied everywhere")
                .await
                .unwrap();
        }
    }

    /// The highest index any running replica has applied: every acknowledged command is
    /// at or below it. (Not the leader's: a leader elected a moment ago applies what its
    /// predecessor committed only after committing an entry of its own term.)
    pub async fn last_applied(&self) -> u64 {
        self.nodes
            .values()
            .map(|r| {
                r.raft
                    .metrics()
                    .borrow()
                    .last_applied
                    .map_or(0, |l| l.index)
            })
            .max()
            .unwrap_or(0)
    }

    /// Every running replica's namespace once they have all applied as far as any has and
    /// their namespaces agree, or as they are at the deadline (for `same` to show how they
    /// differ).
    pub async fn settled_trees(&self) -> BTreeMap<NodeId, Tree> {
        let end = Instant::now() + DEADLINE;
        loop {
            self.applied_everywhere(self.last_applied().await).await;
            let trees: BTreeMap<NodeId, Tree> = self
                .nodes
                .iter()
                .map(|(id, r)| (*id, tree(&r.ns)))
                .collect();
            let first = trees.values().next();
            if trees.values().all(|t| Some(t) == first) || Instant::now() >= end {
                return trees;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A namespace whole: each path with its attributes.
pub type Tree = BTreeMap<Vec<u8>, Attr>;

pub fn tree(ns: &Namespace) -> Tree {
    let mut out = Tree::new();
    out.insert(b"/".to_vec(), ns.getattr(ROOT_INO).unwrap());
    walk(ns, ROOT_INO, b"", &mut out);
    out
}

fn walk(ns: &Namespace, dir: Ino, prefix: &[u8], out: &mut Tree) {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (entries, more) = ns.readdir(dir, after.as_deref(), 0).unwrap();
        for (name, attr) in &entries {
            let path = [prefix, b"/", name].concat();
            if attr.kind == FileKind::Dir {
                walk(ns, attr.ino, &path, out);
            }
            out.insert(path, attr.clone());
        }
        if !more {
            return;
        }
        after = entries.last().map(|(n, _)| n.clone());
    }
}

/// All replicas' trees are the same; returns it.
pub fn same(trees: &BTreeMap<NodeId, Tree>) -> Tree {
    let first = trees.values().next().unwrap();
    for (id, t) in trees {
        assert_eq!(t, first, "replica {id} differs");
    }
    first.clone()
}

pub fn ts(secs: i64) -> Timestamp {
    Timestamp { secs, nanos: 0 }
}

pub fn create(parent: Ino, name: &str, secs: i64) -> NsCommand {
    NsCommand::Create {
        parent,
        name: name.into(),
        mode: 0o644,
        umask: 0o022,
        uid: 1000,
        gid: 1000,
        exclusive: true,
        now: ts(secs),
    }
}

pub fn mkdir(parent: Ino, name: &str, secs: i64) -> NsCommand {
    NsCommand::Mkdir {
        parent,
        name: name.into(),
        mode: 0o755,
        umask: 0o022,
        uid: 1000,
        gid: 1000,
        now: ts(secs),
    }
}

pub fn rename(parent: Ino, name: &str, new_parent: Ino, new_name: &str, secs: i64) -> NsCommand {
    NsCommand::Rename {
        parent,
        name: name.into(),
        new_parent,
        new_name: new_name.into(),
        flags: 0,
        now: ts(secs),
    }
}

/// The names in a tree, as strings.
pub fn paths(t: &Tree) -> BTreeSet<String> {
    t.keys()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}
