//! Special files, extended attributes and ACLs over raw HTTP against the real binary.
//!
//! An open cell: mknod of each kind, the umask applied by the server, an xattr round trip
//! with its flags and errors, a default ACL inherited, attributes gone with their file, a
//! store asked to clear set-id bits, and another client's promise broken by an xattr set.
//!
//! A realm (made with `dfs-server init`; tickets minted with the realm's service key, as
//! its KDC would): `trusted.*` is for admins and hidden from others, `user.*` needs read
//! permission to be seen and write permission to be set, the file's access ACL decides
//! both, only the owner sets ACLs, device nodes are for admins, and a store by a non-admin
//! clears set-id bits whatever the header says.

use dfs_common::acl::{Acl, Entry, Tag};
use dfs_common::proto::{
    CallbackFrame, DirReply, DirRequest, XattrSet, HDR_KILL_SUID, XATTR_POSIX_ACL_ACCESS,
    XATTR_POSIX_ACL_DEFAULT,
};
use dfs_common::{codec, Attr, FileKind, ROOT_INO};
use dfs_tests::caller::{attr, mknod, As};
use dfs_tests::{free_port, init_realm, CallbackChannel, Server};

#[test]
fn open_cell_special_files_xattrs_and_default_acls() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("node"), free_port(), &[]);
    let me = As::open(11);

    // The server applies the umask now.
    let made = me.dir(
        &s,
        &DirRequest::Mkdir {
            parent: ROOT_INO,
            name: b"d".to_vec(),
            mode: 0o777,
            umask: 0o022,
            uid: 0,
            gid: 0,
        },
    );
    let d = attr(made);
    assert_eq!(d.mode, 0o755);

    // Each special kind, answered like a mkdir; only device nodes keep rdev.
    for (name, kind) in [
        ("fifo", FileKind::Fifo),
        ("sock", FileKind::Socket),
        ("chr", FileKind::CharDevice),
        ("blk", FileKind::BlockDevice),
    ] {
        let DirReply::Made { attr: a, parent } = me.dir(&s, &mknod(d.ino, name, kind, 0x0801))
        else {
            panic!("mknod is answered with Made")
        };
        assert_eq!((a.kind, a.mode, a.size), (kind, 0o644, 0));
        let dev = matches!(kind, FileKind::CharDevice | FileKind::BlockDevice);
        assert_eq!(a.rdev, if dev { 0x0801 } else { 0 });
        assert_eq!(parent.ino, d.ino);
    }
    let code = me.refused(&s, &mknod(d.ino, "reg", FileKind::File, 0));
    assert_eq!(code, "EINVAL");
    // A fifo has no contents to fetch.
    let fifo = attr(me.dir(
        &s,
        &DirRequest::Lookup {
            parent: d.ino,
            name: b"fifo".to_vec(),
        },
    ));
    assert_eq!(me.fetch_status(&s, fifo.ino), 422);

    // An xattr round trip, its flags and errors.
    let f = me.create(&s, d.ino, "f", 0o644);
    let set = attr(me.dir(
        &s,
        &DirRequest::SetXattr {
            ino: f.ino,
            name: b"user.mime".to_vec(),
            value: b"text/plain".to_vec(),
            how: XattrSet::Create,
        },
    ));
    assert!(set.ctime >= f.ctime);
    match me.dir(&s, &DirRequest::Xattrs { ino: f.ino }) {
        DirReply::Xattrs(all) => {
            assert_eq!(all, vec![(b"user.mime".to_vec(), b"text/plain".to_vec())])
        }
        other => panic!("{other:?}"),
    }
    let again = DirRequest::SetXattr {
        ino: f.ino,
        name: b"user.mime".to_vec(),
        value: b"x".to_vec(),
        how: XattrSet::Create,
    };
    assert_eq!(me.refused(&s, &again), "EEXIST");
    let missing = DirRequest::RemoveXattr {
        ino: f.ino,
        name: b"user.none".to_vec(),
    };
    assert_eq!(me.refused(&s, &missing), "ENODATA");
    let r = me.set_xattr(&s, f.ino, b"os2.x", b"1");
    assert_eq!(r.code(), Some("EOPNOTSUPP"));
    let r = me.set_xattr(&s, f.ino, &[b'u'; 256], b"1");
    assert_eq!(r.code(), Some("ERANGE"));
    let r = me.set_xattr(&s, f.ino, b"user.big", &vec![0; 65537]);
    assert_eq!(r.code(), Some("E2BIG"));

    // Another client that was shown the attributes hears of a change.
    let mut other = CallbackChannel::open(&s.addr(), 12);
    As::open(12).xattr_names(&s, f.ino);
    assert_eq!(me.set_xattr(&s, f.ino, b"user.more", b"1").status, 200);
    assert_eq!(other.next_change(), CallbackFrame::Break { ino: f.ino });

    // A default ACL on d: what is created there inherits it, and the umask is ignored.
    let default = Acl::new(vec![
        Entry {
            tag: Tag::UserObj,
            perm: 7,
        },
        Entry {
            tag: Tag::User(1001),
            perm: 6,
        },
        Entry {
            tag: Tag::GroupObj,
            perm: 5,
        },
        Entry {
            tag: Tag::Mask,
            perm: 7,
        },
        Entry {
            tag: Tag::Other,
            perm: 0,
        },
    ])
    .unwrap();
    let r = me.set_xattr(&s, d.ino, XATTR_POSIX_ACL_DEFAULT, &default.to_xattr());
    assert_eq!(r.status, 200);
    let g = attr(me.dir(
        &s,
        &DirRequest::Create {
            parent: d.ino,
            name: b"g".to_vec(),
            mode: 0o666,
            umask: 0o077,
            uid: 0,
            gid: 0,
            exclusive: true,
        },
    ));
    assert_eq!(g.mode, 0o660);
    assert_eq!(
        me.xattr_names(&s, g.ino),
        [String::from_utf8(XATTR_POSIX_ACL_ACCESS.to_vec()).unwrap()]
    );

    // A store asked to clear the set-id bits clears them.
    let suid = me.create(&s, ROOT_INO, "suid", 0o4755);
    let r = me.store(&s, suid.ino, b"new", &[(HDR_KILL_SUID, "1".into())]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let stored: Attr = codec::decode(&r.body).unwrap();
    assert_eq!(stored.mode, 0o755);

    // The attributes go with the file.
    me.dir(
        &s,
        &DirRequest::Unlink {
            parent: d.ino,
            name: b"f".to_vec(),
        },
    );
    assert_eq!(me.refused(&s, &DirRequest::Xattrs { ino: f.ino }), "ENOENT");
}

#[test]
fn realm_callers_are_checked_for_xattrs_acls_and_device_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let key = init_realm(&data);
    let s = Server::start(&data, free_port(), &[]);
    let admin = As::realm(&key, 20, 0, true);
    let alice = As::realm(&key, 21, 2101, false);
    let bob = As::realm(&key, 22, 2102, false);
    let carol = As::realm(&key, 23, 2103, false);

    let f = alice.create(&s, ROOT_INO, "f", 0o600);
    assert_eq!(f.uid, 2101);
    assert_eq!(alice.set_xattr(&s, f.ino, b"user.note", b"hi").status, 200);

    // trusted.*: set by admins only, and shown to admins only.
    let r = alice.set_xattr(&s, f.ino, b"trusted.t", b"1");
    assert_eq!(r.code(), Some("EPERM"));
    assert_eq!(admin.set_xattr(&s, f.ino, b"trusted.t", b"1").status, 200);
    assert_eq!(alice.xattr_names(&s, f.ino), ["user.note"]);
    assert_eq!(admin.xattr_names(&s, f.ino), ["trusted.t", "user.note"]);

    // user.*: bob may neither read (0600) nor write them.
    assert!(bob.xattr_names(&s, f.ino).is_empty());
    let r = bob.set_xattr(&s, f.ino, b"user.bob", b"1");
    assert_eq!(r.code(), Some("EACCES"));
    assert_eq!(bob.fetch_status(&s, f.ino), 403);

    // An access ACL by the owner gives bob read permission, not carol.
    let acl = Acl::new(vec![
        Entry {
            tag: Tag::UserObj,
            perm: 6,
        },
        Entry {
            tag: Tag::User(2102),
            perm: 4,
        },
        Entry {
            tag: Tag::GroupObj,
            perm: 0,
        },
        Entry {
            tag: Tag::Mask,
            perm: 4,
        },
        Entry {
            tag: Tag::Other,
            perm: 0,
        },
    ])
    .unwrap();
    let r = bob.set_xattr(&s, f.ino, XATTR_POSIX_ACL_ACCESS, &acl.to_xattr());
    assert_eq!(r.code(), Some("EPERM"), "only the owner sets an ACL");
    let r = alice.set_xattr(&s, f.ino, XATTR_POSIX_ACL_ACCESS, &acl.to_xattr());
    assert_eq!(r.status, 200);
    let after: Attr = match codec::decode(&r.body).unwrap() {
        DirReply::Attr(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(after.mode, 0o640);
    assert_eq!(
        bob.xattr_names(&s, f.ino),
        ["system.posix_acl_access", "user.note"]
    );
    assert_eq!(bob.fetch_status(&s, f.ino), 200);
    assert_eq!(carol.xattr_names(&s, f.ino), ["system.posix_acl_access"]);
    assert_eq!(carol.fetch_status(&s, f.ino), 403);
    let r = bob.set_xattr(&s, f.ino, b"user.bob", b"1");
    assert_eq!(r.code(), Some("EACCES"), "the ACL gives bob no write");

    // Device nodes are for admins; fifos for anyone who may create.
    let dev = mknod(ROOT_INO, "dev", FileKind::CharDevice, 0x0103);
    assert_eq!(alice.refused(&s, &dev), "EPERM");
    let a = attr(admin.dir(&s, &dev));
    assert_eq!((a.kind, a.rdev), (FileKind::CharDevice, 0x0103));
    let p = attr(alice.dir(&s, &mknod(ROOT_INO, "pipe", FileKind::Fifo, 0)));
    assert_eq!((p.kind, p.uid), (FileKind::Fifo, 2101));

    // A store by a non-admin clears set-id bits, header or not.
    let suid = alice.create(&s, ROOT_INO, "suid", 0o4755);
    assert_eq!(suid.mode, 0o4755);
    let r = alice.store(&s, suid.ino, b"new", &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let stored: Attr = codec::decode(&r.body).unwrap();
    assert_eq!(stored.mode, 0o755);
}
