//! Unit tests of the namespace rules: one test (at least) per POSIX rule.

use super::testkit::*;
use super::*;
use dfs_common::proto::{RENAME_EXCHANGE, RENAME_NOREPLACE};

#[test]
fn fresh_root_is_a_sticky_world_writable_dir_owned_by_root() {
    let t = fresh();
    let root = t.attr(ROOT_INO);
    assert_eq!(root.kind, FileKind::Dir);
    assert_eq!(root.mode, 0o1777);
    assert_eq!((root.uid, root.gid, root.nlink), (0, 0, 2));
}

#[test]
fn bad_names_are_invalid_and_long_names_too_long() {
    let t = fresh();
    for bad in ["", ".", "..", "a/b", "a\0b"] {
        assert!(
            matches!(t.create(ROOT_INO, bad, true), Err(FsError::Invalid(_))),
            "{bad:?}"
        );
        assert!(matches!(t.mkdir(ROOT_INO, bad), Err(FsError::Invalid(_))));
        assert!(matches!(t.lookup(ROOT_INO, bad), Err(FsError::Invalid(_))));
    }
    let long = "x".repeat(256);
    assert_eq!(t.create(ROOT_INO, &long, true), Err(FsError::NameTooLong));
    assert!(t.create(ROOT_INO, &"x".repeat(255), true).is_ok());
}

#[test]
fn lookup_of_missing_is_not_found() {
    let t = fresh();
    assert_eq!(t.lookup(ROOT_INO, "nope"), Err(FsError::NotFound));
    assert_eq!(t.ns.getattr(999), Err(FsError::NotFound));
}

#[test]
fn existing_names_are_exists_and_create_nonexclusive_returns_the_file() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    assert_eq!(t.create(ROOT_INO, "f", true), Err(FsError::Exists));
    assert_eq!(t.mkdir(ROOT_INO, "f"), Err(FsError::Exists));
    assert_eq!(t.link(f.ino, ROOT_INO, "d").unwrap_err(), FsError::Exists);
    let sym = t.ns.apply(NsCommand::Symlink {
        parent: ROOT_INO,
        name: b"f".to_vec(),
        target: b"x".to_vec(),
        uid: 0,
        gid: 0,
        now: ts(3),
    });
    assert_eq!(sym.unwrap_err(), FsError::Exists);
    let again = t.create(ROOT_INO, "f", false).unwrap();
    assert_eq!(again, f);
    assert_eq!(t.create(ROOT_INO, "d", false), Err(FsError::IsDir));
    assert_eq!(d.nlink, 2);
}

#[test]
fn unlink_of_dir_is_isdir_and_rmdir_of_file_is_notdir() {
    let t = fresh();
    t.create(ROOT_INO, "f", true).unwrap();
    t.mkdir(ROOT_INO, "d").unwrap();
    assert_eq!(t.unlink(ROOT_INO, "d").unwrap_err(), FsError::IsDir);
    assert_eq!(t.rmdir(ROOT_INO, "f").unwrap_err(), FsError::NotDir);
    assert_eq!(t.unlink(ROOT_INO, "zz").unwrap_err(), FsError::NotFound);
}

#[test]
fn rmdir_of_nonempty_is_notempty_and_parent_nlink_follows_subdirs() {
    let t = fresh();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    assert_eq!(t.attr(ROOT_INO).nlink, 3);
    t.mkdir(d.ino, "sub").unwrap();
    assert_eq!(t.attr(d.ino).nlink, 3);
    assert_eq!(t.rmdir(ROOT_INO, "d").unwrap_err(), FsError::NotEmpty);
    t.rmdir(d.ino, "sub").unwrap();
    assert_eq!(t.attr(d.ino).nlink, 2);
    let out = t.rmdir(ROOT_INO, "d").unwrap();
    assert_eq!(t.attr(ROOT_INO).nlink, 2);
    assert!(out.changed_entries.contains(&(ROOT_INO, b"d".to_vec())));
    assert_eq!(t.ns.getattr(d.ino), Err(FsError::NotFound));
}

#[test]
fn non_directory_parent_is_notdir() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    assert_eq!(t.create(f.ino, "x", true), Err(FsError::NotDir));
    assert_eq!(t.mkdir(f.ino, "x"), Err(FsError::NotDir));
    assert_eq!(t.lookup(f.ino, "x"), Err(FsError::NotDir));
    assert_eq!(t.ns.readdir(f.ino, None, 10).unwrap_err(), FsError::NotDir);
    assert_eq!(t.mkdir(12345, "x"), Err(FsError::NotFound));
}

#[test]
fn parent_times_and_version_change_on_entry_changes() {
    let t = fresh();
    let before = t.attr(ROOT_INO);
    t.create(ROOT_INO, "f", true).unwrap();
    let after = t.attr(ROOT_INO);
    assert_eq!(after.mtime, ts(10));
    assert_eq!(after.ctime, ts(10));
    assert!(after.version > before.version);
    t.unlink(ROOT_INO, "f").unwrap();
    assert_eq!(t.attr(ROOT_INO).mtime, ts(20));
}

#[test]
fn link_counts_names_and_unlink_drops_inode_and_blob_at_zero() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    t.store(f.ino, 7, 100).unwrap();
    let l = t.link(f.ino, ROOT_INO, "g").unwrap().attr.unwrap();
    assert_eq!(l.nlink, 2);
    assert_eq!(l.ctime, ts(40));
    assert!(t.unlink(ROOT_INO, "f").unwrap().unreferenced.is_empty());
    assert_eq!(t.attr(f.ino).nlink, 1);
    let out = t.unlink(ROOT_INO, "g").unwrap();
    assert_eq!(out.unreferenced, vec![BlobId([7; 32])]);
    assert_eq!(t.ns.getattr(f.ino), Err(FsError::NotFound));
    assert_eq!(t.ns.refcount(&BlobId([7; 32])).unwrap(), Some(0));
    assert_eq!(t.ns.garbage_due(20).unwrap(), vec![BlobId([7; 32])]);
    assert!(t.ns.garbage_due(19).unwrap().is_empty());
}

#[test]
fn link_to_a_directory_is_not_permitted() {
    let t = fresh();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    assert!(matches!(
        t.link(d.ino, ROOT_INO, "e"),
        Err(FsError::NotPermitted(_))
    ));
}

#[test]
fn store_bumps_version_and_moves_blob_refs() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    assert_eq!((f.version, f.size, f.blob), (1, 0, None));
    let a = t.store(f.ino, 1, 10).unwrap().attr.unwrap();
    assert_eq!((a.version, a.size, a.blob), (2, 10, Some(BlobId([1; 32]))));
    assert_eq!((a.mtime, a.ctime), (ts(50), ts(50)));
    let out = t.store(f.ino, 2, 20).unwrap();
    assert_eq!(out.unreferenced, vec![BlobId([1; 32])]);
    assert_eq!(out.attr.unwrap().version, 3);
    // The same blob for two files is counted twice.
    let g = t.create(ROOT_INO, "g", true).unwrap();
    t.store(g.ino, 2, 20).unwrap();
    assert_eq!(t.ns.refcount(&BlobId([2; 32])).unwrap(), Some(2));
    // A blob referenced again leaves the garbage list.
    t.store(g.ino, 1, 10).unwrap();
    assert_eq!(t.ns.refcount(&BlobId([1; 32])).unwrap(), Some(1));
    assert!(t.ns.garbage_due(i64::MAX as u64).unwrap().is_empty());
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    assert_eq!(t.store(d.ino, 3, 1).unwrap_err(), FsError::IsDir);
    assert_eq!(t.store(999, 3, 1).unwrap_err(), FsError::NotFound);
}

#[test]
fn setattr_changes_mode_owner_times_and_size_zero_empties() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    t.store(f.ino, 1, 10).unwrap();
    let out =
        t.ns.apply(NsCommand::SetAttr {
            ino: f.ino,
            mode: Some(0o100600),
            uid: Some(5),
            gid: None,
            atime: Some(ts(3)),
            mtime: None,
            contents: Some(Contents {
                blob: None,
                size: 0,
                base_version: None,
            }),
            kill_suid: false,
            now: ts(60),
        })
        .unwrap();
    let a = out.attr.unwrap();
    assert_eq!(
        (a.mode, a.uid, a.gid, a.size, a.blob),
        (0o600, 5, 2, 0, None)
    );
    assert_eq!(
        (a.atime, a.mtime, a.ctime, a.version),
        (ts(3), ts(60), ts(60), 3)
    );
    assert_eq!(out.unreferenced, vec![BlobId([1; 32])]);
    // A stale base version is refused.
    let stale = t.ns.apply(NsCommand::SetAttr {
        ino: f.ino,
        mode: None,
        uid: None,
        gid: None,
        atime: None,
        mtime: None,
        contents: Some(Contents {
            blob: None,
            size: 0,
            base_version: Some(1),
        }),
        kill_suid: false,
        now: ts(61),
    });
    assert!(matches!(stale, Err(FsError::Busy(_))));
}

#[test]
fn rename_over_existing_file_replaces_it_and_drops_its_blob() {
    let t = fresh();
    let a = t.create(ROOT_INO, "a", true).unwrap();
    let b = t.create(ROOT_INO, "b", true).unwrap();
    t.store(b.ino, 9, 5).unwrap();
    let out = t.rename(ROOT_INO, "a", ROOT_INO, "b", 0).unwrap();
    assert_eq!(out.unreferenced, vec![BlobId([9; 32])]);
    assert!(out.changed_inos.contains(&b.ino));
    assert_eq!(t.lookup(ROOT_INO, "b").unwrap().ino, a.ino);
    assert_eq!(t.lookup(ROOT_INO, "a"), Err(FsError::NotFound));
    assert_eq!(t.ns.getattr(b.ino), Err(FsError::NotFound));
}

#[test]
fn rename_over_a_hard_linked_file_only_decrements_it() {
    let t = fresh();
    t.create(ROOT_INO, "a", true).unwrap();
    let b = t.create(ROOT_INO, "b", true).unwrap();
    t.link(b.ino, ROOT_INO, "c").unwrap();
    t.rename(ROOT_INO, "a", ROOT_INO, "b", 0).unwrap();
    assert_eq!(t.attr(b.ino).nlink, 1);
}

#[test]
fn rename_kind_mismatches() {
    let t = fresh();
    t.create(ROOT_INO, "f", true).unwrap();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    t.mkdir(ROOT_INO, "full").unwrap();
    let full = t.lookup(ROOT_INO, "full").unwrap();
    t.create(full.ino, "x", true).unwrap();
    assert_eq!(
        t.rename(ROOT_INO, "f", ROOT_INO, "d", 0).unwrap_err(),
        FsError::IsDir
    );
    assert_eq!(
        t.rename(ROOT_INO, "d", ROOT_INO, "f", 0).unwrap_err(),
        FsError::NotDir
    );
    assert_eq!(
        t.rename(ROOT_INO, "d", ROOT_INO, "full", 0).unwrap_err(),
        FsError::NotEmpty
    );
    assert_eq!(
        t.rename(ROOT_INO, "zz", ROOT_INO, "y", 0).unwrap_err(),
        FsError::NotFound
    );
    assert_eq!(t.attr(d.ino).nlink, 2);
}

#[test]
fn rename_dir_over_empty_dir_replaces_it_and_fixes_link_counts() {
    let t = fresh();
    let a = t.mkdir(ROOT_INO, "a").unwrap();
    let b = t.mkdir(ROOT_INO, "b").unwrap();
    assert_eq!(t.attr(ROOT_INO).nlink, 4);
    t.rename(ROOT_INO, "a", ROOT_INO, "b", 0).unwrap();
    assert_eq!(t.lookup(ROOT_INO, "b").unwrap().ino, a.ino);
    assert_eq!(t.ns.getattr(b.ino), Err(FsError::NotFound));
    assert_eq!(t.attr(ROOT_INO).nlink, 3);
    // Across directories: the counts move with the directory.
    let c = t.mkdir(ROOT_INO, "c").unwrap();
    let e = t.mkdir(c.ino, "e").unwrap();
    t.mkdir(a.ino, "e").unwrap();
    assert_eq!(t.attr(a.ino).nlink, 3);
    t.rename(c.ino, "e", a.ino, "e", 0).unwrap();
    assert_eq!(t.attr(c.ino).nlink, 2);
    assert_eq!(t.attr(a.ino).nlink, 3);
    assert_eq!(t.lookup(a.ino, "e").unwrap().ino, e.ino);
    t.rename(a.ino, "e", ROOT_INO, "e2", 0).unwrap();
    assert_eq!(t.attr(a.ino).nlink, 2);
    assert_eq!(t.attr(ROOT_INO).nlink, 5);
    // The moved directory's new parent is used by the subtree check.
    assert!(matches!(
        t.rename(ROOT_INO, "e2", e.ino, "x", 0),
        Err(FsError::Invalid(_))
    ));
}

#[test]
fn rename_directory_into_its_own_subtree_is_invalid() {
    let t = fresh();
    let a = t.mkdir(ROOT_INO, "a").unwrap();
    let b = t.mkdir(a.ino, "b").unwrap();
    let c = t.mkdir(b.ino, "c").unwrap();
    assert!(matches!(
        t.rename(ROOT_INO, "a", c.ino, "a", 0),
        Err(FsError::Invalid(_))
    ));
    assert!(matches!(
        t.rename(ROOT_INO, "a", a.ino, "x", 0),
        Err(FsError::Invalid(_))
    ));
    // Sideways is fine.
    t.rename(b.ino, "c", ROOT_INO, "c", 0).unwrap();
    assert_eq!(t.lookup(ROOT_INO, "c").unwrap().ino, c.ino);
}

#[test]
fn rename_onto_itself_is_a_noop() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    t.link(f.ino, ROOT_INO, "g").unwrap();
    let before = t.attr(ROOT_INO);
    assert_eq!(
        t.rename(ROOT_INO, "f", ROOT_INO, "f", 0).unwrap(),
        NsOutcome::default()
    );
    assert_eq!(
        t.rename(ROOT_INO, "f", ROOT_INO, "g", 0).unwrap(),
        NsOutcome::default()
    );
    assert_eq!(t.attr(ROOT_INO), before);
    assert_eq!(t.lookup(ROOT_INO, "f").unwrap().ino, f.ino);
    assert_eq!(t.lookup(ROOT_INO, "g").unwrap().ino, f.ino);
}

#[test]
fn rename_noreplace_and_exchange() {
    let t = fresh();
    let a = t.create(ROOT_INO, "a", true).unwrap();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    let b = t.create(d.ino, "b", true).unwrap();
    assert_eq!(
        t.rename(ROOT_INO, "a", d.ino, "b", RENAME_NOREPLACE)
            .unwrap_err(),
        FsError::Exists
    );
    t.rename(ROOT_INO, "a", d.ino, "new", RENAME_NOREPLACE)
        .unwrap();
    assert_eq!(t.lookup(d.ino, "new").unwrap().ino, a.ino);
    assert_eq!(
        t.rename(d.ino, "new", ROOT_INO, "none", RENAME_EXCHANGE)
            .unwrap_err(),
        FsError::NotFound
    );
    // Exchange a directory and a file across directories.
    let e = t.mkdir(ROOT_INO, "e").unwrap();
    t.rename(d.ino, "b", ROOT_INO, "e", RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(t.lookup(ROOT_INO, "e").unwrap().ino, b.ino);
    assert_eq!(t.lookup(d.ino, "b").unwrap().ino, e.ino);
    assert_eq!(t.attr(d.ino).nlink, 3);
    assert_eq!(t.attr(ROOT_INO).nlink, 3);
    // The exchanged directory's parent moved: it cannot now swallow d.
    assert!(matches!(
        t.rename(ROOT_INO, "d", e.ino, "d", 0),
        Err(FsError::Invalid(_))
    ));
    assert!(matches!(
        t.rename(ROOT_INO, "a", ROOT_INO, "b", 3),
        Err(FsError::Invalid(_))
    ));
}

#[test]
fn readdir_pages_a_3000_entry_directory_in_name_order() {
    let t = fresh();
    let d = t.mkdir(ROOT_INO, "big").unwrap();
    let mut want = Vec::new();
    for i in 0..3000 {
        let name = format!("entry-{i:05}");
        t.create(d.ino, &name, true).unwrap();
        want.push(name.into_bytes());
    }
    want.sort();
    let mut got = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    let mut pages = 0;
    loop {
        let (entries, more) = t.ns.readdir(d.ino, after.as_deref(), 5000).unwrap();
        assert!(entries.len() <= READDIR_PAGE as usize);
        pages += 1;
        after = entries.last().map(|e| e.0.clone());
        got.extend(entries.into_iter().map(|(n, a)| {
            assert_eq!(a.kind, FileKind::File);
            n
        }));
        if !more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, want);
    let (small, more) = t.ns.readdir(d.ino, None, 7).unwrap();
    assert_eq!((small.len(), more), (7, true));
    let (none, more) = t.ns.readdir(d.ino, Some(b"zzz"), 7).unwrap();
    assert!(none.is_empty() && !more);
}

#[test]
fn validate_reports_current_attributes_and_gone_inodes() {
    let t = fresh();
    let f = t.create(ROOT_INO, "f", true).unwrap();
    let g = t.create(ROOT_INO, "g", true).unwrap();
    let h = t.create(ROOT_INO, "h", true).unwrap();
    t.store(g.ino, 1, 1).unwrap();
    t.unlink(ROOT_INO, "h").unwrap();
    let (current, alive) =
        t.ns.validate(&[(f.ino, 1), (g.ino, 1), (h.ino, 1)])
            .unwrap();
    assert_eq!(current.len(), 3);
    assert_eq!(current[0], (f.ino, Some(t.attr(f.ino))));
    assert_eq!(current[1], (g.ino, Some(t.attr(g.ino))));
    assert_ne!(current[1].1.as_ref().unwrap().version, 1);
    assert_eq!(current[2], (h.ino, None));
    assert_eq!(alive, vec![f.ino, g.ino]);
}

#[test]
fn inode_numbers_are_never_reused_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let first = {
        let ns = Namespace::open(&path, 0o755, ts(1)).unwrap();
        let o = ns
            .apply(NsCommand::Create {
                parent: ROOT_INO,
                name: b"a".to_vec(),
                mode: 0o644,
                umask: 0,
                uid: 0,
                gid: 0,
                exclusive: true,
                now: ts(2),
            })
            .unwrap();
        let ino = o.attr.unwrap().ino;
        ns.apply(NsCommand::Unlink {
            parent: ROOT_INO,
            name: b"a".to_vec(),
            now: ts(3),
        })
        .unwrap();
        ino
    };
    let ns = Namespace::open(&path, 0o755, ts(4)).unwrap();
    assert_eq!(ns.getattr(ROOT_INO).unwrap().mode, 0o755);
    let o = ns
        .apply(NsCommand::Mkdir {
            parent: ROOT_INO,
            name: b"a".to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 0,
            gid: 0,
            now: ts(5),
        })
        .unwrap();
    assert!(o.attr.unwrap().ino > first);
    assert_eq!(ns.inode_count().unwrap(), 2);
}

#[test]
fn symlinks_keep_their_target() {
    let t = fresh();
    let o =
        t.ns.apply(NsCommand::Symlink {
            parent: ROOT_INO,
            name: b"l".to_vec(),
            target: b"../x/y".to_vec(),
            uid: 3,
            gid: 4,
            now: ts(2),
        })
        .unwrap();
    let a = o.attr.unwrap();
    assert_eq!((a.kind, a.size, a.mode), (FileKind::Symlink, 6, 0o777));
    assert_eq!(t.ns.readlink(a.ino).unwrap(), b"../x/y");
    let f = t.create(ROOT_INO, "f", true).unwrap();
    assert!(matches!(t.ns.readlink(f.ino), Err(FsError::Invalid(_))));
}

#[test]
fn a_durable_commit_is_in_flight_from_before_it_begins_until_it_ends() {
    let t = fresh();
    assert!(!t.ns.durable_commit_in_flight());
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    let (_, seq) =
        t.ns.apply_unsynced(
            NsCommand::Create {
                parent: d.ino,
                name: "f".into(),
                mode: 0o644,
                umask: 0,
                uid: 1,
                gid: 2,
                exclusive: true,
                now: ts(11),
            },
            None,
        )
        .unwrap();
    // A commit that does not wait for the disk is not one.
    assert!(!t.ns.durable_commit_in_flight());
    let writer = t.ns.group.durable_writer();
    assert!(t.ns.durable_commit_in_flight());
    drop(writer);
    t.ns.sync_through(seq).unwrap();
    assert!(!t.ns.durable_commit_in_flight());
}
