//! A large file read on a mount with an empty cache is readable while its fetch is still
//! filling the cache copy. The server is frozen (SIGSTOP) in the middle of the fetch: a
//! read of bytes already fetched is answered while it is frozen, a read of the last bytes
//! waits for them (it neither fails nor returns anything early), and once the server is
//! thawed the whole file arrives intact; the next open reads the finished copy.

use dfs_tests::{pseudo_random, sha256_file, signal, Fixture, Mount};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SIZE: usize = 256 << 20;
const PIECE: usize = 64 << 10;
/// The fetch must have written this much before the server is frozen.
const FROZEN_AFTER: u64 = 4 << 20;
const WAIT: Duration = Duration::from_secs(60);

/// Sends SIGCONT to a process on drop, so a failing test never leaves a server frozen.
struct ContOnDrop(u32);

impl Drop for ContOnDrop {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// The copy a fetch is filling in the cache directory `cache`, if one is under way.
fn part_file(cache: &Path) -> Option<(PathBuf, u64)> {
    std::fs::read_dir(cache.join("files"))
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains(".part-"))
        .and_then(|e| Some((e.path(), e.metadata().ok()?.len())))
}

#[test]
fn a_large_file_is_read_while_its_fetch_is_still_filling_it() {
    let fx = Fixture::new();
    let src = fx.local().join("src");
    let data = pseudo_random(SIZE, 7);
    std::fs::write(&src, &data).unwrap();
    std::fs::copy(&src, fx.mnt().join("big")).expect("copy onto the mount");

    let cache = fx.tmp.path().join("cache2");
    let fresh = Mount::start(&fx.server.addr(), &fx.tmp.path().join("mnt2"), &cache, &[]);
    let path = fresh.join("big");

    // The reader: first bytes, then (when told) the last ones, through one descriptor.
    let (first_tx, first_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (last_tx, last_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let file = File::open(&path).expect("open on the fresh mount");
        let mut buf = vec![0u8; PIECE];
        let _ = first_tx.send(file.read_exact_at(&mut buf, 0).map(|()| buf.clone()));
        if go_rx.recv().is_ok() {
            let _ = last_tx.send(
                file.read_exact_at(&mut buf, (SIZE - PIECE) as u64)
                    .map(|()| buf.clone()),
            );
        }
    });

    // Freeze the server once the fetch is well under way.
    let deadline = Instant::now() + WAIT;
    let part_len = loop {
        match part_file(&cache) {
            Some((_, len)) if len >= FROZEN_AFTER => break len,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no fetch into {} got past {FROZEN_AFTER} bytes",
            cache.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let pid = fx.server.pid();
    signal(pid, libc::SIGSTOP);
    let cont = ContOnDrop(pid);
    assert!(
        (part_len as usize) < SIZE,
        "the fetch was complete before the server was frozen"
    );

    let first = first_rx
        .recv_timeout(WAIT)
        .expect("the first bytes were not answered while the server was frozen mid-fetch")
        .expect("read of the first bytes");
    assert!(
        first == data[..PIECE],
        "the first bytes differ from the file's"
    );
    let (_, still) = part_file(&cache).expect("the fetch is still under way");
    assert!(
        (still as usize) < SIZE,
        "the copy completed while the server was frozen"
    );

    // The last bytes are not there yet: the read waits for them.
    go_tx.send(()).unwrap();
    assert!(
        last_rx.recv_timeout(Duration::from_secs(1)).is_err(),
        "a read past what the frozen fetch had written was answered"
    );
    drop(cont);
    let last = last_rx
        .recv_timeout(WAIT)
        .expect("the last bytes never came after the server was thawed")
        .expect("read of the last bytes");
    assert!(
        last == data[SIZE - PIECE..],
        "the last bytes differ from the file's"
    );
    reader.join().unwrap();

    // The finished copy serves the next open, whole and intact.
    assert_eq!(
        sha256_file(&fresh.join("big")).unwrap(),
        sha256_file(&src).unwrap(),
        "the file read on the fresh mount differs from the source"
    );
    assert!(part_file(&cache).is_none(), "a part file was left behind");
}
