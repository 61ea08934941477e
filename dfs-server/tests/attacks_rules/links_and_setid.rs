//! Hard links to other users' files (#21 item 3) and the set-id bits (item 9), over the
//! wire and in a transaction.

use super::transactions::{commit, committed};
use super::*;
use dfs_common::acl::{Acl, Entry, Tag};
use dfs_common::proto::{HDR_MODE, XATTR_POSIX_ACL_ACCESS};
use dfs_common::tx::TxOp;
use dfs_common::ROOT_INO;
use dfs_tests::caller::attr;

#[test]
fn hard_links_to_files_of_others_need_ownership_or_read_and_write() {
    let Realm {
        s,
        admin,
        alice,
        bob,
        anon,
        ..
    } = &realm();
    let private = alice.create(s, ROOT_INO, "private", 0o600);
    let readable = alice.create(s, ROOT_INO, "readable", 0o644);
    let shared = alice.create(s, ROOT_INO, "shared", 0o666);
    let setuid = alice.create(s, ROOT_INO, "setuid", 0o4777);
    let fifo = attr(alice.dir(
        s,
        &dfs_tests::caller::mknod(ROOT_INO, "fifo", dfs_common::FileKind::Fifo, 0),
    ));
    alice.dir(s, &chmod(fifo.ino, 0o666));
    let own = bob.create(s, ROOT_INO, "own", 0o600);

    for (target, name) in [
        (private.ino, "l-private"),
        (readable.ino, "l-readable"),
        (setuid.ino, "l-setuid"),
        (fifo.ino, "l-fifo"),
    ] {
        assert_eq!(
            bob.refused(s, &link(target, ROOT_INO, name)),
            "EPERM",
            "{name}"
        );
        assert_eq!(anon.refused(s, &link(target, ROOT_INO, name)), "EPERM");
    }
    assert_eq!(alice.getattr(s, private.ino).nlink, 1);
    assert_eq!(
        attr(bob.dir(s, &link(shared.ino, ROOT_INO, "l-shared"))).nlink,
        2
    );
    assert_eq!(attr(bob.dir(s, &link(own.ino, ROOT_INO, "l-own"))).nlink, 2);
    assert_eq!(
        attr(alice.dir(s, &link(private.ino, ROOT_INO, "a"))).nlink,
        2
    );
    assert_eq!(
        attr(admin.dir(s, &link(private.ino, ROOT_INO, "b"))).nlink,
        3
    );
}

fn acl_with_bob() -> Vec<u8> {
    let e = |tag, perm| Entry { tag, perm };
    let acl = Acl::new(vec![
        e(Tag::UserObj, 7),
        e(Tag::User(BOB), 5),
        e(Tag::GroupObj, 5),
        e(Tag::Mask, 5),
        e(Tag::Other, 5),
    ])
    .unwrap();
    acl.to_xattr()
}

#[test]
fn set_id_bits_follow_linux_rules_over_the_wire() {
    let r = realm();
    let Realm {
        s, admin, alice, ..
    } = &r;
    let staff_alice = As::realm_in_groups(&r.key, 44, ALICE, &[STAFF], false);
    let mode = |who: &As, req: &DirRequest| attr(who.dir(s, req)).mode;

    // The owner may set S_ISUID, S_ISGID only while in the file's group.
    let f = alice.create(s, ROOT_INO, "prog", 0o755);
    assert_eq!(mode(alice, &chmod(f.ino, 0o4755)), 0o4755);
    let to_staff = setattr(
        f.ino,
        AttrChange {
            gid: Some(STAFF),
            ..AttrChange::default()
        },
    );
    assert_eq!(
        mode(admin, &to_staff),
        0o755,
        "a chown clears them, even an admin's"
    );
    assert_eq!(
        mode(alice, &chmod(f.ino, 0o6755)),
        0o4755,
        "not in the group"
    );
    assert_eq!(mode(&staff_alice, &chmod(f.ino, 0o6755)), 0o6755);
    // A write clears them: a store and a truncate by a non-admin.
    assert_eq!(store_ok(alice, s, f.ino, b"#!/bin/sh\n").mode, 0o755);
    staff_alice.dir(s, &chmod(f.ino, 0o6755));
    let truncate = setattr(
        f.ino,
        AttrChange {
            size: Some(2),
            ..AttrChange::default()
        },
    );
    assert_eq!(mode(alice, &truncate), 0o755);
    // A chgrp by the owner clears them.
    staff_alice.dir(s, &chmod(f.ino, 0o6755));
    let to_own = setattr(
        f.ino,
        AttrChange {
            gid: Some(ALICE),
            ..AttrChange::default()
        },
    );
    assert_eq!(mode(alice, &to_own), 0o755);
    // An access ACL set by an owner outside the file's group drops S_ISGID (Linux's
    // posix_acl_update_mode), as a chmod would.
    let g = alice.create(s, ROOT_INO, "acl", 0o755);
    let staff_sgid = setattr(
        g.ino,
        AttrChange {
            gid: Some(STAFF),
            mode: Some(0o2755),
            ..AttrChange::default()
        },
    );
    assert_eq!(mode(admin, &staff_sgid), 0o2755);
    let set = alice.set_xattr(s, g.ino, XATTR_POSIX_ACL_ACCESS, &acl_with_bob());
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    let DirReply::Attr(after) = codec::decode(&set.body).unwrap() else {
        panic!("setxattr answers attributes")
    };
    assert_eq!(after.mode, 0o755);
    // A create in a set-gid directory of a group the creator is not in: no S_ISGID.
    let d = admin.mkdir(s, ROOT_INO, "staff", 0o777);
    admin.dir(
        s,
        &setattr(
            d.ino,
            AttrChange {
                gid: Some(STAFF),
                mode: Some(0o2777),
                ..AttrChange::default()
            },
        ),
    );
    let made = alice.create(s, d.ino, "made", 0o2755);
    assert_eq!((made.gid, made.mode), (STAFF, 0o755));
    // A store's chmod cannot carry set-id bits at all.
    let r2 = alice.store(s, g.ino, b"x", &[(HDR_MODE, (0o4755u32).to_string())]);
    assert_eq!(r2.status, 400);

    // The same rules in a transaction: a set-mode as alone, a put as a store.
    let suid = alice.create(s, ROOT_INO, "suid", 0o4755);
    let tx = alice.tx_begin(s);
    let blob = alice.tx_stage(s, tx, b"new contents").blob;
    let ops = vec![
        TxOp::SetMode {
            path: b"/acl".to_vec(),
            mode: 0o6755,
        },
        TxOp::Put {
            path: b"/suid".to_vec(),
            blob,
            mode: None,
        },
    ];
    let done = committed(alice.tx_commit(s, tx, &commit(ops)));
    assert_eq!(
        done.results[0].as_ref().unwrap().mode,
        0o4755,
        "not in the group"
    );
    assert_eq!(alice.getattr(s, suid.ino).mode, 0o755, "a put clears them");
}
