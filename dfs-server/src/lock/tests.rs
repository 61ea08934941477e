//! Unit tests of the lock service: the record rules (conflicts, POSIX replace / merge /
//! split, release of sub-ranges) and the service over a real redb file (waiting, leases,
//! fencing, renewal, sweep, durability, group commit). Touches nothing outside `lock`.

use super::record::{Decision, InoRecord, LAPSED_KEEP_MS};
use super::table::{Snapshot, BY_CLIENT, BY_EXPIRY, LOCKS};
use super::{now_ms, LockConfig, LockService};
use dfs_common::locks::{
    LockClass, LockMode, LockRange, LockReply, LockRequest, ReleaseRequest, RenewRequest, TestReply,
};
use dfs_common::FsError;
use redb::{ReadableDatabase, ReadableTableMetadata};
use std::time::{Duration, Instant};

fn req(ino: u64, mode: LockMode, start: u64, end: u64, owner: u64) -> LockRequest {
    LockRequest {
        ino,
        class: LockClass::Advisory,
        mode,
        range: LockRange { start, end },
        owner,
        pid: 42,
        label: format!("owner{owner}"),
        wait_ms: 0,
    }
}

fn whole(ino: u64, class: LockClass, mode: LockMode, owner: u64) -> LockRequest {
    LockRequest {
        class,
        ..req(ino, mode, 0, u64::MAX, owner)
    }
}

use LockMode::{Exclusive as X, Shared as S};

fn grant(rec: &mut InoRecord, r: &LockRequest, client: u64, next: &mut u64) -> Option<u64> {
    match rec.acquire(r, client, 1000, 5000, || {
        *next += 1;
        *next
    }) {
        Decision::Granted { token } => Some(token),
        Decision::Conflict { .. } => None,
    }
}

fn ranges(rec: &InoRecord) -> Vec<(LockMode, u64, u64)> {
    let mut v: Vec<_> = rec
        .holders
        .iter()
        .map(|h| (h.mode, h.range.start, h.range.end))
        .collect();
    v.sort_by_key(|x| x.1);
    v
}

#[test]
fn readers_share_writers_exclude_and_classes_are_apart() {
    let mut rec = InoRecord::default();
    let mut t = 0;
    assert!(grant(&mut rec, &req(1, S, 0, 99, 1), 10, &mut t).is_some());
    assert!(grant(&mut rec, &req(1, S, 50, 150, 1), 20, &mut t).is_some());
    assert!(grant(&mut rec, &req(1, X, 90, 95, 1), 30, &mut t).is_none());
    // Non-overlapping exclusive ranges coexist.
    assert!(grant(&mut rec, &req(1, X, 200, 299, 1), 30, &mut t).is_some());
    assert!(grant(&mut rec, &req(1, X, 300, 399, 2), 30, &mut t).is_some());
    assert!(grant(&mut rec, &req(1, X, 299, 300, 1), 40, &mut t).is_none());
    // The other class never conflicts.
    assert!(grant(&mut rec, &whole(1, LockClass::Open, X, 7), 40, &mut t).is_some());
    // Same client, other owner: a conflict like any other.
    assert!(grant(&mut rec, &req(1, X, 0, 0, 2), 10, &mut t).is_none());
}

#[test]
fn an_owner_upgrades_downgrades_merges_and_splits_its_own_locks() {
    let mut rec = InoRecord::default();
    let mut t = 0;
    let a = grant(&mut rec, &req(1, S, 0, 99, 1), 10, &mut t).unwrap();
    // Re-asking for what is held keeps the token.
    assert_eq!(grant(&mut rec, &req(1, S, 10, 20, 1), 10, &mut t), Some(a));
    // Upgrade of a sub-range splits the shared lock around it.
    let b = grant(&mut rec, &req(1, X, 40, 59, 1), 10, &mut t).unwrap();
    assert!(b > a);
    assert_eq!(ranges(&rec), vec![(S, 0, 39), (X, 40, 59), (S, 60, 99)]);
    // Downgrade back merges the three into one shared lock.
    grant(&mut rec, &req(1, S, 40, 59, 1), 10, &mut t).unwrap();
    assert_eq!(ranges(&rec), vec![(S, 0, 99)]);
    // An adjacent same-mode lock merges too.
    grant(&mut rec, &req(1, S, 100, 199, 1), 10, &mut t).unwrap();
    assert_eq!(ranges(&rec), vec![(S, 0, 199)]);
    // Releasing the middle splits; releasing what is not held removes nothing.
    let n = rec.release(
        LockClass::Advisory,
        10,
        1,
        Some(LockRange { start: 50, end: 59 }),
    );
    assert_eq!(n, 1);
    assert_eq!(ranges(&rec), vec![(S, 0, 49), (S, 60, 199)]);
    let n = rec.release(
        LockClass::Advisory,
        10,
        1,
        Some(LockRange { start: 50, end: 59 }),
    );
    assert_eq!(n, 0);
    assert_eq!(rec.release(LockClass::Advisory, 99, 1, None), 0);
    assert_eq!(rec.release(LockClass::Open, 10, 1, None), 0);
    assert_eq!(rec.release(LockClass::Advisory, 10, 1, None), 2);
    assert!(rec.is_empty());
}

#[test]
fn expired_holders_do_not_conflict_and_are_pruned_once_their_keep_is_over() {
    let mut rec = InoRecord::default();
    let mut t = 0;
    grant(&mut rec, &req(1, X, 0, 9, 1), 10, &mut t).unwrap();
    let r = req(1, X, 0, 9, 1);
    assert_eq!(rec.conflicts(&r, 20, 1000).count(), 1);
    assert_eq!(rec.conflicts(&r, 20, 6000).count(), 0);
    assert!(!rec.prune(6000), "a lapsed holder is kept for its client");
    assert!(!rec.prune(6000 + LAPSED_KEEP_MS - 1));
    assert!(rec.prune(6000 + LAPSED_KEEP_MS));
    assert!(rec.is_empty());
}

/// A lease that ran out is lost only to a competitor: its client takes it back (same
/// token) by renewing or asking again while nobody else wanted the file; the first
/// conflicting request takes its place, and then it is gone for good.
#[test]
fn a_lapsed_holder_is_lost_only_to_a_competitor() {
    let open = |client_owner| LockRequest {
        class: LockClass::Open,
        ..req(1, X, 0, u64::MAX, client_owner)
    };
    let mut rec = InoRecord::default();
    let mut t = 0;
    let first = grant(&mut rec, &open(0), 10, &mut t).unwrap();
    let lapsed = 7000; // the lease (5000 from 1000) ran out at 6000
    assert!(rec.writer(lapsed).is_none());
    assert!(rec.has_turn(10, first, lapsed), "nobody took it");
    // Asking again gives the same turn back.
    let again = rec.acquire(&open(0), 10, lapsed, 5000, || unreachable!());
    assert_eq!(again, Decision::Granted { token: first });
    assert!(rec.writer(lapsed).is_some_and(|w| w.token == first));
    // Renewing a lapsed turn takes it back too.
    assert_eq!(rec.renew(10, 20_000, 25_000), 1);
    assert!(rec.has_turn(10, first, 20_000) && rec.writer(20_000).is_some());
    // Once it lapses again, another client's request takes its place.
    let later = 30_000;
    let other = match rec.acquire(&open(0), 20, later, 5000, || 99) {
        Decision::Granted { token } => token,
        d => panic!("{d:?}"),
    };
    assert_eq!(other, 99);
    assert!(!rec.has_turn(10, first, later));
    assert_eq!(rec.renew(10, later, later + 5000), 0);
    assert_eq!(rec.holders.len(), 1);
}

fn config(lease_ms: u64) -> LockConfig {
    LockConfig {
        pool_size: 16,
        lease: Duration::from_millis(lease_ms),
        max_wait: Duration::from_secs(10),
    }
}

fn token(r: &LockReply) -> u64 {
    match r {
        LockReply::Granted { token, .. } => *token,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn rel(ino: u64, class: LockClass, owner: u64) -> ReleaseRequest {
    ReleaseRequest {
        ino,
        class,
        owner,
        range: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_gets_the_lock_when_the_holder_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = LockService::open(&tmp.path().join("locks.redb"), config(30_000)).unwrap();
    let t1 = token(
        &svc.acquire(1, whole(5, LockClass::Advisory, X, 1))
            .await
            .unwrap(),
    );
    // A try-once is refused and names the holder.
    match svc
        .acquire(2, whole(5, LockClass::Advisory, X, 1))
        .await
        .unwrap()
    {
        LockReply::Conflict { holder } => assert_eq!((holder.client, holder.token), (1, t1)),
        other => panic!("{other:?}"),
    }
    let waiter = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut r = whole(5, LockClass::Advisory, X, 1);
            r.wait_ms = 10_000;
            let start = Instant::now();
            let reply = svc.acquire(2, r).await.unwrap();
            (reply, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.release(1, rel(5, LockClass::Advisory, 1))
        .await
        .unwrap();
    let (reply, waited) = waiter.await.unwrap();
    assert!(token(&reply) > t1);
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    // Releasing again: nothing held, 404 and no change.
    assert_eq!(
        svc.release(1, rel(5, LockClass::Advisory, 1)).await,
        Err(FsError::NotFound)
    );
    assert_eq!(svc.list(Some(5), None, 0).await.unwrap().len(), 1);
    assert_eq!(
        svc.release(2, rel(777, LockClass::Advisory, 1)).await,
        Err(FsError::NotFound)
    );
    assert!(matches!(
        svc.acquire(0, whole(5, LockClass::Advisory, S, 1)).await,
        Err(FsError::BadRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_fencing_rejects_the_old_token_and_renew_reports_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = LockService::open(&tmp.path().join("locks.redb"), config(400)).unwrap();
    let open = |ino| whole(ino, LockClass::Open, X, 0);
    let t1 = token(&svc.acquire(1, open(9)).await.unwrap());
    svc.check_store(1, 9, Some(t1)).await.unwrap();
    assert!(matches!(
        svc.check_store(2, 9, None).await,
        Err(FsError::Busy(_))
    ));
    svc.check_store(1, 9, None).await.unwrap();
    // Client 1 keeps renewing for a while: the lock stays.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = svc
            .renew(
                1,
                RenewRequest {
                    held: vec![(9, LockClass::Open, 0)],
                },
            )
            .await
            .unwrap();
        assert_eq!((r.renewed, r.lost.len(), r.lease_ms), (1, 0, 400));
    }
    svc.check_store(1, 9, Some(t1)).await.unwrap();
    // Then it stops: a waiting client 2 gets the lock once the lease runs out.
    let mut r = open(9);
    r.wait_ms = 5000;
    let start = Instant::now();
    let t2 = token(&svc.acquire(2, r).await.unwrap());
    assert!(t2 > t1);
    assert!(start.elapsed() >= Duration::from_millis(200));
    match svc.check_store(1, 9, Some(t1)).await {
        Err(FsError::Stale(msg)) => assert!(msg.contains("client 0x2"), "{msg}"),
        other => panic!("{other:?}"),
    }
    svc.check_store(2, 9, Some(t2)).await.unwrap();
    let r = svc
        .renew(
            1,
            RenewRequest {
                held: vec![(9, LockClass::Open, 0)],
            },
        )
        .await
        .unwrap();
    assert_eq!((r.renewed, r.lost), (0, vec![(9, LockClass::Open, 0)]));
    // Client 2 stops renewing: with nobody else wanting the file, its lapsed turn still
    // lets it store, and a renewal takes it back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    svc.check_store(2, 9, Some(t2)).await.unwrap();
    let held = || RenewRequest {
        held: vec![(9, LockClass::Open, 0)],
    };
    let r = svc.renew(2, held()).await.unwrap();
    assert_eq!((r.renewed, r.lost.len()), (1, 0));
    // Lapsed again, it is lost to the next writer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t3 = token(&svc.acquire(3, open(9)).await.unwrap());
    match svc.check_store(2, 9, Some(t2)).await {
        Err(FsError::Stale(msg)) => assert!(msg.contains("client 0x3"), "{msg}"),
        other => panic!("{other:?}"),
    }
    svc.check_store(3, 9, Some(t3)).await.unwrap();
    let r = svc.renew(2, held()).await.unwrap();
    assert_eq!(r.lost, vec![(9, LockClass::Open, 0)]);
}

fn table_len(svc: &LockService) -> (u64, u64, u64) {
    let tx = svc.db.begin_read().unwrap();
    (
        tx.open_table(LOCKS).unwrap().len().unwrap(),
        tx.open_table(BY_CLIENT).unwrap().len().unwrap(),
        tx.open_table(BY_EXPIRY).unwrap().len().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_empties_the_table_and_its_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = LockService::open(&tmp.path().join("locks.redb"), config(200)).unwrap();
    let reqs: Vec<_> = (1..=1500)
        .map(|i| whole(i, LockClass::Advisory, S, 1))
        .collect();
    let replies = svc.acquire_many(3, reqs.clone()).await.unwrap();
    assert!(replies
        .iter()
        .all(|r| matches!(r, LockReply::Granted { .. })));
    svc.acquire_many(4, reqs[..10].to_vec()).await.unwrap();
    assert_eq!(table_len(&svc), (1500, 1510, 1500));
    assert_eq!(svc.list(None, None, 100).await.unwrap().len(), 100);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(svc.list(None, None, 100).await.unwrap().len(), 0);
    // Lapsed holders stay for their clients until their keep is over.
    assert_eq!(svc.sweep().await.unwrap(), 0);
    let after_keep = now_ms() + LAPSED_KEEP_MS;
    assert_eq!(svc.sweep_at(Some(after_keep)).await.unwrap(), 1500);
    assert_eq!(table_len(&svc), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_many_is_all_or_nothing_and_locks_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("locks.redb");
    let svc = LockService::open(&path, config(60_000)).unwrap();
    let held = token(
        &svc.acquire(1, whole(3, LockClass::Advisory, X, 1))
            .await
            .unwrap(),
    );
    let batch: Vec<_> = (1..=5)
        .map(|i| whole(i, LockClass::Advisory, X, 1))
        .collect();
    let replies = svc.acquire_many(2, batch.clone()).await.unwrap();
    assert_eq!(replies.len(), 5);
    for r in &replies {
        match r {
            LockReply::Conflict { holder } => assert_eq!((holder.ino, holder.client), (3, 1)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(svc.list(None, None, 0).await.unwrap().len(), 1);
    drop(svc);
    let svc = LockService::open(&path, config(60_000)).unwrap();
    let locks = svc.list(None, None, 0).await.unwrap();
    assert_eq!(locks.len(), 1);
    assert!(locks[0].expires_in_ms > 50_000);
    match svc
        .test(2, whole(3, LockClass::Advisory, S, 9))
        .await
        .unwrap()
    {
        TestReply::Conflict { holder } => {
            assert_eq!((holder.client, holder.token), (1, locks[0].token))
        }
        TestReply::Free => panic!("the lock did not survive the reopen"),
    }
    svc.release(1, rel(3, LockClass::Advisory, 1))
        .await
        .unwrap();
    let replies = svc.acquire_many(2, batch).await.unwrap();
    let tokens: Vec<u64> = replies.iter().map(token).collect();
    // Tokens handed out before the restart are never handed out again.
    assert!(tokens.iter().all(|t| *t > held), "{tokens:?} after {held}");
    assert_eq!(svc.list(None, None, 0).await.unwrap().len(), 5);
    let snap = Snapshot::new(&svc.db).unwrap();
    assert_eq!(snap.client_inos(2, None, 10).unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(snap.client_inos(2, Some(3), 10).unwrap(), vec![4, 5]);
    assert!(snap.expired((0, 0), now_ms(), 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_lock_unlock_pairs_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = LockService::open(&tmp.path().join("locks.redb"), config(60_000)).unwrap();
    let mut tasks = Vec::new();
    for client in 1..=8u64 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..125u64 {
                // Everyone hammers the same few inos, so waits and wakes happen too.
                let mut r = whole(i % 4, LockClass::Advisory, X, 1);
                r.wait_ms = 10_000;
                token(&svc.acquire(client, r).await.unwrap());
                svc.release(client, rel(i % 4, LockClass::Advisory, 1))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(table_len(&svc), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_turn_answered_before_its_commit_is_seen_by_every_read_that_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = LockService::open(&tmp.path().join("locks.redb"), config(30_000)).unwrap();
    // A writers' turn is answered once queued, not once committed: each read right after
    // the answer must still see it (it waits for the writer to catch up).
    for ino in 1000..1300u64 {
        let t = token(
            &svc.acquire(1, whole(ino, LockClass::Open, X, 1))
                .await
                .unwrap(),
        );
        svc.check_store(1, ino, Some(t))
            .await
            .unwrap_or_else(|e| panic!("inode {ino}: the store of the holder was refused: {e}"));
        match svc
            .test(2, whole(ino, LockClass::Open, X, 7))
            .await
            .unwrap()
        {
            TestReply::Conflict { holder } => assert_eq!((holder.client, holder.token), (1, t)),
            TestReply::Free => panic!("inode {ino}: the writers' turn was not seen"),
        }
        assert_eq!(svc.list(Some(ino), None, 0).await.unwrap().len(), 1);
    }
    // So is a release: the next holder's turn is granted at once.
    svc.release(1, rel(1000, LockClass::Open, 1)).await.unwrap();
    let t2 = token(
        &svc.acquire(2, whole(1000, LockClass::Open, X, 7))
            .await
            .unwrap(),
    );
    svc.check_store(2, 1000, Some(t2)).await.unwrap();
}
