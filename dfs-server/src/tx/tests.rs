//! Unit tests of the transaction service over real services (namespace, blob store, lock
//! service, callback registry) without HTTP: staging, the writers' locks a commit takes,
//! serialization of overlapping batches, grouped breaks, and the sweep.

use super::*;
use crate::callbacks::channel;
use crate::testing::{open_services, TestOptions};
use bytes::Bytes;
use dfs_common::codec::take_frame;
use dfs_common::proto::CallbackFrame;
use dfs_common::tx::{CommitReply, TxOp, TxStatus};
use dfs_common::ROOT_INO;
use http_body_util::Full;

struct Fx {
    _dir: tempfile::TempDir,
    t: Transactions,
}

fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let svc = open_services(dir.path(), &TestOptions::default());
    Fx {
        _dir: dir,
        t: svc.transactions(),
    }
}

fn caller(client: u64) -> Caller {
    Caller::open(client)
}

impl Fx {
    async fn begin(&self, client: u64) -> TxId {
        begin(&self.t, caller(client), BeginRequest::default())
            .await
            .unwrap()
            .tx
    }

    async fn stage(&self, client: u64, tx: TxId, data: &'static [u8]) -> Option<BlobId> {
        let body = Full::new(Bytes::from_static(data));
        stage(&self.t, caller(client), tx, body, data.len() as u64, None)
            .await
            .unwrap()
            .blob
    }

    async fn commit(&self, client: u64, tx: TxId, ops: Vec<TxOp>, wait_ms: u32) -> CommitReply {
        let req = CommitRequest {
            ops,
            uid: 0,
            gid: 0,
            lock_wait_ms: wait_ms,
        };
        commit(&self.t, caller(client), tx, req).await.unwrap()
    }

    fn attr(&self, name: &str) -> dfs_common::Attr {
        self.t
            .coherence
            .ns
            .lookup(ROOT_INO, name.as_bytes())
            .unwrap()
    }
}

fn put(path: &str, blob: Option<BlobId>) -> TxOp {
    TxOp::Put {
        path: path.as_bytes().to_vec(),
        blob,
        mode: None,
    }
}

#[tokio::test]
async fn a_commit_waits_for_a_writer_then_fails_naming_it() {
    let f = fx();
    let tx = f.begin(5).await;
    let b = f.stage(5, tx, b"new contents").await;
    assert!(matches!(
        f.commit(5, tx, vec![put("/x", b)], 0).await,
        CommitReply::Committed(_)
    ));
    let x = f.attr("x");
    // Client 99 opens /x for writing: it holds the writers' lock.
    let writer = LockRequest {
        ino: x.ino,
        class: LockClass::Open,
        mode: LockMode::Exclusive,
        range: LockRange::WHOLE,
        owner: 0,
        pid: 1234,
        label: "someone@somewhere".into(),
        wait_ms: 0,
    };
    f.t.locks.acquire(99, writer).await.unwrap();
    let tx = f.begin(5).await;
    let b2 = f.stage(5, tx, b"other contents").await;
    let t = std::time::Instant::now();
    match f.commit(5, tx, vec![put("/x", b2)], 300).await {
        CommitReply::Failed(TxFailure::Locked { op, path, holder }) => {
            assert_eq!((op, path.as_slice(), holder.client), (0, &b"/x"[..], 99));
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(250), "it waited");
    assert_eq!(f.attr("x"), x, "nothing changed");
    assert!(matches!(
        status(&f.t, caller(5), tx).await.unwrap(),
        TxStatus::Aborted(AbortReason::Failed(_))
    ));
    // The batch's own locks are gone; the writer's stays.
    let locks = f.t.locks.list(Some(x.ino), None, 0).await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].client, 99);
}

#[tokio::test]
async fn overlapping_batches_serialize() {
    let f = fx();
    let tx = f.begin(5).await;
    f.commit(5, tx, vec![put("/x", None), put("/y", None)], 0)
        .await;
    for round in 0..10 {
        let (ta, tb) = (f.begin(5).await, f.begin(6).await);
        let a = f.stage(5, ta, b"AAAA").await;
        let b = f.stage(6, tb, b"BBBBBB").await;
        // Opposite orders: the locks are still taken in inode order.
        let ca = f.commit(5, ta, vec![put("/x", a), put("/y", a)], 5000);
        let cb = f.commit(6, tb, vec![put("/y", b), put("/x", b)], 5000);
        let (ra, rb) = tokio::join!(ca, cb);
        assert!(
            matches!(ra, CommitReply::Committed(_)),
            "round {round}: {ra:?}"
        );
        assert!(
            matches!(rb, CommitReply::Committed(_)),
            "round {round}: {rb:?}"
        );
        let (x, y) = (f.attr("x"), f.attr("y"));
        assert_eq!(x.blob, y.blob, "round {round}: a mix of both batches");
    }
}

#[tokio::test]
async fn other_clients_get_one_grouped_break() {
    let f = fx();
    let tx = f.begin(5).await;
    f.commit(5, tx, vec![put("/x", None), put("/y", None)], 0)
        .await;
    let (x, y) = (f.attr("x"), f.attr("y"));
    f.t.coherence
        .callbacks
        .promise(42, &[ROOT_INO, x.ino, y.ino]);
    let tx = f.begin(5).await;
    let b = f.stage(5, tx, b"z").await;
    let ops = vec![
        put("/x", b),
        put("/y", b),
        TxOp::Rename {
            from: b"/y".to_vec(),
            to: b"/z".to_vec(),
        },
    ];
    assert!(matches!(
        f.commit(5, tx, ops, 1000).await,
        CommitReply::Committed(_)
    ));
    let mut rx = channel::open(f.t.coherence.callbacks.clone(), 42);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(fr) = take_frame::<CallbackFrame>(&mut buf).unwrap() {
            frames.push(fr);
        }
    }
    assert!(matches!(frames[0], CallbackFrame::Hello { .. }));
    let CallbackFrame::Group(group) = &frames[1] else {
        panic!("expected one group, got {:?}", frames[1]);
    };
    let breaks: Vec<&CallbackFrame> = group
        .iter()
        .filter(|f| matches!(f, CallbackFrame::Break { .. }))
        .collect();
    // Each changed inode once.
    for ino in [ROOT_INO, x.ino, y.ino] {
        let n = breaks
            .iter()
            .filter(|f| ***f == CallbackFrame::Break { ino })
            .count();
        assert_eq!(n, 1, "break of {ino} in {group:?}");
    }
    for name in [&b"y"[..], b"z"] {
        assert!(group.contains(&CallbackFrame::EntryBreak {
            dir: ROOT_INO,
            name: name.to_vec()
        }));
    }
}

#[tokio::test]
async fn the_sweep_aborts_abandoned_transactions_and_releases_their_blobs() {
    let f = fx();
    f.t.state.set_lease(Duration::from_millis(200));
    let tx = f.begin(5).await;
    let b = f.stage(5, tx, b"staged but never committed").await.unwrap();
    assert_eq!(f.t.coherence.ns.refcount(&b).unwrap(), Some(1));
    assert!(f.t.coherence.blobs.path(&b).exists());
    assert_eq!(sweep(&f.t).await.unwrap(), 0, "not yet due");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A request in flight keeps it.
    {
        let _b = busy(&f.t, tx);
        assert_eq!(sweep(&f.t).await.unwrap(), 0);
    }
    assert_eq!(sweep(&f.t).await.unwrap(), 1);
    assert_eq!(
        status(&f.t, caller(5), tx).await.unwrap(),
        TxStatus::Aborted(AbortReason::Expired)
    );
    assert_eq!(f.t.coherence.ns.refcount(&b).unwrap(), Some(0));
    // The garbage collector deletes it once its grace is over.
    let n = crate::blobs::gc::collect(&f.t.coherence.blobs, &f.t.coherence.ns, 0, u64::MAX / 2)
        .unwrap();
    assert_eq!(n, 1);
    assert!(!f.t.coherence.blobs.path(&b).exists());
    // Staging into it now is refused, and the blob is not kept.
    let r = stage(
        &f.t,
        caller(5),
        tx,
        Full::new(Bytes::from_static(b"late")),
        4,
        None,
    )
    .await;
    assert!(matches!(r, Err(FsError::Stale(_))), "{r:?}");
}
