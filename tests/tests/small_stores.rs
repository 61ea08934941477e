//! The one-fsync path for small files: a store's contents travel in the journal of the
//! namespace's commit, and the create of a file written at once is made durable by that
//! store. Each test crashes the server with kill -9 where that matters: every close that
//! returned 0 must still read back whole, and a close whose create the crash forgot must
//! fail (its copy kept in the cache's lost+found), never pretend.

use dfs_tests::{fetch_path, lookup_path, op, poll, pseudo_random, read, timed, write, Fixture};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// Small files (up to and just past the journal's limit), closed, then the server is
/// killed at once: most of them are still in the journal, with no blob file written.
#[test]
fn small_closes_survive_a_kill9_before_the_checkpoint() {
    let mut fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let sizes = [1usize, 100, 4096, 65_536, 65_537, 200_000];
    let mut written = Vec::new();
    for i in 0..120 {
        let data = pseudo_random(sizes[i % sizes.len()], 500 + i as u64);
        let name = format!("f{i:03}");
        write(m.join(&name), &data).unwrap();
        written.push((name, data));
    }
    fx.server.kill9();
    fx.server.restart();
    let addr = fx.server.addr();
    for (name, data) in &written {
        let got = fetch_path(&addr, name);
        assert!(
            got.as_deref() == Some(&data[..]),
            "{name} ({} bytes) differs or is missing after kill -9 + restart (got {:?} bytes)",
            data.len(),
            got.map(|g| g.len())
        );
    }
    // The restart wrote every journalled blob as a file: nothing is left only in memory.
    let blobs = fx.server.data_dir().join("blobs");
    let mut files = 0;
    for dir in std::fs::read_dir(&blobs).unwrap() {
        let dir = dir.unwrap().path();
        if dir.file_name().is_some_and(|n| n != "tmp" && n != "spare") && dir.is_dir() {
            files += std::fs::read_dir(&dir).unwrap().count();
        }
    }
    assert_eq!(files, written.len(), "one blob file per distinct file");
    // Overwriting works after the replay too (once the mount has reconnected).
    let rewritten = poll(Duration::from_secs(20), Duration::from_millis(200), || {
        write(m.join("f000"), b"after the restart").ok()
    });
    assert!(
        rewritten.is_some(),
        "overwrite after the restart: {:?}",
        write(m.join("f000"), b"after the restart")
    );
    assert_eq!(read(m.join("f000")).unwrap(), b"after the restart");
}

/// A file created and written but not closed when the server is killed: the create was
/// not durable yet, so the restarted server does not know the file; the close must fail
/// and the written bytes must be kept on the client.
#[test]
fn a_close_whose_create_the_crash_forgot_fails_and_keeps_the_copy() {
    let mut fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    write(m.join("before.txt"), b"durable\n").unwrap();
    let path = CString::new(m.join("new.txt").as_os_str().as_bytes()).unwrap();
    let fd = op("create", move || {
        // SAFETY: open(2) with a valid C string.
        unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o644,
            )
        }
    });
    assert!(fd >= 0, "create: {}", std::io::Error::last_os_error());
    let data = b"written into a file whose create was never made durable\n";
    let n = op("write", move || {
        // SAFETY: write(2) from a live buffer to the fd we opened.
        unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
    });
    assert_eq!(n, data.len() as isize);

    fx.server.kill9();
    fx.server.restart();
    assert!(
        lookup_path(&fx.server.addr(), "new.txt").is_none(),
        "the restarted server still knows new.txt: this test needs its create to be lost"
    );
    let (ret, err) = timed("close", Duration::from_secs(90), move || {
        // SAFETY: close(2) of the fd we opened; it is not used afterwards.
        let r = unsafe { libc::close(fd) };
        (r, std::io::Error::last_os_error())
    });
    assert_eq!(ret, -1, "close() must fail when the server lost the file");
    eprintln!("close failed as it should: {err}");
    let kept = fx.tmp.path().join("cache/lost+found");
    let copies: Vec<Vec<u8>> = std::fs::read_dir(&kept)
        .map(|d| {
            d.map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        copies.iter().any(|c| c == data),
        "the written bytes are not in {}: {copies:?}",
        kept.display()
    );
    // What was closed before the crash is there; a new create works.
    assert_eq!(
        fetch_path(&fx.server.addr(), "before.txt").as_deref(),
        Some(&b"durable\n"[..])
    );
    write(m.join("again.txt"), b"after\n").unwrap();
    assert_eq!(
        fetch_path(&fx.server.addr(), "again.txt").as_deref(),
        Some(&b"after\n"[..])
    );
}

/// `tar -x` creates a file, writes it, chmods it and closes it. The chmod travels with
/// the store at close instead of in a request of its own: the mount shows it at once,
/// the server has it from the close on (durably: it survives a kill -9 right after), and
/// before the close the server still has the create's mode. A chmod during a
/// write-behind upload (which began before it) is sent after the upload instead.
#[test]
fn a_chmod_before_the_first_close_travels_with_the_store() {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let addr = fx.server.addr();
    let mode_on_server = |name: &str| lookup_path(&addr, name).map(|a| a.mode & 0o7777);
    // As tar creates a file: exclusively, mode 0600, then its contents (still open).
    let created = |name: &str, data: &[u8]| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(m.join(name))
            .unwrap();
        std::io::Write::write_all(&mut f, data).unwrap();
        f
    };

    let f = created("small", b"extracted");
    f.set_permissions(std::fs::Permissions::from_mode(0o640))
        .unwrap();
    let shown = f.metadata().unwrap().permissions().mode() & 0o7777;
    assert_eq!(shown, 0o640, "the mount shows the chmod before the close");
    assert_eq!(
        mode_on_server("small"),
        Some(0o600),
        "sent before the close"
    );
    drop(f);
    assert_eq!(mode_on_server("small"), Some(0o640));

    // Larger than the point where write-behind starts: the upload began before the chmod.
    let data = pseudo_random(12 << 20, 77);
    let f = created("large", &data);
    f.set_permissions(std::fs::Permissions::from_mode(0o604))
        .unwrap();
    drop(f);
    assert_eq!(mode_on_server("large"), Some(0o604));

    fx.server.kill9();
    fx.server.restart();
    let addr = fx.server.addr();
    for (name, mode) in [("small", 0o640), ("large", 0o604)] {
        let got = lookup_path(&addr, name).map(|a| a.mode & 0o7777);
        assert_eq!(got, Some(mode), "{name} after kill -9");
    }
    assert_eq!(fetch_path(&addr, "large").as_deref(), Some(&data[..]));
}
