//! Open files keep POSIX semantics on a mount (issue #20 items 2, 6, 7):
//! - a descriptor opened before its file was unlinked or replaced, on this mount or on
//!   another, reads the old contents whole, `fstat` shows no links, and the cached copy is
//!   gone after the last close;
//! - a dirty copy whose cache file disappears under the mount is stored from the
//!   descriptor that still holds it: close never succeeds while dropping the data;
//! - truncate(2) by path right after a close, ctime of ftruncate and posix_fallocate, and
//!   set-id bits cleared by writes, truncates and chown as Linux clears them.

use dfs_tests::{
    fetch_path, lookup_path, pseudo_random, seen_within, sh_ok, sh_timeout, timed, truncate,
    Fixture, Pair,
};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Reads all of `f` from its start, bounded.
fn read_all(f: &fs::File) -> Vec<u8> {
    let f = f.try_clone().unwrap();
    timed(
        "read through a descriptor",
        Duration::from_secs(30),
        move || {
            let mut f = f;
            let mut out = Vec::new();
            f.seek(SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut out).unwrap();
            out
        },
    )
}

/// Names of the copies in a mount's cache.
fn cached_copies(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(cache.join("files"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether the cache holds a copy of inode `ino` (files are named `<ino>.<version>`).
fn holds_copy_of(cache: &Path, ino: u64) -> bool {
    cached_copies(cache)
        .iter()
        .any(|n| n.split('.').next() == Some(&ino.to_string()))
}

#[test]
fn a_descriptor_keeps_its_file_when_another_mount_replaces_or_unlinks_it() {
    let t = Pair::new();
    let old = pseudo_random(300 << 10, 1);
    fs::write(t.a.join("r"), &old).unwrap();
    fs::write(t.a.join("u"), b"unlinked while open\n").unwrap();
    fs::write(t.a.join("other"), b"the replacement\n").unwrap();
    let r = fs::File::open(t.b.join("r")).unwrap();
    let u = fs::File::open(t.b.join("u")).unwrap();
    let (r_ino, u_ino) = (r.metadata().unwrap().ino(), u.metadata().unwrap().ino());
    let mut first = [0u8; 10];
    r.read_exact_at(&mut first, 0).unwrap();

    fs::rename(t.a.join("other"), t.a.join("r")).unwrap();
    fs::remove_file(t.a.join("u")).unwrap();
    // B's names follow at once (the coherence matrix tests that in full).
    let since = Instant::now();
    seen_within(since, Duration::from_secs(1), &true, || {
        fs::read(t.b.join("r")).ok().as_deref() == Some(&b"the replacement\n"[..])
            && fs::metadata(t.b.join("u")).is_err()
    })
    .unwrap();

    // The descriptors opened before still read their files, whole, with no links.
    assert!(
        read_all(&r) == old,
        "the replaced file through its old descriptor"
    );
    assert_eq!(read_all(&u), b"unlinked while open\n");
    for (f, what) in [(&r, "replaced"), (&u, "unlinked")] {
        let st = timed("fstat", Duration::from_secs(30), {
            let f = f.try_clone().unwrap();
            move || f.metadata()
        })
        .unwrap_or_else(|e| panic!("fstat of the {what} file's descriptor: {e}"));
        assert_eq!(st.nlink(), 0, "links of the {what} file");
    }
    drop((r, u));
    // After the last close their copies leave B's cache.
    seen_within(Instant::now(), Duration::from_secs(5), &false, || {
        holds_copy_of(t.b.cache_dir(), r_ino) || holds_copy_of(t.b.cache_dir(), u_ino)
    })
    .unwrap_or_else(|e| {
        panic!(
            "copies in B's cache {:?}: {e}",
            cached_copies(t.b.cache_dir())
        )
    });
}

#[test]
fn a_file_unlinked_on_its_own_mount_lives_on_in_its_descriptor() {
    let fx = Fixture::new();
    let p = fx.mnt().join("scratch");
    fs::write(&p, b"0123456789").unwrap();
    let mut f = fs::File::options().read(true).write(true).open(&p).unwrap();
    let ino = f.metadata().unwrap().ino();
    fs::remove_file(&p).unwrap();
    let st = f.metadata().unwrap();
    assert_eq!((st.nlink(), st.size()), (0, 10), "fstat after unlink");
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"-more").unwrap();
    assert_eq!(read_all(&f), b"0123456789-more");
    assert_eq!(f.metadata().unwrap().size(), 15);
    timed("close", Duration::from_secs(30), move || drop(f));
    assert!(fs::metadata(&p).is_err());
    assert!(lookup_path(&fx.server.addr(), "scratch").is_none());
    seen_within(Instant::now(), Duration::from_secs(5), &false, || {
        holds_copy_of(&fx.tmp.path().join("cache"), ino)
    })
    .unwrap();
}

/// The cache file of a dirty copy is deleted under the mount (by hand, a disk repair)
/// while the file is open for writing: the close stores every byte written, from the
/// descriptor the mount still holds, and the next open reads them.
#[test]
fn a_dirty_copy_deleted_from_the_cache_is_stored_from_its_descriptor() {
    let t = Pair::new();
    let p = t.a.join("precious");
    let mut f = fs::File::create(&p).unwrap();
    f.write_all(b"first part\n").unwrap();
    let ino = f.metadata().unwrap().ino();
    let cache = t.a.cache_dir().join("files");
    let copies: Vec<_> = cached_copies(t.a.cache_dir())
        .into_iter()
        .filter(|n| n.starts_with(&format!("{ino}.")))
        .collect();
    assert!(!copies.is_empty(), "no cache copy of inode {ino}");
    for c in &copies {
        fs::remove_file(cache.join(c)).unwrap();
    }
    f.write_all(b"second part\n").unwrap();
    let closed = timed("close", Duration::from_secs(30), move || {
        let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
        // SAFETY: closing a descriptor we own, once.
        match unsafe { libc::close(fd) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    });
    let want = b"first part\nsecond part\n";
    match closed {
        Ok(()) => {
            assert_eq!(
                fetch_path(&t.server.addr(), "precious").as_deref(),
                Some(&want[..]),
                "close succeeded: the server must hold every byte"
            );
            assert_eq!(fs::read(t.b.join("precious")).unwrap(), want);
            assert_eq!(fs::read(&p).unwrap(), want);
        }
        Err(e) => panic!("close failed ({e}) although the descriptor held the data"),
    }
}

#[test]
fn truncate_right_after_close_ctime_of_open_files_and_set_id_bits() {
    let fx = Fixture::new();
    let m = fx.mnt();
    // truncate(2) by path within moments of the close that stored the file (its small
    // blob still in the server's memory): 40 fresh files, growing and shrinking.
    for i in 0..40u64 {
        let p = m.join(format!("t{i}"));
        fs::write(&p, b"0123456789").unwrap();
        let len = if i % 2 == 0 { 3 } else { 12_345 };
        truncate(&p, len).unwrap_or_else(|e| panic!("truncate #{i} right after close: {e}"));
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len() as u64, len);
        assert_eq!(&got[..3], b"012");
    }

    // ctime changes with ftruncate and posix_fallocate on an open file.
    let p = m.join("c");
    fs::write(&p, b"x").unwrap();
    let f = fs::File::options().write(true).open(&p).unwrap();
    let ctime = |f: &fs::File| {
        let m = f.metadata().unwrap();
        (m.ctime(), m.ctime_nsec())
    };
    let before = ctime(&f);
    std::thread::sleep(Duration::from_millis(20));
    f.set_len(123).unwrap();
    let after_truncate = ctime(&f);
    assert!(
        after_truncate > before,
        "ftruncate left ctime at {before:?}"
    );
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: a valid descriptor.
    let rc = unsafe { libc::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 20_000) };
    assert_eq!(rc, 0, "posix_fallocate");
    assert!(
        ctime(&f) > after_truncate,
        "posix_fallocate left ctime unchanged"
    );
    assert_eq!(f.metadata().unwrap().size(), 20_000);
    drop(f);

    // Set-id bits: a write by another user clears S_ISUID (and S_ISGID with group
    // execute); so does a truncate by another user, and a chown.
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    let run_as = |uid: u32, script: &str| {
        let out = sh_timeout(
            m,
            &format!("setpriv --reuid {uid} --regid {uid} --clear-groups bash -c '{script}'"),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    fs::write(m.join("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(m.join("suid"), fs::Permissions::from_mode(0o6777)).unwrap();
    run_as(1234, "echo appended >> suid");
    assert_eq!(mode(&m.join("suid")), 0o0777, "after another user's write");
    fs::write(m.join("sgid"), b"x").unwrap();
    fs::set_permissions(m.join("sgid"), fs::Permissions::from_mode(0o2767)).unwrap();
    run_as(1234, "truncate -s 1 sgid");
    assert_eq!(
        mode(&m.join("sgid")),
        0o2767,
        "S_ISGID without group execute is a lock mark: kept"
    );
    fs::set_permissions(m.join("sgid"), fs::Permissions::from_mode(0o2777)).unwrap();
    run_as(1234, "truncate -s 0 sgid");
    assert_eq!(
        mode(&m.join("sgid")),
        0o0777,
        "after another user's truncate"
    );
    fs::write(m.join("owned"), b"x").unwrap();
    fs::set_permissions(m.join("owned"), fs::Permissions::from_mode(0o4755)).unwrap();
    sh_ok(m, "chown 1234 owned");
    assert_eq!(mode(&m.join("owned")), 0o0755, "after chown");
}
