//! Gossip authentication: gossip without the cluster key is ignored. A server with a key
//! of its own, seeded with node 0 of a 3-node `Cluster` of real `dfs-server`s, has its
//! packets counted as rejected and is never listed as a member; garbage datagrams on a
//! gossip port are counted and change nothing.

use dfs_tests::{
    all_alive, free_port, known_addrs, status_line, urandom, write_key_file, Cluster, Server,
    DETECT,
};
use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

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
