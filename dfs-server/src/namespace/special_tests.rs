//! Unit tests of special files (fifos, sockets, device nodes) in the namespace, and of
//! reading inode records that releases before them wrote.

use super::store::INODES;
use super::testkit::*;
use super::*;

const SPECIAL: [FileKind; 4] = [
    FileKind::Fifo,
    FileKind::Socket,
    FileKind::CharDevice,
    FileKind::BlockDevice,
];

#[test]
fn mknod_makes_each_special_kind_with_no_contents_and_lists_it() {
    let t = fresh();
    for (i, kind) in SPECIAL.into_iter().enumerate() {
        let a = t.mknod(ROOT_INO, &format!("n{i}"), kind, 0x0103).unwrap();
        assert_eq!(
            (a.kind, a.mode, a.uid, a.gid, a.nlink, a.size, a.blob),
            (kind, 0o644, 1, 2, 1, 0, None)
        );
        assert_eq!(t.lookup(ROOT_INO, &format!("n{i}")).unwrap(), a);
    }
    let (entries, _) = t.ns.readdir(ROOT_INO, None, 0).unwrap();
    let kinds: Vec<FileKind> = entries.iter().map(|(_, a)| a.kind).collect();
    assert_eq!(kinds, SPECIAL);
    // The parent changed like for any create.
    assert_eq!(t.attr(ROOT_INO).mtime, ts(10));
}

#[test]
fn only_device_nodes_keep_rdev() {
    let t = fresh();
    let dev = |kind, name| t.mknod(ROOT_INO, name, kind, (8 << 8) | 1).unwrap().rdev;
    assert_eq!(dev(FileKind::CharDevice, "c"), (8 << 8) | 1);
    assert_eq!(dev(FileKind::BlockDevice, "b"), (8 << 8) | 1);
    assert_eq!(dev(FileKind::Fifo, "f"), 0);
    assert_eq!(dev(FileKind::Socket, "s"), 0);
}

#[test]
fn mknod_of_a_regular_file_directory_or_symlink_is_invalid_and_makes_nothing() {
    let t = fresh();
    for kind in [FileKind::File, FileKind::Dir, FileKind::Symlink] {
        assert!(matches!(
            t.mknod(ROOT_INO, "x", kind, 0),
            Err(FsError::Invalid(_))
        ));
    }
    assert_eq!(t.lookup(ROOT_INO, "x"), Err(FsError::NotFound));
    t.mknod(ROOT_INO, "x", FileKind::Fifo, 0).unwrap();
    assert_eq!(
        t.mknod(ROOT_INO, "x", FileKind::Fifo, 0),
        Err(FsError::Exists)
    );
    // O_CREAT without O_EXCL on a fifo's name does not make it a file.
    assert_eq!(t.create(ROOT_INO, "x", false), Err(FsError::Exists));
}

#[test]
fn special_files_have_no_contents_to_store_or_resize() {
    let t = fresh();
    let f = t.mknod(ROOT_INO, "p", FileKind::Fifo, 0).unwrap();
    assert!(matches!(t.store(f.ino, 1, 10), Err(FsError::Invalid(_))));
    let resize = t.setattr(f.ino, |e| {
        e.contents = Some(Contents {
            blob: None,
            size: 0,
            base_version: None,
        })
    });
    assert!(matches!(resize, Err(FsError::Invalid(_))));
    assert_eq!(t.attr(f.ino), f, "a refused store changes nothing");
    // Attributes change as on any inode.
    let a = t.setattr(f.ino, |e| e.mode = Some(0o600)).unwrap();
    assert_eq!((a.mode, a.ctime), (0o600, ts(LATER)));
}

#[test]
fn special_files_link_rename_and_unlink_like_files() {
    let t = fresh();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    let s = t.mknod(ROOT_INO, "sock", FileKind::Socket, 0).unwrap();
    let linked = t.link(s.ino, d.ino, "also").unwrap().attr.unwrap();
    assert_eq!((linked.nlink, linked.ctime), (2, ts(40)));
    t.rename(ROOT_INO, "sock", d.ino, "moved", 0).unwrap();
    assert_eq!(t.lookup(d.ino, "moved").unwrap().ino, s.ino);
    // A fifo renamed over the socket's name replaces one of its links.
    let p = t.mknod(d.ino, "pipe", FileKind::Fifo, 0).unwrap();
    t.rename(d.ino, "pipe", d.ino, "moved", 0).unwrap();
    assert_eq!(t.lookup(d.ino, "moved").unwrap().ino, p.ino);
    assert_eq!(t.attr(s.ino).nlink, 1);
    let out = t.unlink(d.ino, "also").unwrap();
    assert!(out.changed_inos.contains(&s.ino));
    assert_eq!(t.ns.getattr(s.ino), Err(FsError::NotFound));
    assert_eq!(t.rmdir(ROOT_INO, "d"), Err(FsError::NotEmpty));
    t.unlink(d.ino, "moved").unwrap();
    t.rmdir(ROOT_INO, "d").unwrap();
}

/// The bytes of a regular file's record as the release before special files wrote it
/// (see `record::tests` for how they are made): ino 5, owner 1000:1000, 3 bytes.
fn old_record(ino: u8) -> Vec<u8> {
    let mut b = vec![
        ino, 0x00, 0xfb, 0xa4, 0x01, 0xfb, 0xe8, 0x03, 0xfb, 0xe8, 0x03, 0x01, 0x03, 0xc8, 0x07,
        0xc8, 0x07, 0xc8, 0x07, 0x02, 0x01,
    ];
    b.extend_from_slice(&[0xab; 32]);
    b.extend_from_slice(&[0x00, 0x00]);
    b
}

#[test]
fn a_database_with_records_of_the_old_layout_still_opens_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let f = {
        let ns = Namespace::open(&path, 0o1777, ts(1)).unwrap();
        let f = ns
            .apply(NsCommand::Create {
                parent: ROOT_INO,
                name: b"old".to_vec(),
                mode: 0o644,
                umask: 0,
                uid: 1000,
                gid: 1000,
                exclusive: true,
                now: ts(2),
            })
            .unwrap()
            .attr
            .unwrap();
        // Overwrite its record with the old layout, as an earlier release left it.
        let txn = ns.db.begin_write().unwrap();
        {
            let mut inodes = txn.open_table(INODES).unwrap();
            let bytes = old_record(f.ino as u8);
            inodes.insert(f.ino, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        f
    };
    let ns = Namespace::open(&path, 0o1777, ts(3)).unwrap();
    let a = ns.lookup(ROOT_INO, b"old").unwrap();
    assert_eq!(
        (a.ino, a.kind, a.mode, a.uid, a.size, a.version, a.rdev),
        (f.ino, FileKind::File, 0o644, 1000, 3, 2, 0)
    );
    // A change rewrites it in the new layout, which reads back too.
    let changed = ns
        .apply(NsCommand::SetAttr {
            ino: f.ino,
            mode: Some(0o600),
            uid: None,
            gid: None,
            atime: None,
            mtime: None,
            contents: None,
            kill_suid: false,
            now: ts(4),
        })
        .unwrap()
        .attr
        .unwrap();
    assert_eq!(ns.getattr(f.ino).unwrap(), changed);
    assert_eq!((changed.mode, changed.size), (0o600, 3));
}
