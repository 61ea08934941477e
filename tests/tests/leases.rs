//! A live mount never loses its writers' turn to its own slowness (issue #20, item 8): its
//! lease renewals may come late (a frozen daemon, a store of a large file, many small
//! closes, a busy CPU, a server slowed by fsyncs), but while no other mount wants the file
//! the turn stays its own and every close stores, with nothing in `lost+found`. (That a
//! competitor does take a lapsed turn, and the late writer then fails with ESTALE, is
//! tested in `locks.rs`.)
//!
//! Leases are short here (1-2 s) so that seconds of load are many lease periods.

use dfs_tests::{fetch_path, free_port, hex, list, read, sh_timeout, signal, Agent, Mount, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Bound of an agent step that should not wait for anything.
const STEP: Duration = Duration::from_secs(30);

struct Cell {
    a: Mount,
    server: Server,
    tmp: tempfile::TempDir,
}

fn cell(lease_secs: &str) -> Cell {
    let tmp = tempfile::TempDir::new().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("local")).unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        free_port(),
        &["--lock-lease-secs", lease_secs],
    );
    let a = Mount::start(
        &server.addr(),
        &tmp.path().join("mnt-a"),
        &tmp.path().join("cache-a"),
        &[],
    );
    Cell { a, server, tmp }
}

/// What must hold after the writer closed: no copy set aside, no lost lock in the log.
fn assert_kept_its_turn(a: &Mount) {
    let lf = a.cache_dir().join("lost+found");
    let kept_aside = list(&lf).unwrap_or_default();
    let log = std::fs::read_to_string(a.log_path()).unwrap_or_default();
    let lost: Vec<&str> = log.lines().filter(|l| l.contains("was lost")).collect();
    assert!(
        kept_aside.is_empty() && lost.is_empty(),
        "copies set aside: {kept_aside:?}; lost locks logged: {lost:?}"
    );
}

/// Resumes a stopped process when dropped (also when the test fails).
struct ContOnDrop(u32);

impl Drop for ContOnDrop {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// The daemon is frozen (SIGSTOP) for three 1 s leases while a process writes the file it
/// holds open (passthrough writes do not need the daemon): nobody else wanted the file, so
/// when it is thawed its turn is still its own, its renewal says so, and the close stores.
#[test]
fn a_mount_frozen_past_its_lease_keeps_its_turn_when_nobody_else_wants_the_file() {
    let c = cell("1");
    let f = c.a.join("held");
    let mut w = Agent::spawn("writer", &c.tmp.path().join("local"));
    w.ok(&format!("open w {}", f.display()), STEP);
    w.ok(&format!("write {}", hex(b"before the freeze\n")), STEP);
    let pid = c.a.pid();
    signal(pid, libc::SIGSTOP);
    let cont = ContOnDrop(pid);
    thread::sleep(Duration::from_millis(3500));
    drop(cont);
    // Two renewals after the thaw (a third of the lease apart): the first finds the lapsed
    // turn and takes it back; the old code reported it lost here.
    thread::sleep(Duration::from_millis(1500));
    w.ok(&format!("write {}", hex(b"after the thaw\n")), STEP);
    w.ok("close", STEP);
    drop(w);
    assert_eq!(
        fetch_path(&c.server.addr(), "held").as_deref(),
        Some(&b"before the freeze\nafter the thaw\n"[..]),
        "the server's contents"
    );
    assert_kept_its_turn(&c.a);
}

/// For 20 s (ten 2 s leases) the mount stores 256 MiB files in a loop, creates and closes
/// small files in another, and two processes keep the CPUs busy, while a third process
/// holds a file open for writing and writes to it every 300 ms. No close fails, the held
/// file's close stores everything it wrote, and the mount never loses its turn.
#[test]
fn a_mount_under_its_own_heavy_traffic_keeps_its_writers_turn() {
    let c = cell("2");
    let mnt = c.a.path().to_path_buf();
    std::fs::create_dir_all(mnt.join("small")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let busy = |script: String| {
        let (stop, dir) = (stop.clone(), mnt.clone());
        thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let out = sh_timeout(&dir, &script, Duration::from_secs(120));
                assert!(
                    out.status.success(),
                    "{script}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                rounds += 1;
            }
            rounds
        })
    };
    let big = busy("dd if=/dev/zero of=big bs=1M count=256 conv=fsync status=none".into());
    let small = busy(
        "for i in $(seq 1 200); do echo $i > small/f$i || exit 1; done; rm -f small/f*".into(),
    );
    let burners: Vec<_> = (0..2)
        .map(|_| busy("timeout 2 sh -c 'while :; do :; done' || true".into()))
        .collect();

    let f = mnt.join("held");
    let mut w = Agent::spawn("writer", &c.tmp.path().join("local"));
    w.ok(&format!("open w {}", f.display()), STEP);
    let mut want = Vec::new();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(20) {
        let line = format!("line {n}\n");
        w.ok(&format!("write {}", hex(line.as_bytes())), STEP);
        want.extend_from_slice(line.as_bytes());
        n += 1;
        thread::sleep(Duration::from_millis(300));
    }
    let closed = w.call("close", Duration::from_secs(120));
    stop.store(true, Ordering::SeqCst);
    let rounds = (big.join().unwrap(), small.join().unwrap());
    for b in burners {
        b.join().unwrap();
    }
    eprintln!(
        "{n} writes; 256 MiB stores: {}, small-file rounds: {}",
        rounds.0, rounds.1
    );
    assert_eq!(closed, Ok(String::new()), "the held file's close");
    drop(w);
    assert_eq!(read(&f).unwrap(), want, "the held file through the mount");
    assert_eq!(
        fetch_path(&c.server.addr(), "held").as_deref(),
        Some(&want[..]),
        "the server's contents"
    );
    assert_kept_its_turn(&c.a);
}
