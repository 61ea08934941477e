//! Crashes and outages: a close that returned survives a server kill -9; the mount
//! reconnects to a restarted server by itself; a close while the server is down fails, and
//! the dirty copy reaches the server once it is back; a killed client's stale mount is
//! cleared by the next client; SIGTERM unmounts and stops both binaries cleanly.

use dfs_tests::{
    fetch_path, is_mounted, lookup_path, metadata, mkdir, mounts_at, op, poll, pseudo_random, read,
    timed, write, Fixture, Mount,
};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

const RECONNECT: Duration = Duration::from_secs(20);
const PENDING_STORE: Duration = Duration::from_secs(30);

#[test]
fn server_kill9_after_close_keeps_data_and_mount_reconnects() {
    let mut fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let big = pseudo_random(4 << 20, 11);
    mkdir(m.join("d")).unwrap();
    write(m.join("d/small.txt"), b"written before the crash\n").unwrap();
    write(m.join("big.bin"), &big).unwrap();
    // Closes returned: crash the server at once.
    fx.server.kill9();
    fx.server.restart();
    let addr = fx.server.addr();

    assert_eq!(
        fetch_path(&addr, "d/small.txt").as_deref(),
        Some(&b"written before the crash\n"[..]),
        "small file after server kill -9 + restart"
    );
    assert!(
        fetch_path(&addr, "big.bin").as_deref() == Some(&big[..]),
        "4 MiB file differs or is missing after server kill -9 + restart"
    );

    // The mount reconnects by itself: reads and new writes work again (bounded retry).
    let t = Instant::now();
    let r = poll(RECONNECT, Duration::from_millis(200), || {
        read(m.join("d/small.txt"))
            .ok()
            .filter(|b| b == b"written before the crash\n")
    });
    assert!(
        r.is_some(),
        "read on the mount failed for {RECONNECT:?} after the restart"
    );
    let w = poll(RECONNECT, Duration::from_millis(200), || {
        write(m.join("d/after.txt"), b"written after the restart\n").ok()
    });
    assert!(
        w.is_some(),
        "write+close on the mount failed for {RECONNECT:?} after the restart: {:?}",
        write(m.join("d/after.txt"), b"written after the restart\n")
    );
    eprintln!("mount working again {:?} after the restart", t.elapsed());
    assert_eq!(
        fetch_path(&addr, "d/after.txt").as_deref(),
        Some(&b"written after the restart\n"[..]),
        "a file written after the restart reached the server"
    );
    let listing = dfs_tests::list(m.join("d")).unwrap();
    assert_eq!(listing, ["after.txt", "small.txt"]);
}

#[test]
fn close_while_server_down_fails_and_data_is_stored_later() {
    let mut fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    write(m.join("p.txt"), b"version 1\n").unwrap();
    let new = b"version 2, written while the server went down\n";

    let path = CString::new(m.join("p.txt").as_os_str().as_bytes()).unwrap();
    let fd = op("open for write", move || {
        // SAFETY: open(2) with a valid C string.
        unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_TRUNC) }
    });
    assert!(
        fd >= 0,
        "open p.txt for write: {}",
        std::io::Error::last_os_error()
    );
    let n = op("write", move || {
        // SAFETY: write(2) from a live buffer to the fd we opened.
        unsafe { libc::write(fd, new.as_ptr().cast(), new.len()) }
    });
    assert_eq!(n, new.len() as isize, "write to the open fd");

    fx.server.kill9();
    let t = Instant::now();
    let (ret, errno) = timed(
        "close while server down",
        Duration::from_secs(90),
        move || {
            // SAFETY: close(2) of the fd we opened; it is not used afterwards.
            let r = unsafe { libc::close(fd) };
            (r, std::io::Error::last_os_error())
        },
    );
    eprintln!(
        "close with the server down returned {ret} ({errno}) after {:?}",
        t.elapsed()
    );
    assert_eq!(
        ret, -1,
        "close() of a written file must fail while the server is down"
    );

    fx.server.restart();
    let addr = fx.server.addr();
    let t = Instant::now();
    let stored = poll(PENDING_STORE, Duration::from_millis(250), || {
        fetch_path(&addr, "p.txt").filter(|b| b == new)
    });
    assert!(
        stored.is_some(),
        "the dirty copy did not reach the server within {PENDING_STORE:?} of its restart; \
         server has {:?}",
        fetch_path(&addr, "p.txt").map(|b| String::from_utf8_lossy(&b).into_owned())
    );
    eprintln!("dirty copy stored {:?} after the restart", t.elapsed());

    // A fresh mount sees it too, and so does the original one.
    let fresh = Mount::start(
        &addr,
        &fx.tmp.path().join("mnt2"),
        &fx.tmp.path().join("cache2"),
        &[],
    );
    assert_eq!(read(fresh.join("p.txt")).unwrap(), new);
    assert_eq!(read(m.join("p.txt")).unwrap(), new);
}

#[test]
fn killed_client_leaves_a_stale_mount_the_next_client_clears() {
    let mut fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    write(m.join("a.txt"), b"before the client crash\n").unwrap();
    fx.mount.kill9();
    assert_eq!(
        metadata(m.join("a.txt")).unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN),
        "a killed client leaves a stale mount (Transport endpoint is not connected)"
    );
    fx.mount.restart();
    assert_eq!(
        mounts_at(&m).len(),
        1,
        "the stale mount was not cleared: {:?}",
        mounts_at(&m)
    );
    assert_eq!(read(m.join("a.txt")).unwrap(), b"before the client crash\n");
    write(m.join("b.txt"), b"after\n").unwrap();
    assert_eq!(
        fetch_path(&fx.server.addr(), "b.txt").as_deref(),
        Some(&b"after\n"[..])
    );
}

#[test]
fn sigterm_unmounts_client_and_stops_server_cleanly() {
    let mut fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    write(m.join("kept.txt"), b"kept\n").unwrap();
    let st = fx.mount.stop();
    assert!(
        st.is_some_and(|s| s.success()),
        "dfs-mount exit after SIGTERM: {st:?}"
    );
    assert!(!is_mounted(&m), "still mounted after SIGTERM");
    let st = fx.server.stop();
    assert!(st.success(), "dfs-server exit after SIGTERM: {st}");
    fx.server.restart();
    assert!(lookup_path(&fx.server.addr(), "kept.txt").is_some());
    assert_eq!(
        fetch_path(&fx.server.addr(), "kept.txt").as_deref(),
        Some(&b"kept\n"[..])
    );
}
