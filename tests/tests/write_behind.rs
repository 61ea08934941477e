//! Write-behind: a file written from its start and in order reaches the server while it
//! is still being written, and what the server ends up with is always exactly the copy
//! at the store, also when the writer went back and changed bytes already sent (the
//! upload is then abandoned and the file stored whole). Each file is checked through a
//! second mount with an empty cache, so it really comes from the server. And a write that
//! must wait for a store of its file (the server frozen) leaves the rest of the mount
//! answering: the mount serves its requests from one thread.

use dfs_tests::{pseudo_random, sha256, sha256_file, Fixture, Mount};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const WAIT: Duration = Duration::from_secs(60);

/// The largest temp blob the server is receiving into, in bytes.
fn largest_temp_blob(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir.join("blobs").join("tmp"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Waits until the server has received at least `bytes` of a store still under way.
fn wait_for_upload(fx: &Fixture, bytes: u64) {
    let deadline = Instant::now() + WAIT;
    while largest_temp_blob(fx.server.data_dir()) < bytes {
        assert!(
            Instant::now() < deadline,
            "the server received no {bytes} bytes of the file while it was written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `data` at the start of a new file `path`, in pieces of 1 MiB.
fn write_in_order(file: &mut File, data: &[u8]) {
    for piece in data.chunks(MIB) {
        file.write_all(piece).expect("write");
    }
}

/// The SHA-256 and mtime of `name` as a mount with an empty cache reads it from the
/// server.
fn on_server(fx: &Fixture, name: &str, tag: &str) -> (String, std::time::SystemTime) {
    let fresh = Mount::start(
        &fx.server.addr(),
        &fx.tmp.path().join(format!("mnt-{tag}")),
        &fx.tmp.path().join(format!("cache-{tag}")),
        &[],
    );
    let path = fresh.join(name);
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    (sha256_file(&path).expect("read on a fresh mount"), mtime)
}

#[test]
fn a_file_written_in_order_reaches_the_server_before_its_close() {
    let fx = Fixture::new();
    let data = pseudo_random(24 * MIB, 11);
    let mut file = File::create(fx.mnt().join("big")).expect("create");
    write_in_order(&mut file, &data[..16 * MIB]);
    // Still open and not fsynced: the server must already be receiving it.
    wait_for_upload(&fx, 8 * MIB as u64);
    write_in_order(&mut file, &data[16 * MIB..]);
    let written_at = file.metadata().unwrap().modified().unwrap();
    file.sync_all().expect("fsync stores the file");
    drop(file);
    let (sha, mtime) = on_server(&fx, "big", "a");
    assert_eq!(sha, sha256(&data));
    // The file keeps the time of its last write, not that of its store.
    assert_eq!(mtime, written_at, "mtime of the stored file");
}

/// `dd of=f` and a shell's `cmd > f` open the file, duplicate the descriptor and close
/// the first one before writing: that close flushes (and stores) the empty file. The
/// writes that follow must still be written behind, and so must those after an fsync.
#[test]
fn writes_after_a_flush_of_the_same_file_still_write_behind() {
    let fx = Fixture::new();
    let data = pseudo_random(40 * MIB, 16);
    let first = File::create(fx.mnt().join("redirected")).expect("create");
    let mut file = first.try_clone().expect("dup");
    drop(first);
    write_in_order(&mut file, &data[..16 * MIB]);
    wait_for_upload(&fx, 8 * MIB as u64);
    write_in_order(&mut file, &data[16 * MIB..20 * MIB]);
    file.sync_all().expect("fsync");
    assert_eq!(
        largest_temp_blob(fx.server.data_dir()),
        0,
        "upload left over"
    );
    // After the fsync's store, the next writes start a new upload of the whole copy.
    write_in_order(&mut file, &data[20 * MIB..36 * MIB]);
    wait_for_upload(&fx, 28 * MIB as u64);
    write_in_order(&mut file, &data[36 * MIB..]);
    drop(file);
    assert_eq!(on_server(&fx, "redirected", "r").0, sha256(&data));
}

#[test]
fn bytes_changed_after_they_were_sent_are_stored_as_changed() {
    let fx = Fixture::new();
    let mut expected = pseudo_random(20 * MIB, 12);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(fx.mnt().join("rewritten"))
        .expect("create");
    write_in_order(&mut file, &expected[..16 * MIB]);
    wait_for_upload(&fx, 8 * MIB as u64);
    // Go back over bytes the server has already received, then carry on at the end.
    let patch = pseudo_random(MIB, 13);
    file.write_all_at(&patch, MIB as u64).expect("rewrite");
    expected[MIB..2 * MIB].copy_from_slice(&patch);
    write_in_order(&mut file, &expected[16 * MIB..]);
    drop(file);
    assert_eq!(on_server(&fx, "rewritten", "b").0, sha256(&expected));

    // Cut short after the upload began: the store has the shorter file, then the rest.
    let mut file = File::create(fx.mnt().join("cut")).expect("create");
    let data = pseudo_random(16 * MIB, 14);
    write_in_order(&mut file, &data);
    wait_for_upload(&fx, 8 * MIB as u64);
    file.set_len(10 * MIB as u64).expect("truncate");
    file.write_all_at(&data[..MIB], 10 * MIB as u64)
        .expect("write after truncate");
    drop(file);
    let mut expected = data[..10 * MIB].to_vec();
    expected.extend_from_slice(&data[..MIB]);
    assert_eq!(on_server(&fx, "cut", "c").0, sha256(&expected));

    // The abandoned uploads left nothing behind on the server.
    let deadline = Instant::now() + WAIT;
    while largest_temp_blob(fx.server.data_dir()) > 0 {
        assert!(
            Instant::now() < deadline,
            "abandoned uploads left temp blobs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Bytes waiting unread in the receive queues of TCP connections to local port `port`
/// (from /proc/net/tcp: `local_address` is `IP:PORT`, `tx_queue:rx_queue`, all hex).
fn unread_by_server(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let rx_queue = fields.get(4)?.rsplit(':').next()?;
            (u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| u64::from_str_radix(rx_queue, 16).ok())
                .flatten()
        })
        .sum()
}

/// Sends SIGCONT to a process on drop, so a failing test never leaves a server frozen.
struct ContOnDrop(u32);

impl Drop for ContOnDrop {
    fn drop(&mut self) {
        dfs_tests::signal(self.0, libc::SIGCONT);
    }
}

#[test]
fn a_write_waiting_for_a_stuck_store_does_not_stall_the_mount() {
    let fx = Fixture::new();
    let other = fx.mnt().join("other");
    std::fs::write(&other, b"cached").expect("write another file");
    assert_eq!(std::fs::read(&other).unwrap(), b"cached");
    let path = fx.mnt().join("stuck");
    let file = Arc::new(File::create(&path).expect("create"));
    file.write_all_at(&pseudo_random(MIB, 15), 0)
        .expect("write");
    let second = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("second open");

    // Freeze the server, then close the second descriptor: its store holds the file's
    // gate while it waits. (Not fsync: the kernel holds the inode's lock through an
    // fsync, so no write of the file would even reach the daemon meanwhile.)
    let pid = fx.server.pid();
    dfs_tests::signal(pid, libc::SIGSTOP);
    let _thaw = ContOnDrop(pid);
    let closer = std::thread::spawn(move || drop(second));
    // The store takes the gate before it sends: once the frozen server's socket holds
    // bytes it has not read, the gate is held.
    let deadline = Instant::now() + WAIT;
    while unread_by_server(fx.server.port()) == 0 {
        assert!(Instant::now() < deadline, "the close never started a store");
        std::thread::sleep(Duration::from_millis(5));
    }
    let writer = {
        let file = file.clone();
        std::thread::spawn(move || file.write_all_at(b"late", MIB as u64))
    };
    // The write waits for the store; the rest of the mount must not.
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = other.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(&probe));
    });
    let read = rx.recv_timeout(Duration::from_secs(10));
    dfs_tests::signal(pid, libc::SIGCONT);
    assert_eq!(
        read.expect("a cached file could not be read while a write waited for a store")
            .expect("read of the cached file"),
        b"cached"
    );
    closer.join().unwrap();
    writer
        .join()
        .unwrap()
        .expect("the write once the store is done");
    file.sync_all().expect("fsync once the server is back");
}
