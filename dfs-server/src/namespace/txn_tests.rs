//! Unit tests of transactions in the namespace: a batch applies all or nothing, whatever
//! operation or precondition fails; preconditions see the state before the batch; staged
//! blobs are held until the transaction ends; a transaction commits at most once.

use super::txn::{TxApplied, TxBatch, TxCommand, TxOwner};
use super::*;
use dfs_common::tx::{AbortReason, Actual, Expected, TxFailure, TxId, TxOp, TxStatus};

const C: u64 = 7;
/// The transactions' owner: client `C`, acting for uid 0 (an open cell's caller).
const OWNER: TxOwner = TxOwner { client: C, uid: 0 };

fn other_client() -> TxOwner {
    TxOwner {
        client: C + 1,
        uid: 0,
    }
}

fn ts(secs: i64) -> Timestamp {
    Timestamp { secs, nanos: 0 }
}

struct T {
    _dir: tempfile::TempDir,
    ns: Namespace,
}

fn fresh() -> T {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::open(&dir.path().join("meta.redb"), 0o1777, ts(1)).unwrap();
    T { _dir: dir, ns }
}

fn p(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

impl T {
    fn begin(&self) -> TxId {
        match self
            .ns
            .apply_tx(TxCommand::Begin {
                owner: OWNER,
                label: "test".into(),
                expires_ms: u64::MAX,
            })
            .unwrap()
        {
            TxApplied::Begun(tx) => tx,
            other => panic!("{other:?}"),
        }
    }

    fn stage(&self, tx: TxId, byte: u8, size: u64) -> BlobId {
        let blob = BlobId([byte; 32]);
        self.ns
            .apply_tx(TxCommand::Stage {
                tx,
                owner: OWNER,
                blob,
                size,
                expires_ms: 0,
            })
            .unwrap();
        blob
    }

    fn commit(&self, tx: TxId, ops: Vec<TxOp>, locked: Vec<Ino>) -> Result<TxApplied, FsError> {
        self.ns.apply_tx(TxCommand::Commit(TxBatch {
            tx,
            client: C,
            caller: crate::auth::Caller::open(C),
            ops,
            uid: 5,
            gid: 6,
            locked,
            now: ts(100),
        }))
    }

    fn get(&self, path: &str) -> Option<Attr> {
        let mut attr = self.ns.getattr(ROOT_INO).unwrap();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            attr = self.ns.lookup(attr.ino, c.as_bytes()).ok()?;
        }
        Some(attr)
    }

    /// Everything in the namespace: (path, kind, mode, version, blob), sorted.
    fn dump(&self) -> Vec<(String, FileKind, u32, u64, Option<BlobId>)> {
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), ROOT_INO)];
        while let Some((prefix, dir)) = stack.pop() {
            let (entries, _) = self.ns.readdir(dir, None, 0).unwrap();
            for (name, a) in entries {
                let path = format!("{prefix}/{}", String::from_utf8_lossy(&name));
                if a.kind == FileKind::Dir {
                    stack.push((path.clone(), a.ino));
                }
                out.push((path, a.kind, a.mode, a.version, a.blob));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A file `path` (in the root) with contents `blob`, made outside any transaction.
    fn file(&self, name: &str, blob: Option<BlobId>) -> Attr {
        let a = self
            .ns
            .apply(NsCommand::Create {
                parent: ROOT_INO,
                name: p(name),
                mode: 0o644,
                umask: 0,
                uid: 0,
                gid: 0,
                exclusive: true,
                now: ts(10),
            })
            .unwrap()
            .attr
            .unwrap();
        if blob.is_none() {
            return a;
        }
        self.ns
            .apply(NsCommand::CommitBlob {
                ino: a.ino,
                contents: Contents {
                    blob,
                    size: 10,
                    base_version: None,
                },
                mtime: None,
                mode: None,
                kill_suid: false,
                now: ts(11),
            })
            .unwrap()
            .attr
            .unwrap()
    }

    fn status(&self, tx: TxId) -> TxStatus {
        self.ns.tx_status(tx, OWNER, 0).unwrap()
    }
}

#[test]
fn a_batch_commits_every_operation_at_once() {
    let t = fresh();
    let tx = t.begin();
    let b1 = t.stage(tx, 1, 100);
    let ops = vec![
        TxOp::Mkdir {
            path: p("/a"),
            mode: 0o750,
        },
        TxOp::Put {
            path: p("/a/f"),
            blob: Some(b1),
            mode: Some(0o600),
        },
        TxOp::Create {
            path: p("a/g"),
            mode: 0o644,
        },
        TxOp::Mkdir {
            path: p("/a/d"),
            mode: 0o755,
        },
        TxOp::Put {
            path: p("/a/d/inner"),
            blob: Some(b1),
            mode: None,
        },
        TxOp::Rename {
            from: p("/a/d"),
            to: p("/a/e"),
        },
        TxOp::SetMode {
            path: p("/a/g"),
            mode: 0o640,
        },
        TxOp::Put {
            path: p("/empty"),
            blob: None,
            mode: None,
        },
        TxOp::ExpectAbsent { path: p("/a") },
    ];
    let TxApplied::Committed { committed, outcome } = t.commit(tx, ops, vec![]).unwrap() else {
        panic!("not committed");
    };
    assert_eq!(committed.results.len(), 9);
    assert_eq!(committed.results[0].as_ref().unwrap().kind, FileKind::Dir);
    let f = committed.results[1].as_ref().unwrap();
    assert_eq!((f.size, f.blob, f.mode, f.uid), (100, Some(b1), 0o600, 5));
    assert!(committed.results[5].is_none());
    assert_eq!(committed.results[6].as_ref().unwrap().mode, 0o640);
    assert_eq!(t.get("/a/f").unwrap().blob, Some(b1));
    assert_eq!(t.get("/a/e/inner").unwrap().size, 100);
    assert!(t.get("/a/d").is_none());
    assert_eq!(t.get("/empty").unwrap().size, 0);
    // Two files hold the blob; the transaction's own hold is gone.
    assert_eq!(t.ns.refcount(&b1).unwrap(), Some(2));
    // Changes are reported once each.
    let mut inos = outcome.changed_inos.clone();
    inos.dedup();
    assert_eq!(inos, outcome.changed_inos);
    assert!(outcome.changed_inos.contains(&ROOT_INO));
    assert!(outcome
        .changed_entries
        .contains(&(t.get("/a").unwrap().ino, p("e"))));
    assert!(matches!(t.status(tx), TxStatus::Committed(c) if c == committed));
}

#[test]
fn a_failing_last_operation_changes_nothing() {
    let t = fresh();
    let x = t.file("x", Some(BlobId([9; 32])));
    let before = t.dump();
    let tx = t.begin();
    let b1 = t.stage(tx, 1, 5);
    let ops = vec![
        TxOp::Put {
            path: p("/x"),
            blob: Some(b1),
            mode: None,
        },
        TxOp::Mkdir {
            path: p("/n"),
            mode: 0o755,
        },
        TxOp::Remove { path: p("/x") },
        TxOp::Rename {
            from: p("/missing"),
            to: p("/y"),
        },
    ];
    match t.commit(tx, ops, vec![x.ino]).unwrap() {
        TxApplied::Failed(TxFailure::Op { op, what, error }) => {
            assert_eq!((op, error), (3, FsError::NotFound));
            assert_eq!(what, "mv /missing /y");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.dump(), before);
    // The transaction is over and the staged blob is garbage.
    assert!(matches!(
        t.status(tx),
        TxStatus::Aborted(AbortReason::Failed(_))
    ));
    assert_eq!(t.ns.refcount(&b1).unwrap(), Some(0));
    assert!(t.ns.garbage_due(u64::MAX).unwrap().contains(&b1));
    assert_eq!(t.ns.refcount(&BlobId([9; 32])).unwrap(), Some(1));
}

#[test]
fn a_failing_last_precondition_changes_nothing() {
    let t = fresh();
    let x = t.file("x", Some(BlobId([9; 32])));
    let before = t.dump();
    let tx = t.begin();
    let b1 = t.stage(tx, 1, 5);
    let ops = vec![
        TxOp::Mkdir {
            path: p("/n"),
            mode: 0o755,
        },
        TxOp::Put {
            path: p("/x"),
            blob: Some(b1),
            mode: None,
        },
        TxOp::ExpectAbsent {
            path: p("/nothing"),
        },
        TxOp::ExpectVersion {
            path: p("/x"),
            version: 99,
        },
    ];
    match t.commit(tx, ops, vec![x.ino]).unwrap() {
        TxApplied::Failed(f) => {
            assert_eq!(
                f,
                TxFailure::Precondition {
                    op: 3,
                    path: p("/x"),
                    expected: Expected::Version(99),
                    actual: Actual::Version(x.version),
                }
            );
            assert_eq!(
                f.to_string(),
                format!(
                    "expect-version /x: expected version 99, actual version {}",
                    x.version
                )
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.dump(), before);

    // expect-absent of something that exists, and expect-version of something that does not.
    for (op, actual) in [
        (
            TxOp::ExpectAbsent { path: p("/x") },
            Actual::Version(x.version),
        ),
        (
            TxOp::ExpectVersion {
                path: p("/no/such"),
                version: 1,
            },
            Actual::Absent,
        ),
    ] {
        let tx = t.begin();
        match t.commit(tx, vec![op], vec![]).unwrap() {
            TxApplied::Failed(TxFailure::Precondition { actual: a, .. }) => assert_eq!(a, actual),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(t.dump(), before);
}

#[test]
fn preconditions_see_the_state_before_the_batch() {
    let t = fresh();
    let x = t.file("x", None);
    let tx = t.begin();
    let b = t.stage(tx, 3, 3);
    let ops = vec![
        TxOp::Put {
            path: p("/x"),
            blob: Some(b),
            mode: None,
        },
        TxOp::Put {
            path: p("/new"),
            blob: Some(b),
            mode: None,
        },
        // Both refer to the state before the two puts.
        TxOp::ExpectVersion {
            path: p("/x"),
            version: x.version,
        },
        TxOp::ExpectAbsent { path: p("/new") },
    ];
    let r = t.commit(tx, ops, vec![x.ino]).unwrap();
    assert!(matches!(r, TxApplied::Committed { .. }), "{r:?}");
    assert_eq!(t.get("/x").unwrap().version, x.version + 1);
}

#[test]
fn replacing_a_file_needs_its_writers_lock() {
    let t = fresh();
    let x = t.file("x", None);
    let y = t.file("y", None);
    let before = t.dump();
    let tx = t.begin();
    let b = t.stage(tx, 3, 3);
    let put_y = TxOp::Put {
        path: p("/y"),
        blob: Some(b),
        mode: None,
    };
    // Not locked: nothing changes, the transaction stays open.
    let r = t.commit(tx, vec![put_y.clone()], vec![]).unwrap();
    assert_eq!(r, TxApplied::NeedLocks(vec![(y.ino, 0)]));
    assert_eq!(t.dump(), before);
    assert!(matches!(t.status(tx), TxStatus::Open { staged: 1, .. }));

    // The batch's own rename changes which file /y is: the prediction (old /y) is not
    // enough, the commit names the file it really replaces.
    let ops = vec![
        TxOp::Rename {
            from: p("/x"),
            to: p("/y"),
        },
        put_y,
    ];
    assert_eq!(t.ns.tx_lock_targets(&ops).unwrap(), vec![(y.ino, 1)]);
    let r = t.commit(tx, ops.clone(), vec![y.ino]).unwrap();
    assert_eq!(r, TxApplied::NeedLocks(vec![(x.ino, 1)]));
    assert_eq!(t.dump(), before);
    let r = t.commit(tx, ops, vec![x.ino, y.ino]).unwrap();
    assert!(matches!(r, TxApplied::Committed { .. }), "{r:?}");
    assert_eq!(t.get("/y").unwrap().ino, x.ino);
    assert_eq!(t.get("/y").unwrap().blob, Some(b));
}

#[test]
fn a_transaction_commits_at_most_once_and_only_for_its_client() {
    let t = fresh();
    let tx = t.begin();
    let ops = vec![TxOp::Mkdir {
        path: p("/d"),
        mode: 0o755,
    }];
    // Another client: the transaction does not exist for it.
    let other = TxCommand::Commit(TxBatch {
        tx,
        client: C + 1,
        caller: crate::auth::Caller::open(C + 1),
        ops: ops.clone(),
        uid: 0,
        gid: 0,
        locked: vec![],
        now: ts(1),
    });
    assert_eq!(t.ns.apply_tx(other), Err(FsError::NotFound));
    assert_eq!(
        t.ns.tx_status(tx, other_client(), 0),
        Err(FsError::NotFound)
    );
    assert!(matches!(
        t.commit(tx, ops.clone(), vec![]).unwrap(),
        TxApplied::Committed { .. }
    ));
    assert!(matches!(
        t.commit(tx, ops, vec![]),
        Err(FsError::Stale(m)) if m.contains("already committed")
    ));
    assert!(matches!(
        t.ns.apply_tx(TxCommand::Stage {
            tx,
            owner: OWNER,
            blob: BlobId([1; 32]),
            size: 1,
            expires_ms: 0
        }),
        Err(FsError::Stale(_))
    ));
    assert_eq!(t.ns.tx_status(999, OWNER, 0), Err(FsError::NotFound));
    // Each of those durable transactions, refused or committed, is over: a create may
    // commit on an async thread again (`Coherence::mutate_in_place`).
    assert!(!t.ns.durable_commit_in_flight());
}

#[test]
fn abort_and_expiry_release_staged_blobs() {
    let t = fresh();
    let tx = t.begin();
    let b = t.stage(tx, 4, 10);
    t.stage(tx, 4, 10); // staged twice: held once
    assert_eq!(t.ns.refcount(&b).unwrap(), Some(1));
    assert!(!t.ns.garbage_due(u64::MAX).unwrap().contains(&b));
    let r =
        t.ns.apply_tx(TxCommand::Abort {
            tx,
            by: Some(OWNER),
            reason: AbortReason::Client,
            now: ts(50),
        })
        .unwrap();
    assert_eq!(r, TxApplied::Ended(TxStatus::Aborted(AbortReason::Client)));
    assert_eq!(t.ns.refcount(&b).unwrap(), Some(0));
    assert!(t.ns.garbage_due(50).unwrap().contains(&b));

    // Expiry: only open transactions whose lease ended.
    let live = t.begin();
    let dying = match t
        .ns
        .apply_tx(TxCommand::Begin {
            owner: OWNER,
            label: String::new(),
            expires_ms: 1_500,
        })
        .unwrap()
    {
        TxApplied::Begun(tx) => tx,
        other => panic!("{other:?}"),
    };
    let b2 = t.stage(dying, 5, 10);
    assert_eq!(t.ns.tx_due(2_000).unwrap(), vec![dying]);
    let r =
        t.ns.apply_tx(TxCommand::Expire {
            txs: vec![live, dying, tx],
            now: ts(2),
        })
        .unwrap();
    assert_eq!(r, TxApplied::Expired(vec![dying]));
    assert_eq!(t.status(dying), TxStatus::Aborted(AbortReason::Expired));
    assert_eq!(t.ns.refcount(&b2).unwrap(), Some(0));
    assert!(matches!(t.status(live), TxStatus::Open { .. }));

    // Outcomes are forgotten after a while.
    t.ns.apply_tx(TxCommand::PruneDone { before_ms: 60_000 })
        .unwrap();
    assert_eq!(t.ns.tx_status(dying, OWNER, 0), Err(FsError::NotFound));
}

#[test]
fn bad_paths_and_unstaged_blobs_fail_the_batch() {
    let t = fresh();
    for op in [
        TxOp::Put {
            path: p("/a/../b"),
            blob: None,
            mode: None,
        },
        TxOp::Put {
            path: p("/"),
            blob: None,
            mode: None,
        },
        TxOp::Put {
            path: p("/f"),
            blob: Some(BlobId([8; 32])),
            mode: None,
        },
        TxOp::Mkdir {
            path: p("/no/such/dir"),
            mode: 0o755,
        },
        TxOp::SetMode {
            path: p("/nothing"),
            mode: 0o755,
        },
    ] {
        let tx = t.begin();
        let r = t.commit(tx, vec![op.clone()], vec![]).unwrap();
        assert!(
            matches!(r, TxApplied::Failed(TxFailure::Op { op: 0, .. })),
            "{op:?}: {r:?}"
        );
    }
    assert!(t.dump().is_empty());
}

/// A transaction is its beginner's: the same client acting for another principal finds no
/// such transaction, whatever it tries, and the owner's commit still works after.
#[test]
fn a_transaction_is_unknown_to_another_principal_of_its_client() {
    let t = fresh();
    let tx = t.begin();
    let blob = t.stage(tx, 3, 5);
    let mallory = TxOwner {
        client: C,
        uid: 1234,
    };
    let mut caller = crate::auth::Caller::open(C);
    caller.uid = mallory.uid;
    let ops = vec![TxOp::Put {
        path: p("/stolen"),
        blob: Some(blob),
        mode: None,
    }];
    let theft = TxCommand::Commit(TxBatch {
        tx,
        client: C,
        caller,
        ops: ops.clone(),
        uid: mallory.uid,
        gid: mallory.uid,
        locked: vec![],
        now: ts(1),
    });
    assert_eq!(t.ns.apply_tx(theft), Err(FsError::NotFound));
    let stage = TxCommand::Stage {
        tx,
        owner: mallory,
        blob: BlobId([4; 32]),
        size: 1,
        expires_ms: 0,
    };
    assert_eq!(t.ns.apply_tx(stage), Err(FsError::NotFound));
    let renew = TxCommand::Renew {
        tx,
        owner: mallory,
        expires_ms: 0,
    };
    assert_eq!(t.ns.apply_tx(renew), Err(FsError::NotFound));
    let abort = TxCommand::Abort {
        tx,
        by: Some(mallory),
        reason: AbortReason::Client,
        now: ts(2),
    };
    assert_eq!(t.ns.apply_tx(abort), Err(FsError::NotFound));
    assert_eq!(t.ns.tx_status(tx, mallory, 0), Err(FsError::NotFound));
    assert!(matches!(t.status(tx), TxStatus::Open { staged: 1, .. }));
    assert!(matches!(
        t.commit(tx, ops, vec![]).unwrap(),
        TxApplied::Committed { .. }
    ));
    assert_eq!(t.ns.tx_status(tx, mallory, 0), Err(FsError::NotFound));
}
