//! Replication: every blob lives on R nodes, a close returns only once W of them hold it,
//! and a lost or cut-off node catches up by itself.
//!
//! Each test starts a `Cluster` of real `dfs-server`s on its own 127.A.B.x addresses
//! (node 0 the directory, the others data nodes) and mounts node 0. "Converged" means node
//! 0's status shows no under-replicated or missing blob, every node alive, and every
//! written file's blob, re-hashed from disk, on every node (with R = N). Convergence times
//! are printed (`scripts/test.sh -- --nocapture`).
//!
//! Corrupt copies and departed nodes are in `replication_repair.rs`, gossip without the
//! cluster key in `gossip.rs`; the helpers they share in `dfs_tests::replicas`.

use dfs_common::cluster::{ClusterStatus, MemberState};
use dfs_tests::{
    all_alive, assert_stores_clean, blob_ids, fetch_path, hex, member_state, mount_on,
    pseudo_random, read_back, status_line, wait_converged, write_files, Agent, Cluster, Written,
    DETECT,
};
use std::time::{Duration, Instant};

/// Bound for one agent step.
const STEP: Duration = Duration::from_secs(30);
/// A killed or cut-off node stays dead but in placement for the whole test (it must not
/// become "departed", which would lower the effective R and re-place its blobs).
const GRACE: [&str; 2] = ["--dead-grace-secs", "600"];

fn distinct_blobs(files: &[Written]) -> u64 {
    blob_ids(files).len() as u64
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

#[test]
fn a_data_node_dying_mid_store_does_not_fail_the_close() {
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
    c.wait_until("all three nodes alive", DETECT, |st| {
        all_alive(st, &c.addrs())
    });
    let m = mount_on(&c, "w");
    let src = c.dir().join("src.bin");
    let data = pseudo_random(192 << 20, 7);
    std::fs::write(&src, &data).expect("write the source file");
    let want = dfs_tests::sha256(&data);
    drop(data);

    // Store it; the moment node 2 is receiving its copy, kill node 2.
    let script = format!(
        "dd if={} of={} bs=1M conv=fsync status=none",
        src.display(),
        m.join("big").display()
    );
    let dir = c.dir().to_path_buf();
    let writer = std::thread::spawn(move || dfs_tests::sh_timeout(&dir, &script, STEP * 4));
    let tmp = c.data_dir(2).join("blobs").join("tmp");
    let receiving = dfs_tests::poll(Duration::from_secs(60), Duration::from_millis(5), || {
        std::fs::read_dir(&tmp).ok()?.next().map(|_| ())
    });
    assert!(
        receiving.is_some(),
        "node 2 never started receiving the blob"
    );
    c.kill9(2);
    let out = writer.join().expect("writer thread");
    assert!(
        out.status.success(),
        "close failed although W=2 copies could still be made: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let files = vec![Written {
        name: "big".into(),
        len: 192 << 20,
        sha: want,
    }];
    read_back(&mount_on(&c, "r"), &files, "with node 2 killed mid-store");
    c.restart(2);
    let t = wait_converged(&c, &files, "after node 2 restarted");
    eprintln!(
        "MEASURED: node 2, killed while receiving 192 MiB, caught up {t:?} after its restart"
    );
}

#[test]
fn a_directory_restarted_alone_refuses_stores() {
    // W comes from the configured R, not from the members a node happens to see: a
    // directory that restarts while its data nodes are down must not acknowledge a store
    // with one copy.
    let mut c = Cluster::start(3, &["--replicas", "3", GRACE[0], GRACE[1]]);
    c.wait_until("all three nodes alive", DETECT, |st| {
        all_alive(st, &c.addrs())
    });
    let m = mount_on(&c, "w");
    let before = write_files(m.path(), "d", 0..5, 3);
    c.kill9(1);
    c.kill9(2);
    c.restart(0);
    let st = c.status(0);
    assert_eq!(
        st.write_quorum,
        2,
        "W after the restart: {}",
        status_line(&st)
    );

    let data = pseudo_random(8 << 10, 78);
    let target = m.join("alone.bin");
    let mut a = Agent::spawn("writer", c.dir());
    a.ok(&format!("open w {}", target.display()), STEP);
    a.ok(&format!("write {}", hex(&data)), STEP);
    let closed = a.call("close", Duration::from_secs(90));
    a.kill();
    assert_eq!(
        closed,
        Err("EIO".to_string()),
        "a directory that sees no other node acknowledged a store with one copy"
    );

    // With one data node back, W=2 can be met again: stores succeed and all reads work.
    c.restart(1);
    let a1 = c.addr(1);
    c.wait_until("node 0 sees node 1 alive", DETECT, |st| {
        member_state(st, &a1) == Some(MemberState::Alive)
    });
    let after = write_files(m.path(), "d", 5..10, 3);
    let r = mount_on(&c, "r");
    read_back(&r, &before, "written before the outage");
    read_back(&r, &after, "written with two of three nodes");
}
