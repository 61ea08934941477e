//! Reading by inode number (#21 item 2): search permission along a path, and no content
//! hash for a caller who may not read the file.

use super::*;
use dfs_common::types::SetTime;
use dfs_common::ROOT_INO;
use dfs_tests::caller::attr;

#[test]
fn files_under_a_private_directory_are_not_read_by_inode_number() {
    let Realm {
        s,
        alice,
        bob,
        anon,
        ..
    } = &realm();
    let home = alice.mkdir(s, ROOT_INO, "alice", 0o700);
    let secret = alice.create(s, home.ino, "secret", 0o644);
    store_ok(alice, s, secret.ino, b"hunter2");
    assert_eq!(
        alice.set_xattr(s, secret.ino, b"user.note", b"x").status,
        200
    );
    let inner = alice.mkdir(s, home.ino, "inner", 0o777);
    let open = alice.create(s, inner.ino, "open", 0o666);
    let symlink = DirRequest::Symlink {
        parent: home.ino,
        name: b"ln".to_vec(),
        target: b"secret".to_vec(),
        uid: 0,
        gid: 0,
    };
    let ln = attr(alice.dir(s, &symlink));

    // Alice reaches all of it.
    assert_eq!(alice.fetch(s, secret.ino).body, b"hunter2");
    assert!(validate(alice, s, secret.ino).is_some());
    assert_eq!(alice.xattr_names(s, secret.ino), ["user.note"]);

    for (who, caller) in [("bob", bob), ("anonymous", anon)] {
        assert_eq!(caller.fetch(s, secret.ino).status, 403, "{who}: fetch");
        let getattr = DirRequest::GetAttr { ino: secret.ino };
        assert_eq!(caller.refused(s, &getattr), "EACCES", "{who}: getattr");
        assert_eq!(validate(caller, s, secret.ino), None, "{who}: validate");
        let xattrs = DirRequest::Xattrs { ino: secret.ino };
        assert_eq!(caller.refused(s, &xattrs), "EACCES", "{who}: xattrs");
        let readlink = DirRequest::ReadLink { ino: ln.ino };
        assert_eq!(caller.refused(s, &readlink), "EACCES", "{who}: readlink");
        // Below the private directory, by the inode number of a directory open to all.
        let lookup = DirRequest::Lookup {
            parent: inner.ino,
            name: b"open".to_vec(),
        };
        assert_eq!(caller.refused(s, &lookup), "EACCES", "{who}: lookup");
        let list = DirRequest::ReadDir {
            dir: inner.ino,
            after: None,
            limit: 0,
        };
        assert_eq!(caller.refused(s, &list), "EACCES", "{who}: readdir");
        let create = DirRequest::Create {
            parent: inner.ino,
            name: b"planted".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 0,
            gid: 0,
            exclusive: true,
        };
        assert_eq!(caller.refused(s, &create), "EACCES", "{who}: create");
        assert_eq!(caller.store(s, open.ino, b"evil", &[]).status, 403, "{who}");
        let touch = setattr(
            open.ino,
            AttrChange {
                mtime: Some(SetTime::Now),
                ..AttrChange::default()
            },
        );
        assert_eq!(caller.refused(s, &touch), "EACCES", "{who}: touch");
    }
    assert_eq!(alice.getattr(s, open.ino).version, 1, "nothing was stored");

    // A second name in a public directory makes the file reachable; its removal does not.
    attr(alice.dir(s, &link(secret.ino, ROOT_INO, "shared")));
    assert_eq!(bob.fetch(s, secret.ino).body, b"hunter2");
    assert!(validate(bob, s, secret.ino).is_some());
    let unlink = DirRequest::Unlink {
        parent: ROOT_INO,
        name: b"shared".to_vec(),
    };
    alice.dir(s, &unlink);
    assert_eq!(bob.fetch(s, secret.ino).status, 403);

    // Search permission is what counts, not read permission.
    alice.dir(s, &chmod(home.ino, 0o711));
    assert_eq!(bob.fetch(s, secret.ino).body, b"hunter2");
    assert_eq!(bob.getattr(s, ln.ino).ino, ln.ino);
    // And a rename out of the private directory follows the file.
    alice.dir(s, &chmod(home.ino, 0o700));
    assert_eq!(bob.fetch(s, secret.ino).status, 403);
    let rename = DirRequest::Rename {
        parent: home.ino,
        name: b"inner".to_vec(),
        new_parent: ROOT_INO,
        new_name: b"inner-public".to_vec(),
        flags: 0,
    };
    alice.dir(s, &rename);
    assert_eq!(bob.lookup(s, inner.ino, "open").ino, open.ino);
}

#[test]
fn attributes_carry_no_content_hash_to_callers_who_may_not_read() {
    let Realm {
        s,
        alice,
        bob,
        anon,
        ..
    } = &realm();
    let pin = alice.create(s, ROOT_INO, "pin", 0o600);
    store_ok(alice, s, pin.ino, b"1234");
    let readme = alice.create(s, ROOT_INO, "readme", 0o644);
    store_ok(alice, s, readme.ino, b"hello");
    let dropbox = alice.create(s, ROOT_INO, "dropbox", 0o622);
    assert!(
        alice.getattr(s, pin.ino).blob.is_some(),
        "the owner sees it"
    );

    for (who, caller) in [("bob", bob), ("anonymous", anon)] {
        let seen = caller.lookup(s, ROOT_INO, "pin");
        assert_eq!((seen.size, seen.blob), (4, None), "{who}: lookup");
        assert_eq!(caller.getattr(s, pin.ino).blob, None, "{who}: getattr");
        let v = validate(caller, s, pin.ino).expect("reachable");
        assert_eq!(v.blob, None, "{who}: validate");
        for (name, a) in readdir(caller, s, ROOT_INO) {
            let readable = name == b"readme";
            assert_eq!(a.blob.is_some(), readable, "{who}: readdir {name:?}");
        }
        // A non-exclusive create of an existing name answers the existing file.
        let create = DirRequest::Create {
            parent: ROOT_INO,
            name: b"pin".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 0,
            gid: 0,
            exclusive: false,
        };
        let a = attr(caller.dir(s, &create));
        assert_eq!((a.ino, a.blob), (pin.ino, None), "{who}: create");
        let create_open = DirRequest::CreateOpen {
            parent: ROOT_INO,
            name: b"pin".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 0,
            gid: 0,
            exclusive: false,
            label: "attacker".into(),
            store_at_close: false,
        };
        match caller.dir(s, &create_open) {
            DirReply::Created { attr, lock, .. } => {
                assert_eq!(attr.blob, None, "{who}: create-open");
                assert_eq!(
                    lock, None,
                    "{who}: the writers' turn of a file it may not write"
                );
            }
            other => panic!("{other:?}"),
        }
        // A writer who may not read: neither the store's answer nor a touch shows it.
        let stored = store_ok(caller, s, dropbox.ino, who.as_bytes());
        assert_eq!(
            (stored.version > 1, stored.blob),
            (true, None),
            "{who}: store"
        );
        let touch = setattr(
            dropbox.ino,
            AttrChange {
                mtime: Some(SetTime::Now),
                ..AttrChange::default()
            },
        );
        assert_eq!(attr(caller.dir(s, &touch)).blob, None, "{who}: setattr");
        // A file the caller may read keeps its hash.
        assert!(caller.getattr(s, readme.ino).blob.is_some(), "{who}");
    }
}

/// `dfs locks` (the lock list) named every holder of every file, so anyone learnt which
/// private files were in use, and by which mount: another client's locks now show only on
/// files the caller may read.
#[test]
fn lock_listings_show_others_locks_only_on_files_the_caller_may_see() {
    use dfs_common::locks::{ListRequest, LockInfo, LockReply, LockRequest};
    let Realm {
        s,
        admin,
        alice,
        bob,
        ..
    } = &realm();
    let home = alice.mkdir(s, ROOT_INO, "alice", 0o700);
    let secret = alice.create(s, home.ino, "secret", 0o644);
    let shared = alice.create(s, ROOT_INO, "shared", 0o644);
    for ino in [secret.ino, shared.ino] {
        let req = LockRequest::writers_turn(ino, "alice".into());
        let r = alice.post(s, "/v1/locks/acquire", &codec::encode(&req));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let granted: LockReply = codec::decode(&r.body).unwrap();
        assert!(matches!(granted, LockReply::Granted { .. }));
    }
    let listed = |who: &As| -> Vec<u64> {
        let all = ListRequest {
            ino: None,
            after: None,
            limit: 0,
        };
        let r = who.post(s, "/v1/locks/list", &codec::encode(&all));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let mut inos: Vec<u64> = codec::decode::<Vec<LockInfo>>(&r.body)
            .unwrap()
            .iter()
            .map(|l| l.ino)
            .collect();
        inos.sort_unstable();
        inos
    };
    let mut both = vec![secret.ino, shared.ino];
    both.sort_unstable();
    assert_eq!(listed(alice), both, "alice sees her own");
    assert_eq!(listed(admin), both, "an admin sees all");
    assert_eq!(
        listed(bob),
        vec![shared.ino],
        "bob sees the lock on what he may see"
    );
}
