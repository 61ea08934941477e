//! Unit tests of permission and set-id bits: the umask, set-gid directories and default
//! ACLs at create (also in transaction batches), an access ACL and the mode bits kept in
//! step both ways, set-id bits cleared by chown and by writes, and ctime on every change.

use super::testkit::*;
use super::txn::{TxApplied, TxBatch, TxCommand};
use super::*;
use dfs_common::acl::{Acl, Entry, Tag};
use dfs_common::proto::{XattrSet, XATTR_POSIX_ACL_ACCESS as ACCESS, XATTR_POSIX_ACL_DEFAULT};
use dfs_common::tx::TxOp;

const DEFAULT: &[u8] = XATTR_POSIX_ACL_DEFAULT;

fn acl(entries: &[(Tag, u32)]) -> Acl {
    Acl::new(
        entries
            .iter()
            .map(|&(tag, perm)| Entry { tag, perm })
            .collect(),
    )
    .unwrap()
}

/// user::rwx, user:1001:rwx, group::r-x, mask::rwx, other::r-x
fn named_default() -> Acl {
    acl(&[
        (Tag::UserObj, 7),
        (Tag::User(1001), 7),
        (Tag::GroupObj, 5),
        (Tag::Mask, 7),
        (Tag::Other, 5),
    ])
}

fn stored(t: &T, ino: Ino, name: &[u8]) -> Option<Acl> {
    t.xattr(ino, name)
        .map(|v| Acl::from_xattr(&v).unwrap().unwrap())
}

#[test]
fn the_umask_applies_to_creates_mkdirs_and_mknods_without_a_default_acl() {
    let t = fresh();
    let f = t.create_with(ROOT_INO, "f", 0o666, 0o022, (1, 2)).unwrap();
    let d = t.mkdir_with(ROOT_INO, "d", 0o777, 0o027, (1, 2)).unwrap();
    assert_eq!((f.mode, d.mode), (0o644, 0o750));
    let p =
        t.ns.apply(NsCommand::Mknod {
            parent: ROOT_INO,
            name: b"p".to_vec(),
            kind: FileKind::Fifo,
            mode: 0o4666,
            umask: 0o077,
            rdev: 0,
            uid: 1,
            gid: 2,
            now: ts(10),
        })
        .unwrap()
        .attr
        .unwrap();
    assert_eq!(p.mode, 0o4600, "the umask leaves set-id bits alone");
    assert!(t.ns.xattrs(f.ino).unwrap().is_empty());
}

#[test]
fn a_set_gid_directory_gives_its_group_and_its_subdirectories_the_bit() {
    let t = fresh();
    let d = t.mkdir_with(ROOT_INO, "d", 0o2775, 0, (1, 50)).unwrap();
    assert_eq!(d.mode, 0o2775);
    let f = t.create_with(d.ino, "f", 0o644, 0, (7, 8)).unwrap();
    assert_eq!((f.uid, f.gid, f.mode), (7, 50, 0o644));
    let sub = t.mkdir_with(d.ino, "sub", 0o755, 0, (7, 8)).unwrap();
    assert_eq!((sub.gid, sub.mode), (50, 0o2755));
    let l =
        t.ns.apply(NsCommand::Symlink {
            parent: d.ino,
            name: b"l".to_vec(),
            target: b"f".to_vec(),
            uid: 7,
            gid: 8,
            now: ts(10),
        })
        .unwrap()
        .attr
        .unwrap();
    assert_eq!((l.gid, l.mode), (50, 0o777));
    // Outside it, the creator's group and no bit.
    let plain = t.mkdir_with(ROOT_INO, "plain", 0o755, 0, (7, 8)).unwrap();
    assert_eq!((plain.gid, plain.mode), (8, 0o755));
}

#[test]
fn a_default_acl_replaces_the_umask_and_is_inherited() {
    let t = fresh();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    t.set_xattr(
        d.ino,
        DEFAULT,
        &named_default().to_xattr(),
        XattrSet::Either,
    )
    .unwrap();
    // A file: its access ACL is the default masked by the mode argument, umask ignored.
    let f = t.create_with(d.ino, "f", 0o644, 0o077, (1, 2)).unwrap();
    assert_eq!(f.mode, 0o644);
    let access = stored(&t, f.ino, ACCESS).expect("an access ACL");
    assert_eq!(access, named_default().create_masked(0o644).0);
    assert_eq!(stored(&t, f.ino, DEFAULT), None, "files get no default ACL");
    // A directory also inherits the default ACL itself.
    let sub = t.mkdir_with(d.ino, "sub", 0o777, 0o077, (1, 2)).unwrap();
    assert_eq!(sub.mode, 0o775);
    assert_eq!(stored(&t, sub.ino, DEFAULT), Some(named_default()));
    let grandchild = t.create_with(sub.ino, "g", 0o600, 0, (1, 2)).unwrap();
    assert_eq!(grandchild.mode, 0o600);
    assert!(stored(&t, grandchild.ino, ACCESS).is_some());
    // A default that says no more than mode bits gives bits and no access ACL.
    let e = t.mkdir(ROOT_INO, "e").unwrap();
    t.set_xattr(
        e.ino,
        DEFAULT,
        &Acl::from_mode(0o750).to_xattr(),
        XattrSet::Either,
    )
    .unwrap();
    let g = t.create_with(e.ino, "g", 0o666, 0o000, (1, 2)).unwrap();
    assert_eq!(g.mode, 0o640);
    assert!(t.ns.xattrs(g.ino).unwrap().is_empty());
}

#[test]
fn a_transaction_batch_creates_with_its_modes_and_the_directory_rules() {
    let t = fresh();
    let d = t.mkdir_with(ROOT_INO, "d", 0o2777, 0, (1, 60)).unwrap();
    t.set_xattr(
        d.ino,
        DEFAULT,
        &named_default().to_xattr(),
        XattrSet::Either,
    )
    .unwrap();
    let tx = match t
        .ns
        .apply_tx(TxCommand::Begin {
            owner: crate::namespace::txn::TxOwner { client: 9, uid: 0 },
            label: "t".into(),
            expires_ms: u64::MAX,
        })
        .unwrap()
    {
        TxApplied::Begun(tx) => tx,
        other => panic!("{other:?}"),
    };
    let batch = TxBatch {
        tx,
        client: 9,
        caller: crate::auth::Caller::open(9),
        ops: vec![
            TxOp::Mkdir {
                path: b"/d/sub".to_vec(),
                mode: 0o750,
            },
            TxOp::Create {
                path: b"/d/f".to_vec(),
                mode: 0o640,
            },
        ],
        uid: 3,
        gid: 4,
        locked: Vec::new(),
        now: ts(20),
    };
    let applied = t.ns.apply_tx(TxCommand::Commit(batch)).unwrap();
    assert!(
        matches!(applied, TxApplied::Committed { .. }),
        "{applied:?}"
    );
    let sub = t.lookup(d.ino, "sub").unwrap();
    assert_eq!((sub.gid, sub.mode), (60, 0o2750));
    assert_eq!(stored(&t, sub.ino, DEFAULT), Some(named_default()));
    let f = t.lookup(d.ino, "f").unwrap();
    assert_eq!((f.gid, f.mode), (60, 0o640));
    assert_eq!(
        stored(&t, f.ino, ACCESS),
        Some(named_default().create_masked(0o640).0)
    );
}

#[test]
fn setting_an_access_acl_sets_the_mode_bits_and_a_plain_one_is_not_stored() {
    let t = fresh();
    let f = t.create_with(ROOT_INO, "f", 0o4700, 0, (1, 2)).unwrap();
    let named = acl(&[
        (Tag::UserObj, 6),
        (Tag::User(1001), 7),
        (Tag::GroupObj, 4),
        (Tag::Mask, 5),
        (Tag::Other, 0),
    ]);
    let out = t
        .set_xattr(f.ino, ACCESS, &named.to_xattr(), XattrSet::Either)
        .unwrap();
    let a = out.attr.unwrap();
    assert_eq!(a.mode, 0o4650, "owner, mask, other; set-id bits kept");
    assert_eq!(a.ctime, ts(LATER));
    assert_eq!(out.changed_inos, vec![f.ino]);
    assert_eq!(stored(&t, f.ino, ACCESS), Some(named));
    // An ACL that says only mode bits sets them and leaves no ACL stored.
    let a = t
        .set_xattr(
            f.ino,
            ACCESS,
            &Acl::from_mode(0o751).to_xattr(),
            XattrSet::Either,
        )
        .unwrap()
        .attr
        .unwrap();
    assert_eq!(a.mode, 0o4751);
    assert_eq!(stored(&t, f.ino, ACCESS), None);
}

#[test]
fn a_chmod_rewrites_the_access_acl_in_the_same_command() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    let named = acl(&[
        (Tag::UserObj, 6),
        (Tag::User(1001), 7),
        (Tag::GroupObj, 4),
        (Tag::Mask, 7),
        (Tag::Other, 4),
    ]);
    t.set_xattr(f.ino, ACCESS, &named.to_xattr(), XattrSet::Either)
        .unwrap();
    let a = t.setattr(f.ino, |e| e.mode = Some(0o710)).unwrap();
    assert_eq!(a.mode, 0o710);
    let after = stored(&t, f.ino, ACCESS).unwrap();
    assert_eq!(after.permission_bits(), 0o710);
    assert!(after.entries().contains(&Entry {
        tag: Tag::User(1001),
        perm: 7
    }));
    assert!(after.entries().contains(&Entry {
        tag: Tag::GroupObj,
        perm: 4
    }));
    // A store's chmod does the same.
    let store = NsCommand::CommitBlob {
        ino: f.ino,
        contents: Contents {
            blob: None,
            size: 0,
            base_version: None,
        },
        mtime: None,
        mode: Some(0o600),
        kill_suid: false,
        now: ts(80),
    };
    t.ns.apply(store).unwrap();
    assert_eq!(stored(&t, f.ino, ACCESS).unwrap().permission_bits(), 0o600);
    // Removing the ACL leaves the mode as it is.
    t.remove_xattr(f.ino, ACCESS).unwrap();
    assert_eq!(t.attr(f.ino).mode, 0o600);
}

#[test]
fn a_change_of_owner_or_group_clears_set_id_bits_of_non_directories_only() {
    let t = fresh();
    let f = t.create_with(ROOT_INO, "f", 0o6755, 0, (1, 2)).unwrap();
    assert_eq!(t.setattr(f.ino, |e| e.uid = Some(5)).unwrap().mode, 0o755);
    // Without group execute, S_ISGID (mandatory locking) stays.
    let g = t.create_with(ROOT_INO, "g", 0o6745, 0, (1, 2)).unwrap();
    assert_eq!(t.setattr(g.ino, |e| e.gid = Some(9)).unwrap().mode, 0o2745);
    // An explicit mode in the same change is what the caller wants.
    let h = t.create_with(ROOT_INO, "h", 0o4755, 0, (1, 2)).unwrap();
    let a = t
        .setattr(h.ino, |e| {
            e.uid = Some(5);
            e.mode = Some(0o4711)
        })
        .unwrap();
    assert_eq!(a.mode, 0o4711);
    let d = t.mkdir_with(ROOT_INO, "d", 0o2775, 0, (1, 2)).unwrap();
    assert_eq!(t.setattr(d.ino, |e| e.gid = Some(9)).unwrap().mode, 0o2775);
}

#[test]
fn writes_clear_set_id_bits_when_asked() {
    let t = fresh();
    let f = t.create_with(ROOT_INO, "f", 0o6755, 0, (1, 2)).unwrap();
    let store = |kill_suid, now| NsCommand::CommitBlob {
        ino: f.ino,
        contents: Contents {
            blob: Some(BlobId([1; 32])),
            size: 1,
            base_version: None,
        },
        mtime: None,
        mode: None,
        kill_suid,
        now: ts(now),
    };
    let a = t.ns.apply(store(false, 20)).unwrap().attr.unwrap();
    assert_eq!(a.mode, 0o6755, "a writer with CAP_FSETID keeps them");
    let a = t.ns.apply(store(true, 21)).unwrap().attr.unwrap();
    assert_eq!(a.mode, 0o755);
    // A truncate with kill_suid (the size need not change).
    let g = t.create_with(ROOT_INO, "g", 0o4750, 0, (1, 2)).unwrap();
    let a = t.setattr(g.ino, |e| e.kill_suid = true).unwrap();
    assert_eq!((a.mode, a.ctime), (0o750, ts(LATER)));
    // Nothing to clear: nothing changes, ctime included.
    let h = t.create_with(ROOT_INO, "h", 0o750, 0, (1, 2)).unwrap();
    let a = t.setattr(h.ino, |e| e.kill_suid = true).unwrap();
    assert_eq!((a.mode, a.ctime), (0o750, ts(10)));
}

#[test]
fn ctime_changes_on_every_metadata_change_and_never_on_a_failed_one() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    assert_eq!(
        t.setattr(f.ino, |e| e.mode = Some(0o600)).unwrap().ctime,
        ts(LATER)
    );
    let g = t.create(ROOT_INO, "g", true).unwrap();
    assert_eq!(
        t.setattr(g.ino, |e| e.uid = Some(3)).unwrap().ctime,
        ts(LATER)
    );
    let h = t.create(ROOT_INO, "h", true).unwrap();
    t.link(h.ino, ROOT_INO, "h2").unwrap();
    assert_eq!(t.attr(h.ino).ctime, ts(40));
    t.rename(ROOT_INO, "h2", ROOT_INO, "h3", 0).unwrap();
    assert_eq!(t.attr(h.ino).ctime, ts(30));
    // Failures: a link onto an existing name, a rename onto a directory, a truncate of a
    // stale version, an xattr set refused: ctime as it was.
    let before = t.attr(h.ino);
    assert_eq!(t.link(h.ino, ROOT_INO, "f"), Err(FsError::Exists));
    t.mkdir(ROOT_INO, "dir").unwrap();
    assert_eq!(
        t.rename(ROOT_INO, "h", ROOT_INO, "dir", 0),
        Err(FsError::IsDir)
    );
    let stale = t.setattr(h.ino, |e| {
        e.mode = Some(0o777);
        e.contents = Some(Contents {
            blob: None,
            size: 0,
            base_version: Some(99),
        })
    });
    assert!(matches!(stale, Err(FsError::Busy(_))));
    assert_eq!(
        t.set_xattr(h.ino, b"user.x", b"1", XattrSet::Replace),
        Err(FsError::NoXattr)
    );
    assert_eq!(t.attr(h.ino), before);
}
