//! Replication repair: a corrupt copy is never served and is replaced (the scrubber finds
//! it), and a node gone for longer than the dead grace is *departed*: its blobs are
//! re-replicated onto the live nodes, and the stand-in copies trimmed when it returns.
//!
//! Each test starts a `Cluster` of real `dfs-server`s on its own 127.A.B.x addresses
//! (node 0 the directory, the others data nodes) and mounts node 0. The corruption test
//! waits until "converged" (see `dfs_tests::replicas`: with R = N, every blob on every
//! node). The departure test runs R = 3 on 4 nodes and checks exact placement instead: each
//! blob on exactly 3. Convergence times are printed (`scripts/test.sh -- --nocapture`).

use dfs_common::cluster::MemberState;
use dfs_tests::{
    all_alive, assert_stores_clean, blob_ids, member_state, mix, mount_on, pseudo_random,
    read_back, sha256, status_line, wait_converged, wait_for, write, write_files, write_sized,
    Cluster, Written, CONVERGE, DETECT, MIB,
};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

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
fn a_second_directory_node_deletes_nothing() {
    // A node started by mistake with the directory role has an empty namespace: to it
    // every blob is garbage. The real directory must refuse to repair (or collect) while
    // two directories are members, and data nodes must take orders from neither.
    let c = Cluster::start(
        3,
        &[
            "--replicas",
            "3",
            "--repair-interval-secs",
            "1",
            "--gc-grace-secs",
            "1",
        ],
    );
    let addrs = c.addrs();
    c.wait_until("all three nodes alive", DETECT, |st| all_alive(st, &addrs));
    let m = mount_on(&c, "w");
    let files = write_files(m.path(), "g", 0..20, 5);
    wait_converged(&c, &files, "before the second directory");
    // Let every copy get older than the rogue's GC grace.
    std::thread::sleep(Duration::from_secs(2));

    let key = c.dir().join("cluster.key").to_string_lossy().into_owned();
    let seed = c.addr(0);
    let rogue = dfs_tests::Server::start_at(
        &c.ip(3),
        &c.dir().join("rogue"),
        dfs_tests::free_port(),
        &[
            "--cluster-key-file",
            &key,
            "--peers",
            &seed,
            "--repair-interval-secs",
            "1",
            "--gc-grace-secs",
            "1",
        ],
    );
    let rogue_addr = rogue.addr();
    let (st, _) = c.wait_until("node 0 sees the second directory", DETECT, |st| {
        member_state(st, &rogue_addr) == Some(MemberState::Alive)
    });
    let rounds = st.rounds;
    std::thread::sleep(Duration::from_secs(5));
    let st = c.status(0);
    assert_eq!(
        st.rounds,
        rounds,
        "node 0 ran repair rounds with two directories: {}",
        status_line(&st)
    );
    for id in blob_ids(&files) {
        let held = c.holders(&id, &[0, 1, 2]);
        assert_eq!(
            held.len(),
            3,
            "blob {id} lost copies to the second directory: on {held:?}"
        );
        for i in held {
            assert!(c.blob_ok(i, &id), "blob {id} on node {i} is damaged");
        }
    }
    read_back(
        &mount_on(&c, "r"),
        &files,
        "with a second directory in the cluster",
    );
}
