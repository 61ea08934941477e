//! Tests of `membership`: real gossip between nodes on 127.0.0.1 (members see each other
//! alive, a stopped node is declared dead and comes back, packets without the cluster key
//! are refused) and the authenticated envelope. A child module of `membership`
//! (`#[path]`), so it reaches the private items it tests without widening their visibility.

use super::*;
use dfs_common::cluster::ROLE_DATA;
use tokio::time::{sleep, timeout};

const KEY: [u8; 32] = [7; 32];
const ROLES: u8 = ROLE_DIRECTORY | ROLE_DATA;

type Node = (Arc<Membership>, watch::Sender<bool>);

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let bind = |_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sockets: Vec<_> = (0..n).map(bind).collect();
    sockets
        .iter()
        .map(|s| s.local_addr().expect("addr"))
        .collect()
}

async fn start(addr: SocketAddr, seeds: &[SocketAddr], key: [u8; 32]) -> Node {
    let cfg = MembershipConfig::new(addr, ROLES, seeds.to_vec(), key);
    let (stop, stop_rx) = watch::channel(false);
    // A stopped node's socket is released when its task ends: retry briefly.
    let started = timeout(Duration::from_secs(5), async {
        loop {
            match Membership::start(cfg.clone(), stop_rx.clone()).await {
                Ok(membership) => return membership,
                Err(_) => sleep(Duration::from_millis(50)).await,
            }
        }
    });
    (started.await.expect("bind gossip socket"), stop)
}

fn state_of(node: &Node, addr: SocketAddr) -> Option<MemberState> {
    node.0
        .members()
        .iter()
        .find(|m| m.addr == addr)
        .map(|m| m.state)
}

fn all_alive(nodes: &[Node], count: usize) -> bool {
    nodes.iter().all(|(membership, _)| {
        let members = membership.members();
        members.len() == count && members.iter().all(|m| m.state == MemberState::Alive)
    })
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let poll = async {
        while !done() {
            sleep(Duration::from_millis(50)).await;
        }
    };
    let waited = timeout(Duration::from_secs(secs), poll).await;
    waited.unwrap_or_else(|_| panic!("timed out after {secs} s waiting for {what}"));
}

async fn cluster(addrs: &[SocketAddr]) -> Vec<Node> {
    let mut nodes = Vec::new();
    for addr in addrs {
        nodes.push(start(*addr, addrs, KEY).await);
    }
    wait_for("all members alive", 10, || all_alive(&nodes, addrs.len())).await;
    nodes
}

#[tokio::test]
async fn three_nodes_see_each_other_alive() {
    let mut addrs = free_addrs(3);
    let nodes = cluster(&addrs).await;
    addrs.sort();
    for (membership, _) in &nodes {
        let members = membership.members();
        assert_eq!(members.iter().map(|m| m.addr).collect::<Vec<_>>(), addrs);
        assert!(members.iter().all(|m| m.roles == ROLES));
        assert_eq!(membership.rejected_packets(), 0);
    }
}

#[tokio::test]
async fn stopped_node_is_dead_then_comes_back() {
    let addrs = free_addrs(3);
    let mut nodes = cluster(&addrs).await;
    let changes = nodes[0].0.changes();
    let stopped_at = Instant::now();
    nodes[2].1.send(true).expect("stop");
    wait_for("stopped node dead", 15, || {
        let dead = |node: &Node| state_of(node, addrs[2]) == Some(MemberState::Dead);
        nodes[..2].iter().all(dead)
    })
    .await;
    eprintln!("declared dead after {:?}", stopped_at.elapsed());
    assert!(changes.has_changed().unwrap_or(false));

    nodes[2] = start(addrs[2], &addrs, KEY).await;
    wait_for("restarted node alive", 10, || all_alive(&nodes, 3)).await;
}

#[tokio::test]
async fn packets_without_the_key_are_refused() {
    let addrs = free_addrs(3);
    let nodes = cluster(&addrs[..2]).await;
    let intruder = start(addrs[2], &addrs[..2], [9; 32]).await;
    sleep(Duration::from_secs(3)).await;
    for node in &nodes {
        assert_eq!(state_of(node, addrs[2]), None);
        assert_eq!(node.0.members().len(), 2);
        assert!(node.0.rejected_packets() > 0);
    }
    assert_eq!(intruder.0.members().len(), 1);
    intruder.1.send(true).expect("stop");
    sleep(Duration::from_millis(300)).await;

    let before = nodes[0].0.rejected_packets();
    let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    raw.send_to(b"garbage, not a gossip packet", addrs[0])
        .await
        .expect("send");
    wait_for("garbage counted", 5, || {
        nodes[0].0.rejected_packets() > before
    })
    .await;
}

#[test]
fn envelope_checks_key_shape_and_clock() {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &KEY);
    let other_key = hmac::Key::new(hmac::HMAC_SHA256, &[9; 32]);
    let now = unix_ms();
    let packet = seal(&key, b"payload", now);
    assert_eq!(open(&key, &packet, now + 1000), Ok(&b"payload"[..]));
    assert!(open(&other_key, &packet, now).is_err());
    assert!(open(&key, &packet, now + MAX_SKEW_MS + 1).is_err());
    assert!(open(&key, &packet[..packet.len() - 1], now).is_err());
    let mut tampered = packet.clone();
    tampered[PREFIX_LEN] ^= 1;
    assert!(open(&key, &tampered, now).is_err());
}
