//! Three replicas in one process (`testkit`): election, identical state machines, losing
//! the leader without losing an acknowledged command, a retried request applied once, a
//! wiped replica caught up by snapshot, and the log's durable state across a reopen.

use super::log_store::LogStore;
use super::testkit::{create, mkdir, paths, rename, same, Cluster};
use super::{RequestId, TypeConfig};
use dfs_common::{FsError, ROOT_INO};
use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, LogId, Vote};
use std::time::Instant;

fn rid(client: u64, serial: u64) -> RequestId {
    RequestId { client, serial }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_a_leader_and_apply_the_same_commands() {
    let c = Cluster::new(3).await;
    let leader = c.leader().await;
    assert!((1..=3).contains(&leader));
    let dir = c.propose(rid(1, 1), mkdir(ROOT_INO, "d", 10)).await;
    let dir = dir.outcome.unwrap().attr.unwrap().ino;
    for i in 0..20 {
        let r = c
            .propose(rid(1, 2 + i), create(dir, &format!("f{i}"), 11))
            .await;
        assert!(r.outcome.is_ok());
    }
    let r = c
        .propose(rid(1, 100), rename(dir, "f0", ROOT_INO, "moved", 12))
        .await;
    assert!(r.outcome.is_ok());
    // A command that fails is an outcome too, the same on every replica.
    let r = c.propose(rid(1, 101), create(dir, "f1", 13)).await;
    assert_eq!(r.outcome, Err(FsError::Exists));

    let tree = same(&c.settled_trees().await);
    let names = paths(&tree);
    assert!(names.contains("/moved") && !names.contains("/d/f0") && names.contains("/d/f19"));
    assert_eq!(tree.len(), 1 + 1 + 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_loses_no_acknowledged_command() {
    let mut c = Cluster::new(3).await;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let name = format!("before{i}");
        c.propose(rid(7, i), create(ROOT_INO, &name, 20))
            .await
            .outcome
            .unwrap();
        acknowledged.push(format!("/{name}"));
    }
    let old = c.leader().await;
    c.stop(old).await;
    let stopped = Instant::now();
    let mut first = None;
    for i in 0..20 {
        let name = format!("after{i}");
        c.propose(rid(7, 100 + i), create(ROOT_INO, &name, 21))
            .await
            .outcome
            .unwrap();
        first.get_or_insert_with(|| stopped.elapsed());
        acknowledged.push(format!("/{name}"));
    }
    let new = c.leader().await;
    assert_ne!(new, old);
    eprintln!(
        "leader {old} stopped: first command acknowledged by {new} after {:?}",
        first.unwrap()
    );

    let names = paths(&same(&c.settled_trees().await));
    for a in &acknowledged {
        assert!(names.contains(a), "{a} acknowledged and lost");
    }
    // The old leader comes back from its own disk and catches up.
    c.start(old).await;
    let names = paths(&same(&c.settled_trees().await));
    assert_eq!(names.len(), 1 + acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_applies_once_and_gets_the_first_answer() {
    let c = Cluster::new(3).await;
    let first = c.propose(rid(3, 1), create(ROOT_INO, "once", 30)).await;
    assert!(!first.repeated);
    // The client did not hear the answer and sends the same request again (to whichever
    // leader there is): the state machine answers it from its record.
    let again = c.propose(rid(3, 1), create(ROOT_INO, "once", 31)).await;
    assert!(again.repeated);
    assert_eq!(again.outcome, first.outcome);
    // Another request for the same exclusive create is a new command, and fails.
    let other = c.propose(rid(3, 2), create(ROOT_INO, "once", 32)).await;
    assert_eq!(other.outcome, Err(FsError::Exists));

    let tree = same(&c.settled_trees().await);
    assert_eq!(tree.len(), 2);
    assert_eq!(
        tree[&b"/once".to_vec()],
        first.outcome.unwrap().attr.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_catches_up_by_snapshot() {
    let mut c = Cluster::new(3).await;
    for i in 0..10 {
        c.propose(rid(5, i), mkdir(ROOT_INO, &format!("old{i}"), 40))
            .await
            .outcome
            .unwrap();
    }
    let leader = c.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.wipe(follower).await;
    for i in 0..10 {
        c.propose(rid(5, 100 + i), mkdir(ROOT_INO, &format!("new{i}"), 41))
            .await
            .outcome
            .unwrap();
    }
    // The leader snapshots and forgets the log before it: the wiped replica can only
    // catch up from the snapshot.
    let raft = &c.nodes[&leader].raft;
    let upto = c.last_applied().await;
    raft.trigger().snapshot().await.unwrap();
    raft.wait(Some(super::testkit::DEADLINE))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= upto),
            "snapshot built",
        )
        .await
        .unwrap();
    raft.trigger().purge_log(upto).await.unwrap();
    raft.wait(Some(super::testkit::DEADLINE))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= upto), "log purged")
        .await
        .unwrap();

    c.start(follower).await;
    let names = paths(&same(&c.settled_trees().await));
    assert_eq!(names.len(), 21);
    let m = c.nodes[&follower].raft.metrics().borrow().clone();
    assert!(
        m.snapshot.is_some_and(|s| s.index >= upto),
        "caught up without the snapshot: {m:?}"
    );
    // And it goes on from there like the others.
    c.propose(rid(5, 200), mkdir(ROOT_INO, "later", 42))
        .await
        .outcome
        .unwrap();
    assert_eq!(paths(&same(&c.settled_trees().await)).len(), 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vote_and_committed_position_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft-log.redb");
    let vote = Vote::<u64>::new_committed(3, 2);
    let committed = LogId::new(CommittedLeaderId::new(3, 2), 9);
    {
        let mut log = LogStore::open(&path).unwrap();
        // The committed position is written without an fsync; the durable vote after it
        // carries it to disk.
        RaftLogStorage::<TypeConfig>::save_committed(&mut log, Some(committed))
            .await
            .unwrap();
        RaftLogStorage::<TypeConfig>::save_vote(&mut log, &vote)
            .await
            .unwrap();
    }
    let mut log = LogStore::open(&path).unwrap();
    assert_eq!(
        RaftLogStorage::<TypeConfig>::read_vote(&mut log)
            .await
            .unwrap(),
        Some(vote)
    );
    assert_eq!(
        RaftLogStorage::<TypeConfig>::read_committed(&mut log)
            .await
            .unwrap(),
        Some(committed)
    );
}

/// The cost of one replicated commit in process (three replicas, each log append one
/// fdatasync): `cargo test --release -p dfs-server --lib raft::tests::measure -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_replicated_commits() {
    let c = Cluster::new(3).await;
    c.propose(rid(9, 0), mkdir(ROOT_INO, "warm", 50))
        .await
        .outcome
        .unwrap();
    let n = 500;
    let start = Instant::now();
    for i in 1..=n {
        c.propose(rid(9, i), create(ROOT_INO, &format!("f{i}"), 51))
            .await
            .outcome
            .unwrap();
    }
    let each = start.elapsed() / n as u32;
    eprintln!("{n} sequential replicated creates: {each:?} each");
}
