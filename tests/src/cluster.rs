//! A replicated cluster for a test: N real `dfs-server` processes on 127.A.B.1 ..
//! 127.A.B.N (A, B random per cluster, so parallel tests never share addresses), one shared
//! cluster key, node 0 the directory (`--roles directory,data`), the others `--roles data`.
//! Plus what the replication tests look at: each node's `ClusterStatus`, its blob store
//! (re-hashed from disk), and network partitions made with iptables.
//!
//! Must not leave processes or firewall rules behind: `Drop` of the cluster kills every
//! node (through `Server`), `Drop` of a `Partition` removes exactly the rules it added,
//! also when the test panics.

use crate::http::http;
use crate::measure::{sha256_file, urandom, wait_for};
use crate::procs::free_port;
use crate::server::Server;
use crate::shell::run_timeout;
use dfs_common::cluster::{ClusterStatus, MemberState, STATUS_PATH};
use dfs_common::codec;
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Writes a fresh cluster key (32 random bytes, mode 0600) to `path`.
pub fn write_key_file(path: &Path) {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create key file {}: {e}", path.display()));
    f.write_all(&urandom(32)).expect("write key file");
}

/// The addresses a status knows, the answering node included: every member and itself.
pub fn known_addrs(st: &ClusterStatus) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = st.members.iter().map(|m| m.addr.clone()).collect();
    s.insert(st.node.clone());
    s
}

/// Does `st` know exactly `addrs` (itself included), every member alive?
pub fn all_alive(st: &ClusterStatus, addrs: &[String]) -> bool {
    known_addrs(st) == addrs.iter().cloned().collect()
        && st.members.iter().all(|m| m.state == MemberState::Alive)
}

/// One line of the figures of a status (for progress and failure messages).
pub fn status_line(st: &ClusterStatus) -> String {
    let m = st.members.iter().map(|m| {
        let (a, s, secs) = (&m.addr, m.state.as_str(), m.state_secs);
        format!("{a} {s} {secs}s blobs={:?}", m.blobs)
    });
    format!(
        "node {} R/W={}/{} referenced={} under_replicated={} missing={} \
         repairs ordered/done/failed={:?} rounds={} gossip_rejected={} scrubbed/bad={:?} \
         members=[{}]",
        st.node,
        st.effective_replicas,
        st.write_quorum,
        st.referenced_blobs,
        st.under_replicated,
        st.missing,
        (st.repairs_ordered, st.repairs_done, st.repairs_failed),
        st.rounds,
        st.gossip_rejected,
        (st.scrubbed, st.scrub_bad),
        m.collect::<Vec<_>>().join(", ")
    )
}

/// The state `st` gives the member at `addr`, if it lists it.
pub fn member_state(st: &ClusterStatus, addr: &str) -> Option<MemberState> {
    st.members.iter().find(|m| m.addr == addr).map(|m| m.state)
}

/// N `dfs-server` nodes in one temporary directory (`node-I/` data dirs, `cluster.key`,
/// the server logs; tests put their mounts there too).
pub struct Cluster {
    nodes: Vec<Server>,
    net: (u8, u8),
    // Last field: removed after the nodes are dead.
    tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes, each seeded with all the others, `extra` appended to every node's
    /// command line, and waits until each answers `/v1/health`.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, 0)
    }

    /// `start`, with every node holding the directory role and a replica of the
    /// directory's Raft log (voter `i + 1` is node `i`).
    pub fn start_replicated_directory(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, n)
    }

    /// `start_replicated_directory` of `voters` voters, and `n - voters` more nodes that
    /// each name themselves as a voter besides those (ids `voters + 1 ..`): they wait,
    /// empty, until `dfs-server admin add-voter` makes them one.
    pub fn start_replicated_directory_with_spares(
        voters: usize,
        n: usize,
        extra: &[&str],
    ) -> Cluster {
        assert!((1..=n).contains(&voters), "{voters} voters of {n} nodes");
        Cluster::start_with(n, extra, voters)
    }

    /// The cluster key file every node was started with.
    pub fn key_file(&self) -> PathBuf {
        self.tmp.path().join("cluster.key")
    }

    /// `voters`: how many nodes (the first ones) are the directory's voters from the
    /// start; 0: the directory is on node 0 alone, not replicated.
    fn start_with(n: usize, extra: &[&str], voters: usize) -> Cluster {
        let replicated = voters > 0;
        assert!((1..=250).contains(&n), "cluster of {n} nodes");
        let tmp = tempfile::TempDir::new().expect("tempdir");
        let r = urandom(2);
        let net = (100 + r[0] % 100, 1 + r[1] % 254);
        let key = tmp.path().join("cluster.key");
        write_key_file(&key);
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < n {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let addrs: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}:{port}", ip_of(net, i)))
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, &port) in ports.iter().enumerate() {
            let peers: Vec<&str> = (addrs.iter().enumerate())
                .filter(|&(j, _)| j != i)
                .map(|(_, a)| &**a)
                .collect();
            let roles = if i == 0 || replicated {
                "directory,data"
            } else {
                "data"
            };
            let key_s = key.to_string_lossy();
            let peers_s = peers.join(",");
            let voters = (addrs.iter().enumerate())
                .filter(|(j, _)| *j < voters || *j == i)
                .map(|(j, a)| format!("{}={a}", j + 1))
                .collect::<Vec<_>>()
                .join(",");
            let id = (i + 1).to_string();
            let mut args = vec!["--cluster-key-file", &*key_s, "--roles", roles];
            if !peers.is_empty() {
                args.extend(["--peers", &*peers_s]);
            }
            if replicated {
                args.extend(["--directory-voters", &*voters, "--directory-id", &*id]);
            }
            args.extend_from_slice(extra);
            let dir = tmp.path().join(format!("node-{i}"));
            nodes.push(Server::start_at(&ip_of(net, i), &dir, port, &args));
        }
        eprintln!(
            "cluster of {n} nodes: {addrs:?} in {}",
            tmp.path().display()
        );
        Cluster { nodes, net, tmp }
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// 127.A.B.(i+1); also for i >= len(), for extra processes on the cluster's network.
    pub fn ip(&self, i: usize) -> String {
        ip_of(self.net, i)
    }

    /// `IP:PORT` of node i.
    pub fn addr(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Server::addr).collect()
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        self.nodes[i].data_dir()
    }

    /// SIGKILL node i (a crash).
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// Starts node i again (same address, data dir and options) and waits for its health.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
    }

    /// `GET /v1/cluster/status` of node i, decoded; `Err` says why not.
    pub fn try_status(&self, i: usize) -> Result<ClusterStatus, String> {
        let addr = self.addr(i);
        let r = http(&addr, "GET", STATUS_PATH, &[], b"")
            .map_err(|e| format!("GET {STATUS_PATH} on {addr}: {e}"))?;
        if r.status != 200 {
            return Err(format!("GET {STATUS_PATH} on {addr}: {}", r.describe()));
        }
        codec::decode(&r.body).map_err(|e| format!("undecodable ClusterStatus from {addr}: {e}"))
    }

    /// The status of node i; panics if it does not answer.
    pub fn status(&self, i: usize) -> ClusterStatus {
        self.try_status(i).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Polls node 0's status until `pred` holds (bounded); returns that status and the time
    /// it took. The panic shows the last status.
    pub fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        pred: impl FnMut(&ClusterStatus) -> bool,
    ) -> (ClusterStatus, Duration) {
        self.wait_until_on(0, what, limit, pred)
    }

    /// `wait_until` on node i's status.
    pub fn wait_until_on(
        &self,
        i: usize,
        what: &str,
        limit: Duration,
        mut pred: impl FnMut(&ClusterStatus) -> bool,
    ) -> (ClusterStatus, Duration) {
        wait_for(&format!("{what} (status of node {i})"), limit, || {
            let st = self.try_status(i)?;
            if pred(&st) {
                Ok(st)
            } else {
                Err(format!("{st:#?}"))
            }
        })
    }

    /// Where node i keeps the blob with hex id `hex`.
    pub fn blob_path(&self, i: usize, hex: &str) -> PathBuf {
        self.data_dir(i).join("blobs").join(&hex[..2]).join(hex)
    }

    /// Does node i hold a copy of `hex` whose contents hash to `hex`?
    pub fn blob_ok(&self, i: usize, hex: &str) -> bool {
        sha256_file(&self.blob_path(i, hex)).is_ok_and(|h| h == hex)
    }

    /// The nodes among `among` whose store has a file for blob `hex` (not re-hashed: pair
    /// with `blob_ok` for the contents).
    pub fn holders(&self, hex: &str, among: &[usize]) -> Vec<usize> {
        let has = |i: &usize| self.blob_path(*i, hex).is_file();
        among.iter().copied().filter(has).collect()
    }

    /// Every blob file of node i (`blobs/<2 hex>/<64 hex>`; temporary files are skipped).
    pub fn blob_paths(&self, i: usize) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(dirs) = fs::read_dir(self.data_dir(i).join("blobs")) else {
            return out;
        };
        for d in dirs.flatten() {
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if is_blob_name(&name) && f.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(f.path());
                }
            }
        }
        out.sort();
        out
    }

    /// Re-hashes every blob of node i: (blobs checked, those whose SHA-256 is not their
    /// name). A blob removed while it is checked does not count.
    pub fn verify_store(&self, i: usize) -> (usize, Vec<PathBuf>) {
        let mut count = 0;
        let mut bad = Vec::new();
        for p in self.blob_paths(i) {
            let Ok(h) = sha256_file(&p) else { continue };
            count += 1;
            if p.file_name().is_none_or(|n| n.to_string_lossy() != h) {
                bad.push(p);
            }
        }
        (count, bad)
    }

    /// Cuts node i off from every other node (both directions) until the `Partition` is
    /// healed or dropped. Traffic from 127.0.0.1 (mounts, the test) still reaches it.
    pub fn partition(&self, i: usize) -> Partition {
        check_iptables();
        let mut p = Partition { rules: Vec::new() };
        let me = self.ip(i);
        for j in (0..self.len()).filter(|&j| j != i) {
            let other = self.ip(j);
            for (src, dst) in [(me.clone(), other.clone()), (other, me.clone())] {
                iptables("-I", &src, &dst).unwrap_or_else(|e| panic!("{e}"));
                p.rules.push((src, dst));
            }
        }
        eprintln!("partitioned node {i} ({me}): {} DROP rules", p.rules.len());
        p
    }
}

fn ip_of(net: (u8, u8), i: usize) -> String {
    assert!(i < 254, "node index {i} out of the /24");
    format!("127.{}.{}.{}", net.0, net.1, i + 1)
}

fn is_blob_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// iptables rules (`INPUT -s SRC -d DST -j DROP`) that cut a node off; removed on drop.
pub struct Partition {
    rules: Vec<(String, String)>,
}

impl Partition {
    /// Removes the rules (panics if one could not be removed).
    pub fn heal(mut self) {
        let errors = self.remove_all();
        assert!(errors.is_empty(), "healing the partition: {errors:?}");
    }

    fn remove_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for (src, dst) in self.rules.drain(..).rev() {
            if let Err(e) = iptables("-D", &src, &dst) {
                errors.push(e);
            }
        }
        errors
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for e in self.remove_all() {
            eprintln!("Partition drop: {e}");
        }
    }
}

fn check_iptables() {
    if Command::new("iptables").arg("--version").output().is_err() {
        panic!(
            "iptables is missing: the partition tests need it (scripts/test.sh installs the \
             Debian package iptables)"
        );
    }
}

/// `iptables -w 10 OP INPUT -s src -d dst -j DROP`, bounded.
fn iptables(op: &str, src: &str, dst: &str) -> Result<(), String> {
    let mut cmd = Command::new("iptables");
    cmd.args(["-w", "10", op, "INPUT", "-s", src, "-d", dst, "-j", "DROP"]);
    let out = run_timeout(cmd, Duration::from_secs(30));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {op} INPUT -s {src} -d {dst} -j DROP failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
