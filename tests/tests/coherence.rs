//! Cache coherence between two mounts of one server (separate cache dirs): a change written
//! and closed on mount A is seen on mount B, which had the old version cached, within 1 s of
//! A's close returning and without a remount (callbacks + kernel cache invalidation).

use dfs_tests::{
    free_port, list, lookup_path, lstat, mkdir, read, remove_file, write, Mount, Server,
};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

struct Two {
    a: Mount,
    b: Mount,
    _server: Server,
    _tmp: tempfile::TempDir,
}

fn two_mounts() -> Two {
    two_mounts_with(&[])
}

/// Two mounts whose FUSE adapters use `extra` options (e.g. `--no-passthrough`).
fn two_mounts_with(extra: &[&str]) -> Two {
    let tmp = tempfile::TempDir::new().unwrap();
    let server = Server::start(&tmp.path().join("data"), free_port(), &[]);
    let a = Mount::start(
        &server.addr(),
        &tmp.path().join("mnt-a"),
        &tmp.path().join("cache-a"),
        extra,
    );
    let b = Mount::start(
        &server.addr(),
        &tmp.path().join("mnt-b"),
        &tmp.path().join("cache-b"),
        extra,
    );
    Two {
        a,
        b,
        _server: server,
        _tmp: tmp,
    }
}

/// Reopens and reads `path` until it holds `want`; panics if that takes longer than
/// `VISIBLE_WITHIN` from `since`.
fn expect_contents_soon(path: &Path, want: &[u8], since: Instant, what: &str) {
    loop {
        let got = read(path);
        if let Ok(bytes) = &got {
            if bytes == want {
                eprintln!("{what}: visible after {:?}", since.elapsed());
                return;
            }
        }
        if since.elapsed() > VISIBLE_WITHIN {
            panic!(
                "{what}: {} still shows {:?} {:?} after A's close returned; want {:?}",
                path.display(),
                since.elapsed(),
                got.map(|b| String::from_utf8_lossy(&b).into_owned()),
                String::from_utf8_lossy(want)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn change_closed_on_a_is_seen_on_b_that_had_it_cached() {
    let t = two_mounts();
    let fa = t.a.join("shared.txt");
    let fb = t.b.join("shared.txt");

    write(&fa, b"version one\n").expect("write v1 on A");
    let since = Instant::now();
    // B has never seen the file: it must find it (no stale negative entry) and read v1.
    expect_contents_soon(&fb, b"version one\n", since, "new file from A on B");
    // B now has v1 cached; read it once more so it is served from B's cache.
    assert_eq!(read(&fb).unwrap(), b"version one\n");

    // Same length, different bytes: only a real invalidation shows it.
    write(&fa, b"version TWO\n").expect("write v2 on A");
    let since = Instant::now();
    expect_contents_soon(&fb, b"version TWO\n", since, "same-size change");

    // Different length.
    let v3 = b"version three is longer than the others\n".repeat(100);
    write(&fa, &v3).expect("write v3 on A");
    let since = Instant::now();
    expect_contents_soon(&fb, &v3, since, "size change");

    // And back the other way: B writes, A (which has it cached) sees it.
    write(&fb, b"from B\n").expect("write on B");
    let since = Instant::now();
    expect_contents_soon(&fa, b"from B\n", since, "change from B on A");
}

#[test]
fn new_file_created_on_a_appears_in_ls_on_b() {
    let t = two_mounts();
    mkdir(t.a.join("dir")).expect("mkdir on A");
    write(t.a.join("dir/first"), b"1").unwrap();

    // B lists the directory once (now cached) ...
    let deadline = Instant::now() + VISIBLE_WITHIN;
    loop {
        let names = list(t.b.join("dir"));
        if names.as_ref().is_ok_and(|n| n == &["first"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B lists {names:?} for dir, want [first]"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // ... then A adds an entry, which B's `ls` must show without a remount.
    write(t.a.join("dir/second"), b"2").unwrap();
    let since = Instant::now();
    loop {
        let names = list(t.b.join("dir")).expect("ls on B");
        if names == ["first", "second"] {
            eprintln!("new entry visible on B after {:?}", since.elapsed());
            break;
        }
        assert!(
            since.elapsed() <= VISIBLE_WITHIN,
            "B still lists {names:?} {:?} after A created dir/second",
            since.elapsed()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read(t.b.join("dir/second")).unwrap(), b"2");

    // A removal is a directory change too.
    remove_file(t.a.join("dir/first")).expect("rm on A");
    let since = Instant::now();
    loop {
        let names = list(t.b.join("dir")).expect("ls on B");
        let gone = lstat(t.b.join("dir/first")).is_err();
        if names == ["second"] && gone {
            break;
        }
        assert!(
            since.elapsed() <= VISIBLE_WITHIN,
            "B still lists {names:?} (dir/first exists: {}) {:?} after A removed dir/first",
            !gone,
            since.elapsed()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// With plain read handlers (no passthrough) small files are read from an in-memory copy;
/// it must never outlive the version it holds, on the other mount or on this one.
#[test]
fn plain_handlers_serve_small_files_from_memory_without_going_stale() {
    let t = two_mounts_with(&["--no-passthrough"]);
    let (fa, fb) = (t.a.path().join("small"), t.b.path().join("small"));
    write(&fa, b"version one").unwrap();
    for _ in 0..3 {
        assert_eq!(read(&fb).unwrap(), b"version one");
    }
    write(&fa, b"version two, longer").unwrap();
    expect_contents_soon(&fb, b"version two, longer", Instant::now(), "other mount");
    // The same mount rewrites it while the old version sits in memory.
    write(&fb, b"three").unwrap();
    assert_eq!(read(&fb).unwrap(), b"three");
    expect_contents_soon(&fa, b"three", Instant::now(), "back on A");
}

/// Bytes a process has written with write(2)-like calls (`wchar` of /proc/PID/io): for a
/// dfs-mount, chiefly its answers to the kernel.
fn written_by(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar in /proc/PID/io")
}

/// Whether process `pid` has a descriptor open on a file under `dir`.
fn holds_file_under(pid: u32, dir: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target.starts_with(dir))
}

/// With plain handlers the kernel keeps the pages of a file it read, and reopening the
/// unchanged file (after its handle, and the client's state for it, are gone) must let it
/// keep them: the second read sends nothing through the daemon. A change from the other
/// mount must still be seen.
#[test]
fn plain_handlers_let_the_kernel_keep_pages_of_an_unchanged_file() {
    let t = two_mounts_with(&["--no-passthrough"]);
    let (fa, fb) = (t.a.path().join("one-mib"), t.b.path().join("one-mib"));
    let data = dfs_tests::pseudo_random(1 << 20, 3);
    write(&fa, &data).unwrap();
    assert!(read(&fb).unwrap() == data, "first read on B");
    // B's daemon gets RELEASE after close(2) returns; once it has closed its copy, the
    // file's client state is gone too, which is the case under test.
    let cache_files = t.b.cache_dir().join("files");
    let deadline = Instant::now() + VISIBLE_WITHIN;
    while holds_file_under(t.b.pid(), &cache_files) {
        assert!(
            Instant::now() < deadline,
            "B's daemon still holds its copy open {VISIBLE_WITHIN:?} after the read"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let before = written_by(t.b.pid());
    assert!(read(&fb).unwrap() == data, "second read on B");
    let sent = written_by(t.b.pid()) - before;
    assert!(
        sent < 64 << 10,
        "the second read of an unchanged 1 MiB file made the daemon send {sent} bytes"
    );
    let changed = dfs_tests::pseudo_random(1 << 20, 4);
    write(&fa, &changed).unwrap();
    expect_contents_soon(&fb, &changed, Instant::now(), "changed on A, read on B");
}

/// `for …; do echo; done >> f`: bash opens f, dup2s it onto stdout and closes the original
/// descriptor (a flush before any write), then writes through the duplicate. The final
/// close must still store what was written — under passthrough those writes never reach
/// the daemon, so the early flush must not settle the file as unchanged. (The `>` form
/// truncates, which marks the file changed anyway; `>>` lost its lines before the fix.)
#[test]
fn shell_loop_redirect_is_stored_at_close() {
    let t = two_mounts();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(
            "for i in 1 2 3; do echo line$i; done > loop.txt\n\
             for i in 4 5; do echo line$i; done >> loop.txt",
        )
        .current_dir(t.a.path())
        .status()
        .unwrap();
    assert!(out.success());
    expect_contents_soon(
        &t.b.path().join("loop.txt"),
        b"line1\nline2\nline3\nline4\nline5\n",
        Instant::now(),
        "loop output on the other mount",
    );
}

/// The answers to mkdir, unlink and rmdir carry the directory's new attributes, and the
/// mount that made the change serves them without asking again. They must be the
/// server's attributes after the change: at once on that mount, and within 1 s on the
/// other one (which had the directory's attributes cached).
#[test]
fn directory_attributes_after_mkdir_unlink_and_rmdir_are_the_servers() {
    let t = two_mounts();
    let addr = t._server.addr();
    mkdir(t.a.join("d")).unwrap();
    write(t.a.join("d/f"), b"x").unwrap();
    let seen = |m: &Mount| {
        let st = lstat(m.join("d")).unwrap();
        (
            st.mtime(),
            st.mtime_nsec(),
            st.ctime(),
            st.ctime_nsec(),
            st.nlink(),
        )
    };
    let on_server = || {
        let a = lookup_path(&addr, "d").expect("d on the server");
        (
            a.mtime.secs,
            a.mtime.nanos as i64,
            a.ctime.secs,
            a.ctime.nanos as i64,
            a.nlink as u64,
        )
    };
    let _ = seen(&t.b);
    let steps: [(&str, &dyn Fn()); 3] = [
        ("mkdir d/s", &|| mkdir(t.a.join("d/s")).unwrap()),
        ("rm d/f", &|| remove_file(t.a.join("d/f")).unwrap()),
        ("rmdir d/s", &|| {
            std::fs::remove_dir(t.a.join("d/s")).unwrap()
        }),
    ];
    for (what, step) in steps {
        let before = on_server();
        thread::sleep(Duration::from_millis(20));
        step();
        let want = on_server();
        assert_ne!(before, want, "{what} changed nothing of d on the server");
        assert_eq!(
            seen(&t.a),
            want,
            "after {what}: d's (mtime, ctime, nlink) on the mount that made it"
        );
        let since = Instant::now();
        while seen(&t.b) != want {
            assert!(
                since.elapsed() < VISIBLE_WITHIN,
                "after {what}: d on the other mount is {:?}, the server's {want:?}",
                seen(&t.b)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}
