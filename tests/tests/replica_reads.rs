//! Clients read from the replicas: when the directory node holds no copy of a file's
//! contents (placement put them elsewhere), the mount reads them from the nodes that do,
//! with the directory's read token, and fails over to the next node when one is down,
//! without the directory node ever copying the blob to itself.

use dfs_common::cluster::MemberState;
use dfs_tests::{member_state, read, sha256, status_line, urandom, write, Cluster, Mount};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(60);

#[test]
fn a_mount_reads_from_the_replicas_and_fails_over() {
    // 4 data nodes, 2 copies each: about half of the blobs are not on node 0.
    let mut c = Cluster::start(
        4,
        &[
            "--replicas",
            "2",
            "--repair-interval-secs",
            "1",
            "--dead-grace-secs",
            "600",
        ],
    );
    let dir = c.dir().to_path_buf();
    let m = Mount::start(&c.addr(0), &dir.join("mnt-w"), &dir.join("cache-w"), &[]);
    let mut files = Vec::new();
    for k in 0..40 {
        let data = urandom(64 * 1024 + k * 997);
        let name = format!("f{k}");
        write(m.join(&name), &data).expect("write through the mount");
        files.push((name, sha256(&data)));
    }
    c.wait_until("two copies of every blob", SETTLE, |st| {
        st.referenced_blobs == 40 && st.under_replicated == 0 && st.missing == 0
    });
    let elsewhere: Vec<&(String, String)> =
        files.iter().filter(|(_, sha)| !c.blob_ok(0, sha)).collect();
    assert!(
        !elsewhere.is_empty() && elsewhere.len() < files.len(),
        "placement should put some blobs off node 0 (off: {} of {})",
        elsewhere.len(),
        files.len()
    );
    for (_, sha) in &files {
        assert_eq!(
            c.holders(sha, &[0, 1, 2, 3]).len(),
            2,
            "blob {sha} on 2 nodes"
        );
    }

    let dir_addr = c.addr(0);
    let check_all = |tag: &str| {
        let r = Mount::start(
            &dir_addr,
            &dir.join(format!("mnt-{tag}")),
            &dir.join(format!("cache-{tag}")),
            &[],
        );
        for (name, sha) in &files {
            let got = read(r.join(name)).unwrap_or_else(|e| panic!("{tag}: read {name}: {e}"));
            assert_eq!(&sha256(&got), sha, "{tag}: contents of {name}");
        }
    };
    check_all("fresh");
    for (name, sha) in &elsewhere {
        assert!(
            !c.blob_ok(0, sha),
            "reading {name} copied its blob to the directory node: it was not read from a replica"
        );
    }

    // Take down the node holding the most of those blobs; each still has a second copy.
    let victim = (1..4)
        .max_by_key(|i| elsewhere.iter().filter(|(_, s)| c.blob_ok(*i, s)).count())
        .expect("a data node");
    let victim_addr = c.addr(victim);
    c.kill9(victim);
    c.wait_until("the killed node is seen dead", SETTLE, |st| {
        member_state(st, &victim_addr) == Some(MemberState::Dead)
    });
    check_all("after-kill");
    for (name, sha) in &elsewhere {
        assert!(
            !c.blob_ok(0, sha),
            "after losing node {victim}, reading {name} fell back to the directory copying it"
        );
    }
    eprintln!("final: {}", status_line(&c.status(0)));
}
