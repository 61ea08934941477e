//! Replication: every blob lives on R nodes, a close returns only once W of them hold it,
//! a lost or cut-off node catches up by itself, a corrupt copy is never served and is
//! replaced, and gossip without the cluster key is ignored.
//!
//! Each test starts a `Cluster` of real `dfs-server`s on its own 127.A.B.x addresses
//! (node 0 the directory, the others data nodes) and mounts node 0. "Converged" means node
//! 0's status shows no under-replicated or missing blob, every node alive, and every
//! written file's blob, re-hashed from disk, on every node (with R = N). The departure test
//! runs R = 3 on 4 nodes and checks exact placement instead: each blob on exactly 3.
//! Convergence times are printed (`scripts/test.sh -- --nocapture`).

use dfs_common::cluster::{ClusterStatus, MemberState};
use dfs_tests::{
    all_alive, fetch_path, free_port, hex, known_addrs, member_state, pseudo_random, read, sha256,
    status_line, urandom, wait_for, write, write_key_file, Agent, Cluster, Mount, Server,
};
use std::fs::OpenOptions;
use std::net::UdpSocket;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Bound for a healed or restarted node to catch up.
const CONVERGE: Duration = Duration::from_secs(60);
/// Bound for the failure detector to notice a killed or cut-off node.
const DETECT: Duration = Duration::from_secs(45);
/// Bound for one agent step.
const STEP: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;
/// A killed or cut-off node stays dead but in placement for the whole test (it must not
/// become "departed", which would lower the effective R and re-place its blobs).
const GRACE: [&str; 2] = ["--dead-grace-secs", "600"];

/// A file a test wrote through the mount.
struct Written {
    name: String,
    len: usize,
    sha: String,
}

fn mount_on(c: &Cluster, name: &str) -> Mount {
    Mount::start(
        &c.addr(0),
        &c.dir().join(format!("mnt-{name}")),
        &c.dir().join(format!("cache-{name}")),
        &[],
    )
}

/// splitmix64: the deterministic sizes of the test files.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Size of file `k` of a mixed set: mostly 0–64 KiB (every 25th empty), every 20th
/// 1–4 MiB, two in 200 of 8–16 MiB.
fn mixed_size(k: usize, seed: u64) -> usize {
    let r = mix(seed.wrapping_mul(1_000_003) ^ k as u64) as usize;
    if k % 100 == 37 {
        8 * MIB + r % (8 * MIB)
    } else if k % 20 == 3 {
        MIB + r % (3 * MIB)
    } else if k.is_multiple_of(25) {
        0
    } else {
        r % (64 << 10)
    }
}

/// Writes files `{prefix}-{k}.bin` for k in `range` (sizes from `mixed_size`, contents
/// pseudo-random); every close must succeed.
fn write_files(mnt: &Path, prefix: &str, range: std::ops::Range<usize>, seed: u64) -> Vec<Written> {
    write_sized(mnt, prefix, range, seed, |k| mixed_size(k, seed))
}

/// `write_files` with the size of file `k` given by `size(k)`.
fn write_sized(
    mnt: &Path,
    prefix: &str,
    range: std::ops::Range<usize>,
    seed: u64,
    size: impl Fn(usize) -> usize,
) -> Vec<Written> {
    let t = Instant::now();
    let mut out = Vec::new();
    for k in range {
        let name = format!("{prefix}-{k:03}.bin");
        let data = pseudo_random(size(k), seed * 1_000_003 + k as u64);
        write(mnt.join(&name), &data).unwrap_or_else(|e| panic!("write+close {name}: {e}"));
        out.push(Written {
            name,
            len: data.len(),
            sha: sha256(&data),
        });
    }
    let bytes: usize = out.iter().map(|f| f.len).sum();
    eprintln!(
        "wrote {} {prefix}-* files ({:.1} MiB) in {:?}",
        out.len(),
        bytes as f64 / MIB as f64,
        t.elapsed()
    );
    out
}

/// Reads every file through `m` and compares length and SHA-256.
fn read_back(m: &Mount, files: &[Written], when: &str) {
    let mut wrong = Vec::new();
    for f in files {
        match read(m.join(&f.name)) {
            Ok(b) if b.len() == f.len && sha256(&b) == f.sha => {}
            Ok(b) => wrong.push(format!("{}: {} bytes, sha {}", f.name, b.len(), sha256(&b))),
            Err(e) => wrong.push(format!("{}: {e}", f.name)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{when}: {} of {} files read back wrong through a fresh mount:\n{}",
        wrong.len(),
        files.len(),
        wrong.join("\n")
    );
}

/// `Ok` once node 0 reports everything replicated with every node alive, and every
/// non-empty file's blob is on every node with the right contents.
fn converged(c: &Cluster, files: &[Written]) -> Result<(), String> {
    let st = c.try_status(0)?;
    if st.under_replicated != 0 || st.missing != 0 || !all_alive(&st, &c.addrs()) {
        return Err(status_line(&st));
    }
    let blobs: Vec<&Written> = files.iter().filter(|f| f.len > 0).collect();
    for i in 0..c.len() {
        let absent = blobs
            .iter()
            .filter(|f| !c.blob_path(i, &f.sha).is_file())
            .count();
        if absent > 0 {
            return Err(format!(
                "node {i} lacks {absent} of {} blobs; {}",
                blobs.len(),
                status_line(&st)
            ));
        }
    }
    for i in 0..c.len() {
        if let Some(f) = blobs.iter().find(|f| !c.blob_ok(i, &f.sha)) {
            return Err(format!("node {i}'s copy of {} ({}) is bad", f.name, f.sha));
        }
    }
    Ok(())
}

/// Waits (bounded by `CONVERGE`) until `converged`; returns how long it took.
fn wait_converged(c: &Cluster, files: &[Written], what: &str) -> Duration {
    let ((), t) = wait_for(what, CONVERGE, || converged(c, files));
    eprintln!("{what}: converged in {t:?}; {}", status_line(&c.status(0)));
    t
}

/// Every node's store re-hashes clean.
fn assert_stores_clean(c: &Cluster) {
    for i in 0..c.len() {
        let (count, bad) = c.verify_store(i);
        assert!(
            bad.is_empty(),
            "node {i}: {} of {count} blobs do not hash to their name: {bad:?}",
            bad.len()
        );
    }
}

fn distinct_blobs(files: &[Written]) -> u64 {
    let mut ids: Vec<&str> = files
        .iter()
        .filter(|f| f.len > 0)
        .map(|f| &*f.sha)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len() as u64
}

fn is_down(st: &ClusterStatus, addr: &str) -> bool {
    matches!(
        member_state(st, addr),
        Some(MemberState::Dead | MemberState::Departed)
    )
}

#[test]
fn losing_a_data_node_loses_nothing() {
    let mut c = Cluster::start(
        3,
        &[
            "--replicas",
            "3",
            "--repair-interval-secs",
            "1",
            GRACE[0],
            GRACE[1],
        ],
    );
    let (st, _) = c.wait_until("all three nodes alive", DETECT, |st| {
        all_alive(st, &c.addrs())
    });
    assert_eq!(
        (st.replicas, st.write_quorum),
        (3, 2),
        "R and W (W defaults to a majority of R): {}",
        status_line(&st)
    );
    let m = mount_on(&c, "w");
    let mut files = write_files(m.path(), "a", 0..200, 1);

    c.kill9(2);
    let r1 = mount_on(&c, "r1");
    let t = Instant::now();
    read_back(&r1, &files, "with node 2 killed");
    eprintln!(
        "read back {} files with node 2 down in {:?}",
        files.len(),
        t.elapsed()
    );

    // W=2 of the 2 live nodes: these closes must succeed.
    let later = write_files(m.path(), "a", 200..250, 1);
    read_back(&r1, &later, "files written while node 2 was down");
    files.extend(later);

    c.restart(2);
    let t = wait_converged(&c, &files, "after node 2 restarted");
    eprintln!("MEASURED: restarted node 2 caught up in {t:?}");
    let st = c.status(0);
    assert_eq!(
        st.referenced_blobs,
        distinct_blobs(&files),
        "referenced_blobs should count the distinct non-empty files written: {}",
        status_line(&st)
    );
    assert_stores_clean(&c);
}

#[test]
fn two_nodes_down_refuses_the_store() {
    let mut c = Cluster::start(
        3,
        &["--replicas", "3", "--write-quorum", "2", GRACE[0], GRACE[1]],
    );
    let m = mount_on(&c, "w");
    let files = write_files(m.path(), "b", 0..30, 2);
    let (a1, a2) = (c.addr(1), c.addr(2));
    c.kill9(1);
    c.kill9(2);
    let (_, t) = c.wait_until("node 0 sees nodes 1 and 2 dead", DETECT, |st| {
        is_down(st, &a1) && is_down(st, &a2)
    });
    eprintln!("MEASURED: two killed nodes declared dead after {t:?}");

    // A new file: the write lands in the cache; the store at close cannot reach W=2.
    let data = pseudo_random(16 << 10, 77);
    let target = m.join("refused.bin");
    let mut a = Agent::spawn("writer", c.dir());
    a.ok(&format!("open w {}", target.display()), STEP);
    a.ok(&format!("write {}", hex(&data)), STEP);
    let t = Instant::now();
    let closed = a.call("close", Duration::from_secs(90));
    eprintln!(
        "MEASURED: close with 1 of 3 nodes up answered {closed:?} after {:?}",
        t.elapsed()
    );
    a.kill();
    assert_eq!(
        closed,
        Err("EIO".to_string()),
        "close() must fail with EIO when fewer than W=2 nodes can take the blob"
    );
    let on_server = fetch_path(&c.addr(0), "refused.bin");
    assert!(
        on_server.as_deref() != Some(&data[..]),
        "the refused file's contents are current on the directory although the store failed"
    );

    // Everything closed before the outage is still there (node 0 holds a copy of each).
    let r = mount_on(&c, "r");
    read_back(&r, &files, "with two of three nodes down");
}

#[test]
fn a_partitioned_node_catches_up() {
    let c = Cluster::start(
        3,
        &[
            "--replicas",
            "3",
            "--repair-interval-secs",
            "1",
            GRACE[0],
            GRACE[1],
        ],
    );
    let m = mount_on(&c, "w");
    let mut files = write_files(m.path(), "c", 0..20, 3);
    wait_converged(&c, &files, "before the partition");

    let a2 = c.addr(2);
    let part = c.partition(2);
    let (st, t) = c.wait_until("node 0 sees node 2 suspect or dead", DETECT, |st| {
        member_state(st, &a2).is_some_and(|s| s != MemberState::Alive)
    });
    eprintln!(
        "MEASURED: partitioned node 2 noticed after {t:?} ({:?})",
        member_state(&st, &a2)
    );
    files.extend(write_files(m.path(), "c", 20..120, 3));
    // Cut off, node 2 cannot have the new blobs: the status must say so (this is what
    // makes "under_replicated == 0" below mean something).
    c.wait_until(
        "node 0 reports under-replicated blobs while node 2 is cut off",
        Duration::from_secs(15),
        |st| st.under_replicated > 0,
    );

    part.heal();
    let t = wait_converged(&c, &files, "after healing the partition");
    eprintln!("MEASURED: node 2 caught up {t:?} after the partition healed");
    let r = mount_on(&c, "r");
    read_back(&r, &files, "after the partition healed");
    assert_stores_clean(&c);
}

/// Size of file `k` of the departure test: every 8th 0.5–1.5 MiB, every 25th empty, the
/// rest 0–64 KiB.
fn spread_size(k: usize) -> usize {
    let r = mix(0xD3A7 ^ k as u64) as usize;
    if k.is_multiple_of(25) {
        0
    } else if k % 8 == 5 {
        MIB / 2 + r % MIB
    } else {
        r % (64 << 10)
    }
}

/// The distinct blob ids (hex) of the non-empty files.
fn blob_ids(files: &[Written]) -> Vec<String> {
    let mut ids: Vec<String> = (files.iter().filter(|f| f.len > 0))
        .map(|f| f.sha.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `Ok` once node 0 reports no under-replicated or missing blob and every one of `blobs`
/// is on exactly `copies` of the nodes `among`, each of those copies re-hashing to its
/// name.
fn on_exactly(c: &Cluster, blobs: &[String], among: &[usize], copies: usize) -> Result<(), String> {
    let st = c.try_status(0)?;
    if st.under_replicated != 0 || st.missing != 0 {
        return Err(status_line(&st));
    }
    let wrong: Vec<String> = (blobs.iter())
        .filter_map(|b| {
            let on = c.holders(b, among);
            (on.len() != copies).then(|| format!("{} on {on:?}", &b[..12]))
        })
        .collect();
    if !wrong.is_empty() {
        return Err(format!(
            "{} of {} blobs are not on exactly {copies} of nodes {among:?}, e.g. {:?}; {}",
            wrong.len(),
            blobs.len(),
            &wrong[..wrong.len().min(6)],
            status_line(&st)
        ));
    }
    for b in blobs {
        if let Some(i) = c.holders(b, among).into_iter().find(|i| !c.blob_ok(*i, b)) {
            return Err(format!("node {i}'s copy of {b} does not hash to its name"));
        }
    }
    Ok(())
}

/// Which of `blobs` each of the nodes `among` holds.
fn holdings(c: &Cluster, blobs: &[String], among: &[usize]) -> Vec<Vec<String>> {
    let holds = |i: usize| -> Vec<String> {
        let on_i = |b: &&String| c.blob_path(i, b).is_file();
        blobs.iter().filter(on_i).cloned().collect()
    };
    among.iter().map(|&i| holds(i)).collect()
}

/// R = 3 on 4 nodes: each blob on exactly 3 (rendezvous placement, not everything
/// everywhere). A data node killed for longer than the dead grace is *departed*: its blobs
/// are copied onto the 3 live nodes, which then hold everything. When it comes back,
/// placement is what it was before: it keeps its old copies, pulls those of the blobs
/// written while it was away that placement gives it, and the stand-in copies are
/// trimmed: every blob on exactly 3 nodes again, each holding the first blobs it held.
#[test]
fn a_departed_node_is_re_replicated_and_trimmed_on_return() {
    let mut c = Cluster::start(
        4,
        &[
            "--replicas",
            "3",
            "--dead-grace-secs",
            "3",
            "--repair-interval-secs",
            "1",
        ],
    );
    let addrs = c.addrs();
    let (st, _) = c.wait_until("all four nodes alive", DETECT, |st| all_alive(st, &addrs));
    assert_eq!(
        (st.effective_replicas, st.write_quorum),
        (3, 2),
        "R and W on 4 nodes with --replicas 3: {}",
        status_line(&st)
    );
    let m = mount_on(&c, "w");
    let files = write_sized(m.path(), "e", 0..60, 5, spread_size);
    let blobs = blob_ids(&files);
    let all: Vec<usize> = (0..c.len()).collect();
    let ((), t) = wait_for("every blob on exactly 3 of the 4 nodes", CONVERGE, || {
        let st = c.try_status(0)?;
        if !all_alive(&st, &addrs) {
            return Err(status_line(&st));
        }
        on_exactly(&c, &blobs, &all, 3)
    });
    let before = holdings(&c, &blobs, &all);
    let counts: Vec<usize> = before.iter().map(Vec::len).collect();
    eprintln!(
        "MEASURED: {} blobs on exactly 3 of 4 nodes after {t:?}; per node {counts:?}",
        blobs.len()
    );
    for (i, n) in counts.iter().enumerate() {
        assert!(
            (1..blobs.len()).contains(n),
            "node {i} holds {n} of {} blobs: placement should give each node some, not all \
             (per node {counts:?})",
            blobs.len()
        );
    }
    assert_eq!(counts.iter().sum::<usize>(), 3 * blobs.len());

    // The data node holding the most blobs goes away for good (as far as the grace knows).
    let victim = (1..c.len())
        .max_by_key(|&i| counts[i])
        .expect("a data node");
    let gone = c.addr(victim);
    let live: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let ordered0 = c.status(0).repairs_ordered;
    c.kill9(victim);
    let killed = Instant::now();
    let mut departed_after = None;
    let ((), t) = wait_for(
        &format!("node {victim} departed and its blobs on the 3 others"),
        CONVERGE,
        || {
            let st = c.try_status(0)?;
            if member_state(&st, &gone) != Some(MemberState::Departed) {
                return Err(format!(
                    "node {victim} not departed yet: {}",
                    status_line(&st)
                ));
            }
            departed_after.get_or_insert_with(|| killed.elapsed());
            let others_alive = (live.iter())
                .all(|&i| i == 0 || member_state(&st, &c.addr(i)) == Some(MemberState::Alive));
            if !others_alive || st.effective_replicas != 3 {
                return Err(status_line(&st));
            }
            on_exactly(&c, &blobs, &live, 3)
        },
    );
    let departed_after = departed_after.unwrap_or(t);
    let st = c.status(0);
    eprintln!(
        "MEASURED: killed node {victim} ({gone}) departed after {departed_after:?} (detection + \
         3 s grace)"
    );
    eprintln!(
        "MEASURED: its {} blobs re-replicated onto the 3 live nodes {:?} after departure \
         ({t:?} after the kill); repairs ordered {}; {}",
        counts[victim],
        t.saturating_sub(departed_after),
        st.repairs_ordered - ordered0,
        status_line(&st)
    );

    // Files written while it is away go to the 3 live nodes; placement on 4 nodes gives
    // most of them a copy on the departed node, which it must pull when it comes back.
    let mut files = files;
    let later = write_sized(m.path(), "e", 60..80, 5, spread_size);
    let new_blobs = blob_ids(&later);
    files.extend(later);
    let every_blob = blob_ids(&files);
    let ((), t) = wait_for("the new blobs on all 3 live nodes", CONVERGE, || {
        on_exactly(&c, &every_blob, &live, 3)
    });
    eprintln!(
        "{} new blobs on the 3 live nodes {t:?} after they were written",
        new_blobs.len()
    );

    let r = mount_on(&c, "r1");
    let t = Instant::now();
    read_back(&r, &files, &format!("with node {victim} departed"));
    eprintln!(
        "read back {} files through a fresh mount in {:?}",
        files.len(),
        t.elapsed()
    );
    drop(r);

    let ordered1 = c.status(0).repairs_ordered;
    c.restart(victim);
    let ((), t) = wait_for(
        &format!("node {victim} back, every blob on exactly 3 of the 4 nodes"),
        CONVERGE,
        || {
            let st = c.try_status(0)?;
            if !all_alive(&st, &addrs) {
                return Err(format!("not all alive: {}", status_line(&st)));
            }
            on_exactly(&c, &every_blob, &all, 3)
        },
    );
    let st = c.status(0);
    let pulled = holdings(&c, &new_blobs, &[victim]).remove(0).len();
    eprintln!(
        "MEASURED: restarted node {victim} alive, {pulled} of the {} blobs written while it \
         was away pulled there, stand-in copies trimmed, after {t:?}; repairs ordered {}; {}",
        new_blobs.len(),
        st.repairs_ordered - ordered1,
        status_line(&st)
    );
    assert!(
        pulled > 0 && st.repairs_ordered > ordered1,
        "node {victim} should have pulled some of the {} blobs written while it was away \
         (it holds {pulled}; repairs ordered since its return {})",
        new_blobs.len(),
        st.repairs_ordered - ordered1
    );
    let after = holdings(&c, &blobs, &all);
    for i in all {
        assert_eq!(
            after[i].len(),
            before[i].len(),
            "node {i} should hold the first blobs it held before node {victim} left"
        );
        assert!(
            after[i] == before[i],
            "node {i} holds {} of the first blobs, as before, but not the same ones",
            after[i].len()
        );
    }
    let r = mount_on(&c, "r2");
    read_back(&r, &files, &format!("after node {victim} came back"));
    assert_stores_clean(&c);
}

/// Flips one byte in the middle of a blob file, in place (same inode).
fn corrupt(path: &Path) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} read-write: {e}", path.display()));
    let at = f.metadata().expect("fstat blob").len() / 2;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read blob byte");
    f.write_all_at(&[b[0] ^ 0xFF], at).expect("write blob byte");
    f.sync_all().expect("fsync blob");
}

#[test]
fn a_corrupt_copy_is_never_served_and_is_repaired() {
    let c = Cluster::start(
        3,
        &[
            "--replicas",
            "3",
            "--repair-interval-secs",
            "1",
            "--scrub-interval-secs",
            "2",
        ],
    );
    let m = mount_on(&c, "w");
    // X is damaged on node 0 (the directory, which serves reads), Y on node 1.
    let specs = [
        ("x-small.bin", 4 << 10, 41),
        ("y-small.bin", 4 << 10, 42),
        ("x-big.bin", 3 * MIB, 43),
        ("y-big.bin", 3 * MIB, 44),
    ];
    let mut files = Vec::new();
    for (name, len, seed) in specs {
        let data = pseudo_random(len, seed);
        write(m.join(name), &data).unwrap_or_else(|e| panic!("write {name}: {e}"));
        files.push(Written {
            name: name.to_string(),
            len,
            sha: sha256(&data),
        });
    }
    // Ten other files, so the scrubber has more than the damaged blobs to go through.
    files.extend(write_files(m.path(), "d", 0..10, 4));
    wait_converged(&c, &files, "before the damage");
    let bad_before: u64 = (0..3).map(|i| c.status(i).scrub_bad).sum();

    let damaged: Vec<(usize, &Written)> = files[..4]
        .iter()
        .map(|f| (if f.name.starts_with('x') { 0 } else { 1 }, f))
        .collect();
    for &(node, f) in &damaged {
        corrupt(&c.blob_path(node, &f.sha));
        assert!(
            !c.blob_ok(node, &f.sha),
            "flipping a byte of node {node}'s copy of {} did not change its hash",
            f.name
        );
    }

    let r = mount_on(&c, "r");
    read_back(&r, &files[..4], "right after damaging one copy of each");

    let (bad_after, t) = wait_for(
        "the damaged copies repaired",
        Duration::from_secs(40),
        || {
            let wrong: Vec<String> = damaged
                .iter()
                .filter(|(node, f)| !c.blob_ok(*node, &f.sha))
                .map(|(node, f)| format!("node {node}'s copy of {}", f.name))
                .collect();
            let bad: u64 = (0..3)
                .filter_map(|i| c.try_status(i).ok())
                .map(|s| s.scrub_bad)
                .sum();
            if wrong.is_empty() && bad > bad_before {
                Ok(bad)
            } else {
                Err(format!(
                    "still bad: {wrong:?}; scrub_bad over all nodes {bad} (was {bad_before})"
                ))
            }
        },
    );
    eprintln!("MEASURED: damaged copies found and repaired within {t:?}; scrub_bad {bad_after}");
    read_back(&r, &files, "after the repair");
    assert_stores_clean(&c);
}

#[test]
fn gossip_without_the_cluster_key_is_ignored() {
    let c = Cluster::start(3, &[]);
    let addrs = c.addrs();
    c.wait_until("all three nodes alive", DETECT, |st| all_alive(st, &addrs));
    let rejected0 = c.status(0).gossip_rejected;

    // A fourth node with its own key, seeded with node 0.
    let other_key = c.dir().join("other.key");
    write_key_file(&other_key);
    let key = other_key.to_string_lossy().into_owned();
    let seed = c.addr(0);
    let outsider = Server::start_at(
        &c.ip(3),
        &c.dir().join("outsider"),
        free_port(),
        &[
            "--cluster-key-file",
            &key,
            "--peers",
            &seed,
            "--roles",
            "data",
        ],
    );
    let started = Instant::now();
    let (_, t) = c.wait_until(
        "node 0 counts the outsider's packets as rejected",
        Duration::from_secs(20),
        |st| st.gossip_rejected > rejected0,
    );
    eprintln!("MEASURED: first outsider packet rejected after {t:?}");
    // For at least 5 s after it started, no node takes the outsider in.
    loop {
        for i in 0..3 {
            let st = c.status(i);
            assert!(
                !known_addrs(&st).contains(&outsider.addr()),
                "node {i} lists the outsider {} that has the wrong key: {}",
                outsider.addr(),
                status_line(&st)
            );
        }
        if started.elapsed() >= Duration::from_secs(5) {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    let st = c.status(0);
    assert!(
        all_alive(&st, &addrs),
        "node 0 should list exactly the 3 members, all alive: {}",
        status_line(&st)
    );

    // Garbage datagrams on node 1's gossip port are counted and change nothing.
    let rejected1 = c.status(1).gossip_rejected;
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    for len in [1, 7, 64, 512, 1200] {
        sock.send_to(&urandom(len), c.addr(1))
            .expect("send garbage");
    }
    let (st, t) = c.wait_until_on(
        1,
        "node 1 counts garbage datagrams",
        Duration::from_secs(10),
        |st| st.gossip_rejected > rejected1,
    );
    eprintln!(
        "node 1 rejected {} garbage datagrams within {t:?}",
        st.gossip_rejected - rejected1
    );
    c.wait_until("all three still alive after the garbage", DETECT, |st| {
        all_alive(st, &addrs)
    });
    drop(outsider);
}
