//! Transactions of users (#21 item 10): each operation checked as it would be alone, a
//! batch touching what the user may not change failing whole.

use super::*;
use dfs_common::tx::{CommitReply, CommitRequest, Committed, TxFailure, TxOp, TxStatus};
use dfs_common::{FsError, ROOT_INO};

pub fn commit(ops: Vec<TxOp>) -> CommitRequest {
    CommitRequest {
        ops,
        // A hostile client claims to be uid 0: the server makes new files the caller's.
        uid: 0,
        gid: 0,
        lock_wait_ms: 2000,
    }
}

pub fn committed(reply: CommitReply) -> Committed {
    match reply {
        CommitReply::Committed(c) => c,
        CommitReply::Failed(f) => panic!("transaction failed: {f}"),
    }
}

#[test]
fn a_users_transaction_runs_with_that_users_rights() {
    let Realm { s, alice, bob, .. } = &realm();
    let shared = alice.create(s, ROOT_INO, "shared", 0o666);
    let tx = bob.tx_begin(s);
    let blob = bob.tx_stage(s, tx, b"bob's contents").blob;
    let ops = vec![
        TxOp::Mkdir {
            path: b"/bob".to_vec(),
            mode: 0o755,
        },
        TxOp::Put {
            path: b"/bob/x".to_vec(),
            blob,
            mode: Some(0o644),
        },
        TxOp::Create {
            path: b"/bob/y".to_vec(),
            mode: 0o640,
        },
        TxOp::SetMode {
            path: b"/bob/y".to_vec(),
            mode: 0o600,
        },
        TxOp::Rename {
            from: b"/bob/y".to_vec(),
            to: b"/bob/z".to_vec(),
        },
        TxOp::Put {
            path: b"/shared".to_vec(),
            blob,
            mode: None,
        },
        TxOp::ExpectAbsent {
            path: b"/bob".to_vec(),
        },
    ];
    let done = committed(bob.tx_commit(s, tx, &commit(ops)));
    let dir = done.results[0].clone().unwrap();
    assert_eq!(
        (dir.uid, dir.gid),
        (BOB, BOB),
        "made bob's, whatever he claims"
    );
    let x = bob.lookup(s, dir.ino, "x");
    assert_eq!((x.uid, x.mode), (BOB, 0o644));
    assert_eq!(bob.fetch(s, x.ino).body, b"bob's contents");
    assert_eq!(bob.lookup(s, dir.ino, "z").mode, 0o600);
    let after = alice.getattr(s, shared.ino);
    assert_eq!(
        (after.uid, after.size),
        (ALICE, 14),
        "stored into, still alice's"
    );
    assert!(matches!(bob.tx_status(s, tx), TxStatus::Committed(_)));
}

#[test]
fn a_transaction_touching_what_the_user_may_not_change_fails_whole() {
    let Realm { s, alice, bob, .. } = &realm();
    let hers = alice.create(s, ROOT_INO, "hers", 0o644);
    store_ok(alice, s, hers.ino, b"alice's");
    let home = alice.mkdir(s, ROOT_INO, "alice", 0o700);
    alice.create(s, home.ino, "secret", 0o666);
    let mine = bob.mkdir(s, ROOT_INO, "bob", 0o755);

    let path = |p: &str| p.as_bytes().to_vec();
    let put = |p: &str| TxOp::Put {
        path: path(p),
        blob: None,
        mode: None,
    };
    let bad = vec![
        put("/hers"),
        TxOp::SetMode {
            path: path("/hers"),
            mode: 0o666,
        },
        TxOp::Remove {
            path: path("/hers"),
        },
        TxOp::Rename {
            from: path("/hers"),
            to: path("/bob/stolen"),
        },
        put("/alice/secret"),
        TxOp::Create {
            path: path("/alice/planted"),
            mode: 0o644,
        },
        TxOp::Mkdir {
            path: path("/alice/sub"),
            mode: 0o755,
        },
        TxOp::ExpectVersion {
            path: path("/alice/secret"),
            version: 1,
        },
        TxOp::ExpectAbsent {
            path: path("/alice/secret"),
        },
    ];
    for (n, op) in bad.into_iter().enumerate() {
        let tx = bob.tx_begin(s);
        let staged = bob.tx_stage(s, tx, b"evil").blob;
        let op = match op {
            TxOp::Put { path, mode, .. } => TxOp::Put {
                path,
                blob: staged,
                mode,
            },
            other => other,
        };
        let fresh = format!("/bob/new-{n}");
        let ops = vec![
            TxOp::Mkdir {
                path: fresh.clone().into_bytes(),
                mode: 0o755,
            },
            op.clone(),
        ];
        let what = op.describe();
        let f = match bob.tx_commit(s, tx, &commit(ops)) {
            CommitReply::Failed(f) => f,
            CommitReply::Committed(_) => panic!("{what}: committed"),
        };
        assert_eq!(f.op(), 1, "{what}: {f}");
        match &f {
            TxFailure::Op {
                what: named, error, ..
            } => {
                assert_eq!(named, &what);
                assert!(
                    matches!(
                        error,
                        FsError::PermissionDenied(_) | FsError::NotPermitted(_)
                    ),
                    "{what}: {error}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        let gone = DirRequest::Lookup {
            parent: mine.ino,
            name: fresh.as_bytes()[5..].to_vec(),
        };
        assert_eq!(
            bob.refused(s, &gone),
            "ENOENT",
            "{what}: the batch left a trace"
        );
        assert!(matches!(bob.tx_status(s, tx), TxStatus::Aborted(_)));
    }
    let now = alice.getattr(s, hers.ino);
    assert_eq!((now.version, now.mode, now.nlink), (2, 0o644, 1));
    assert_eq!(alice.fetch(s, hers.ino).body, b"alice's");
    assert_eq!(alice.lookup(s, ROOT_INO, "hers").ino, hers.ino);
}

/// Another user who knows a transaction's client id and number (both guessable) can
/// neither read, stage into, abort nor commit it: a commit of alice's transaction with
/// bob's rights would put her staged contents into a file of his.
#[test]
fn a_transaction_is_its_beginners_alone() {
    let r = realm();
    let Realm { s, alice, .. } = &r;
    let tx = alice.tx_begin(s);
    let blob = alice.tx_stage(s, tx, b"alice's draft").blob;
    // Bob, speaking with alice's client id.
    let bob = As::realm(&r.key, 41, BOB, false);
    let steal = commit(vec![TxOp::Put {
        path: b"/stolen".to_vec(),
        blob,
        mode: Some(0o644),
    }]);
    let base = format!("/v1/tx/{tx}");
    let tries = [
        (
            "commit",
            bob.post(s, &format!("{base}/commit"), &codec::encode(&steal)),
        ),
        ("abort", bob.post(s, &format!("{base}/abort"), b"")),
        ("renew", bob.post(s, &format!("{base}/renew"), b"")),
    ];
    for (what, resp) in tries {
        assert_eq!(
            resp.status,
            404,
            "bob's {what}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    assert_eq!(bob.send(s, "GET", &base, &[], b"").status, 404);
    assert_eq!(bob.refused(s, &lookup_stolen()), "ENOENT");
    // Alice's transaction is untouched and hers to commit.
    assert!(matches!(
        alice.tx_status(s, tx),
        TxStatus::Open { staged: 1, .. }
    ));
    committed(alice.tx_commit(s, tx, &steal));
    assert_eq!(alice.lookup(s, ROOT_INO, "stolen").uid, ALICE);
}

fn lookup_stolen() -> DirRequest {
    DirRequest::Lookup {
        parent: ROOT_INO,
        name: b"stolen".to_vec(),
    }
}
