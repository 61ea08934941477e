//! Unit tests of extended attributes in the namespace: Linux's names, limits and flags,
//! which kinds may have which, ctime, and attributes going with their inode.

use super::testkit::*;
use super::txn::{TxApplied, TxBatch, TxCommand};
use super::*;
use dfs_common::acl::Acl;
use dfs_common::proto::{
    XattrSet, XATTR_NAME_MAX, XATTR_POSIX_ACL_ACCESS, XATTR_POSIX_ACL_DEFAULT, XATTR_SIZE_MAX,
    XATTR_TOTAL_MAX,
};
use dfs_common::tx::TxOp;

const EITHER: XattrSet = XattrSet::Either;

#[test]
fn set_get_replace_and_remove_in_name_order_with_ctime() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    let out = t.set_xattr(f.ino, b"user.b", b"2", EITHER).unwrap();
    assert_eq!(out.changed_inos, vec![f.ino]);
    assert_eq!(out.attr.unwrap().ctime, ts(LATER));
    t.set_xattr(f.ino, b"user.a", b"", EITHER).unwrap();
    t.set_xattr(f.ino, b"trusted.t", b"x", EITHER).unwrap();
    t.set_xattr(f.ino, b"security.selinux", b"ctx", EITHER)
        .unwrap();
    assert_eq!(
        t.xattr_names(f.ino),
        ["security.selinux", "trusted.t", "user.a", "user.b"]
    );
    assert_eq!(
        t.xattr(f.ino, b"user.a"),
        Some(Vec::new()),
        "empty values exist"
    );
    t.set_xattr(f.ino, b"user.b", b"22", XattrSet::Replace)
        .unwrap();
    assert_eq!(t.xattr(f.ino, b"user.b"), Some(b"22".to_vec()));
    let out = t.remove_xattr(f.ino, b"user.b").unwrap();
    assert_eq!(out.changed_inos, vec![f.ino]);
    assert_eq!(t.xattr(f.ino, b"user.b"), None);
    let version = t.attr(f.ino).version;
    assert_eq!(
        version, f.version,
        "metadata changes leave the version alone"
    );
}

#[test]
fn create_on_an_existing_one_is_eexist_and_replace_or_remove_of_a_missing_one_enodata() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    t.set_xattr(f.ino, b"user.x", b"1", XattrSet::Create)
        .unwrap();
    assert_eq!(
        t.set_xattr(f.ino, b"user.x", b"2", XattrSet::Create),
        Err(FsError::Exists)
    );
    assert_eq!(
        t.set_xattr(f.ino, b"user.y", b"2", XattrSet::Replace),
        Err(FsError::NoXattr)
    );
    assert_eq!(t.remove_xattr(f.ino, b"user.y"), Err(FsError::NoXattr));
    assert_eq!(t.xattr(f.ino, b"user.x"), Some(b"1".to_vec()));
    assert_eq!(t.attr(f.ino).ctime, ts(LATER));
    assert_eq!(
        t.set_xattr(999, b"user.x", b"1", EITHER),
        Err(FsError::NotFound)
    );
    assert_eq!(t.ns.xattrs(999), Err(FsError::NotFound));
}

#[test]
fn names_outside_the_known_namespaces_are_not_supported_and_bad_ones_invalid() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    for name in [
        &b"os2.x"[..],
        b"system.other",
        b"system.posix_acl_accessx",
        b"xyz",
        b"User.x",
    ] {
        assert!(
            matches!(
                t.set_xattr(f.ino, name, b"1", EITHER),
                Err(FsError::NotSupported(_))
            ),
            "{name:?}"
        );
        assert!(matches!(
            t.remove_xattr(f.ino, name),
            Err(FsError::NotSupported(_))
        ));
    }
    for name in [&b""[..], b"user.", b"trusted.", b"user.a\0b"] {
        assert!(
            matches!(
                t.set_xattr(f.ino, name, b"1", EITHER),
                Err(FsError::Invalid(_))
            ),
            "{name:?}"
        );
    }
    assert!(t.xattr_names(f.ino).is_empty());
    assert_eq!(t.attr(f.ino).ctime, ts(10));
}

#[test]
fn long_names_are_erange_large_values_e2big_and_a_full_inode_enospc() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    let longest = format!("user.{}", "n".repeat(XATTR_NAME_MAX - 5));
    t.set_xattr(f.ino, longest.as_bytes(), b"1", EITHER)
        .unwrap();
    let too_long = format!("{longest}n");
    assert!(matches!(
        t.set_xattr(f.ino, too_long.as_bytes(), b"1", EITHER),
        Err(FsError::OutOfRange(_))
    ));
    assert!(matches!(
        t.remove_xattr(f.ino, too_long.as_bytes()),
        Err(FsError::OutOfRange(_))
    ));
    let biggest = vec![7u8; XATTR_SIZE_MAX];
    t.set_xattr(f.ino, b"user.big", &biggest, EITHER).unwrap();
    assert!(matches!(
        t.set_xattr(
            f.ino,
            b"user.bigger",
            &vec![7u8; XATTR_SIZE_MAX + 1],
            EITHER
        ),
        Err(FsError::TooBig(_))
    ));
    // Fill the inode: 64 KiB values until the next one does not fit.
    let mut n = 0;
    let err = loop {
        match t.set_xattr(f.ino, format!("user.v{n}").as_bytes(), &biggest, EITHER) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, FsError::NoSpace);
    // The long name's and user.big's bytes plus two more 64 KiB values fill 256 KiB.
    assert_eq!(n, 2);
    let used: usize =
        t.ns.xattrs(f.ino)
            .unwrap()
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum();
    assert!(used <= XATTR_TOTAL_MAX && used + XATTR_SIZE_MAX > XATTR_TOTAL_MAX);
    // Replacing one with a value of the same size still fits; a smaller one frees room.
    t.set_xattr(f.ino, b"user.v0", &biggest, XattrSet::Replace)
        .unwrap();
    t.set_xattr(f.ino, b"user.v0", b"small", XattrSet::Replace)
        .unwrap();
    t.set_xattr(f.ino, b"user.fits", &vec![1u8; 60_000], EITHER)
        .unwrap();
}

#[test]
fn user_attributes_only_on_files_and_directories() {
    let t = fresh();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    t.set_xattr(d.ino, b"user.x", b"1", EITHER).unwrap();
    let p = t.mknod(ROOT_INO, "p", FileKind::Fifo, 0).unwrap();
    assert!(matches!(
        t.set_xattr(p.ino, b"user.x", b"1", EITHER),
        Err(FsError::NotPermitted(_))
    ));
    assert!(matches!(
        t.remove_xattr(p.ino, b"user.x"),
        Err(FsError::NotPermitted(_))
    ));
    // Other namespaces are fine on them.
    t.set_xattr(p.ino, b"trusted.x", b"1", EITHER).unwrap();
    let l =
        t.ns.apply(NsCommand::Symlink {
            parent: ROOT_INO,
            name: b"l".to_vec(),
            target: b"p".to_vec(),
            uid: 1,
            gid: 2,
            now: ts(10),
        })
        .unwrap()
        .attr
        .unwrap();
    assert!(matches!(
        t.set_xattr(l.ino, b"user.x", b"1", EITHER),
        Err(FsError::NotPermitted(_))
    ));
    t.set_xattr(l.ino, b"security.x", b"1", EITHER).unwrap();
    let acl = Acl::from_mode(0o644).to_xattr();
    assert!(matches!(
        t.set_xattr(l.ino, XATTR_POSIX_ACL_ACCESS, &acl, EITHER),
        Err(FsError::NotSupported(_))
    ));
}

#[test]
fn a_default_acl_only_on_directories_and_acls_must_be_valid() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    let plain = Acl::from_mode(0o750).to_xattr();
    assert!(matches!(
        t.set_xattr(f.ino, XATTR_POSIX_ACL_DEFAULT, &plain, EITHER),
        Err(FsError::PermissionDenied(_))
    ));
    // A default ACL is kept even when it says only mode bits (it is for what comes).
    t.set_xattr(d.ino, XATTR_POSIX_ACL_DEFAULT, &plain, EITHER)
        .unwrap();
    assert_eq!(t.xattr(d.ino, XATTR_POSIX_ACL_DEFAULT), Some(plain));
    // A header without entries removes it.
    t.set_xattr(d.ino, XATTR_POSIX_ACL_DEFAULT, &2u32.to_le_bytes(), EITHER)
        .unwrap();
    assert_eq!(t.xattr(d.ino, XATTR_POSIX_ACL_DEFAULT), None);
    for bad in [&b""[..], &[2, 0, 0, 0, 1, 0]] {
        assert!(matches!(
            t.set_xattr(f.ino, XATTR_POSIX_ACL_ACCESS, bad, EITHER),
            Err(FsError::Invalid(_))
        ));
    }
    assert_eq!(t.attr(f.ino).mode, 0o644);
    assert_eq!(t.attr(f.ino).ctime, ts(10));
}

#[test]
fn attributes_go_with_the_last_link_of_their_inode() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    t.set_xattr(f.ino, b"user.x", b"1", EITHER).unwrap();
    t.link(f.ino, ROOT_INO, "g").unwrap();
    t.unlink(ROOT_INO, "f").unwrap();
    assert_eq!(
        t.xattr_names(t.lookup(ROOT_INO, "g").unwrap().ino),
        ["user.x"]
    );
    t.unlink(ROOT_INO, "g").unwrap();
    assert_eq!(t.ns.xattrs(f.ino), Err(FsError::NotFound));
    assert_eq!(xattr_rows(&t), 0);
}

#[test]
fn attributes_go_with_a_removed_directory_and_a_replaced_rename_target() {
    let t = fresh();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    t.set_xattr(d.ino, b"user.d", b"1", EITHER).unwrap();
    t.rmdir(ROOT_INO, "d").unwrap();
    let victim = t.create(ROOT_INO, "victim", true).unwrap();
    t.set_xattr(victim.ino, b"user.v", b"1", EITHER).unwrap();
    let e = t.mkdir(ROOT_INO, "e").unwrap();
    t.set_xattr(e.ino, b"user.e", b"1", EITHER).unwrap();
    t.mkdir(ROOT_INO, "other").unwrap();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    t.set_xattr(f.ino, b"user.f", b"1", EITHER).unwrap();
    t.rename(ROOT_INO, "f", ROOT_INO, "victim", 0).unwrap();
    t.rename(ROOT_INO, "other", ROOT_INO, "e", 0).unwrap();
    // Only the survivor's attribute is left.
    assert_eq!(xattr_rows(&t), 1);
    assert_eq!(t.xattr_names(f.ino), ["user.f"]);
}

#[test]
fn attributes_go_with_inodes_a_transaction_removes() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    t.set_xattr(f.ino, b"user.x", b"1", EITHER).unwrap();
    let TxApplied::Begun(tx) =
        t.ns.apply_tx(TxCommand::Begin {
            owner: crate::namespace::txn::TxOwner { client: 9, uid: 0 },
            label: "t".into(),
            expires_ms: u64::MAX,
        })
        .unwrap()
    else {
        panic!("no transaction")
    };
    let batch = TxBatch {
        tx,
        client: 9,
        caller: crate::auth::Caller::open(9),
        ops: vec![TxOp::Remove {
            path: b"/f".to_vec(),
        }],
        uid: 0,
        gid: 0,
        locked: Vec::new(),
        now: ts(20),
    };
    let applied = t.ns.apply_tx(TxCommand::Commit(batch)).unwrap();
    assert!(
        matches!(applied, TxApplied::Committed { .. }),
        "{applied:?}"
    );
    assert_eq!(xattr_rows(&t), 0);
}

/// Rows in the xattrs table, whatever inode they belong to.
fn xattr_rows(t: &T) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let tx = t.ns.db.begin_read().unwrap();
    tx.open_table(super::store::XATTRS).unwrap().len().unwrap()
}
