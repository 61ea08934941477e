//! The lock service seen through real mounts: flock(2) and fcntl(2) locks are cluster-wide
//! (waits, shared/exclusive, F_GETLK naming the holder on another mount, byte ranges); an
//! open for writing takes the writers' turn while readers never wait; a killed or frozen
//! client loses its locks when its lease runs out, and a frozen writer's late store is
//! refused (ESTALE) with its copy kept in the cache's `lost+found`; the `dfs lock`,
//! `unlock` and `locks` commands; locks held across a server kill -9 and restart.
//!
//! Every test has its own server, mounts and temporary directory. Processes that hold
//! files or locks are `Agent`s (python3 driven line by line), so each step is bounded and
//! its errno is exact. Agents are declared after the `Cell` so they are dropped first.

use dfs_tests::{
    dfs_cli, fetch_path, free_port, hex, list, poll, read, sh_timeout, signal, timed, write, Agent,
    Mount, Server,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

/// A short lease, so that lost clients lose their locks quickly.
const LEASE_2S: &[&str] = &["--lock-lease-secs", "2"];
/// Bound of an agent step that should not wait for anything.
const STEP: Duration = Duration::from_secs(10);
/// Bound of an agent step that waits for a lock (the mount's own wait is 30 s).
const WAIT: Duration = Duration::from_secs(40);
/// How soon a change closed on one mount must show on the others.
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);
/// Bound of one `dfs` command or shell script.
const CMD: Duration = Duration::from_secs(60);

/// One server and `n` mounts (`mnt-a`, `mnt-b`, … with caches `cache-a`, …) in a fresh
/// temporary directory, plus `local/`, scratch space off the mounts. The mounts are
/// dropped first, then the server, then the directory.
struct Cell {
    mounts: Vec<Mount>,
    server: Server,
    tmp: tempfile::TempDir,
}

impl Cell {
    fn new(n: usize, server_args: &[&str]) -> Cell {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("local")).expect("local dir");
        let server = Server::start(&tmp.path().join("data"), free_port(), server_args);
        let mut cell = Cell {
            mounts: Vec::new(),
            server,
            tmp,
        };
        for _ in 0..n {
            cell.add_mount();
        }
        cell
    }

    /// Mounts the server once more (next letter); returns its index.
    fn add_mount(&mut self) -> usize {
        let i = self.mounts.len();
        let letter = (b'a' + i as u8) as char;
        let m = Mount::start(
            &self.server.addr(),
            &self.tmp.path().join(format!("mnt-{letter}")),
            &self.tmp.path().join(format!("cache-{letter}")),
            &[],
        );
        self.mounts.push(m);
        i
    }

    fn m(&self, i: usize) -> &Mount {
        &self.mounts[i]
    }

    fn local(&self) -> PathBuf {
        self.tmp.path().join("local")
    }

    fn agent(&self, name: &str) -> Agent {
        Agent::spawn(name, &self.local())
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "{} stdout={:?} stderr={:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// `dfs ARGS…` with paths and words mixed.
fn dfs(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    dfs_cli(&args, CMD)
}

/// Is `e` the errno of a lock refused because someone else holds it?
fn is_conflict(e: &str) -> bool {
    matches!(e, "EAGAIN" | "EWOULDBLOCK" | "EACCES")
}

/// A `date +%s.%N` line as seconds.
fn secs(s: &str) -> f64 {
    s.trim()
        .parse()
        .unwrap_or_else(|e| panic!("not a time stamp {s:?}: {e}"))
}

/// The name other clients see for our locks (`label_for` in dfs-fuse): uid and host.
fn our_label() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // SAFETY: getuid cannot fail.
    format!("uid {}@{}", unsafe { libc::getuid() }, host.trim())
}

/// The client id (`0x…`) of the mount at `m`, from `dfs status`.
fn client_id(m: &Path) -> String {
    let out = dfs(&[&"status", &m]);
    assert!(
        out.status.success(),
        "dfs status {}: {}",
        m.display(),
        describe(&out)
    );
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("client id:").map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no client id in dfs status: {}", describe(&out)))
}

/// The lock lines (header dropped) of `dfs locks PATH`.
fn dfs_locks(path: &Path) -> Vec<String> {
    let out = dfs(&[&"locks", &path]);
    assert!(
        out.status.success(),
        "dfs locks {}: {}",
        path.display(),
        describe(&out)
    );
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.contains("HOLDER"), "dfs locks header: {stdout:?}");
    lines.map(str::to_string).collect()
}

/// Sends SIGCONT to a process on drop, so a failing test never leaves a mount frozen.
struct ContOnDrop(u32);

impl Drop for ContOnDrop {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

// ---------------------------------------------------------------------------------------
// 1. flock and fcntl across mounts
// ---------------------------------------------------------------------------------------

#[test]
fn flock_on_a_second_mount_waits_for_the_first_to_release() {
    let c = Cell::new(2, LEASE_2S);
    write(c.m(0).join("f"), b"x").unwrap();
    let local = c.local();
    let (fa, fb) = (c.m(0).join("f"), c.m(1).join("f"));

    // A holds the lock 1.5 s and writes down when it lets go (just before its exit drops it).
    let holder = {
        let local = local.clone();
        let script = format!(
            "flock -x -w 20 -E 75 {} -c 'date +%s.%N > a_locked; sleep 1.5; date +%s.%N > a_releasing'",
            fa.display()
        );
        thread::spawn(move || sh_timeout(&local, &script, CMD))
    };
    let locked = poll(STEP, Duration::from_millis(10), || {
        local.join("a_locked").exists().then_some(())
    });
    if locked.is_none() {
        let out = holder.join().unwrap();
        panic!("flock on A never took the lock: {}", describe(&out));
    }
    let b = sh_timeout(
        &local,
        &format!(
            "date +%s.%N; flock -x -w 25 -E 75 {} -c 'date +%s.%N'",
            fb.display()
        ),
        CMD,
    );
    let a = holder.join().unwrap();
    assert!(a.status.success(), "flock on A: {}", describe(&a));
    assert!(b.status.success(), "flock on B: {}", describe(&b));
    let a_releasing = secs(&std::fs::read_to_string(local.join("a_releasing")).unwrap());
    let b_out = text(&b.stdout);
    let b_lines: Vec<&str> = b_out.lines().collect();
    assert_eq!(b_lines.len(), 2, "flock on B printed {b_out:?}");
    let (b_asked, b_got) = (secs(b_lines[0]), secs(b_lines[1]));
    eprintln!(
        "B asked {:.3} s before A's release and got the lock {:.3} s after it",
        a_releasing - b_asked,
        b_got - a_releasing
    );
    assert!(
        b_asked < a_releasing,
        "B asked for the lock only after A released it; the test proves nothing"
    );
    assert!(
        b_got >= a_releasing,
        "B got the lock {:.3} s BEFORE A released it: both held it at once",
        a_releasing - b_got
    );
    assert!(
        b_got - a_releasing < 5.0,
        "B got the lock only {:.3} s after A released it",
        b_got - a_releasing
    );
}

#[test]
fn shared_flocks_coexist_and_keep_out_an_exclusive_one() {
    let c = Cell::new(2, LEASE_2S);
    write(c.m(0).join("f"), b"x").unwrap();
    let local = c.local();
    let fb = c.m(1).join("f");
    let flock_b = |opts: &str| -> (Output, Duration) {
        let t = Instant::now();
        let out = sh_timeout(
            &local,
            &format!("flock {opts} -E 75 {} true", fb.display()),
            CMD,
        );
        (out, t.elapsed())
    };

    let mut a = c.agent("A");
    a.ok(&format!("open r {}", c.m(0).join("f").display()), STEP);
    a.ok("flock sh", STEP);

    let (out, took) = flock_b("-s -n");
    assert!(
        out.status.success(),
        "shared flock -n on B while A holds a shared one: {}",
        describe(&out)
    );
    assert!(
        took < Duration::from_secs(5),
        "shared flock on B took {took:?}"
    );

    let (out, took) = flock_b("-x -n");
    assert_eq!(
        out.status.code(),
        Some(75),
        "exclusive flock -n on B while A holds a shared one must be refused (exit 75): {}",
        describe(&out)
    );
    assert!(took < Duration::from_secs(5), "refusal on B took {took:?}");

    // The same from a process of B that itself holds a shared lock: still refused.
    let mut b = c.agent("B");
    b.ok(&format!("open r {}", fb.display()), STEP);
    b.ok("flock sh nb", STEP);
    let (out, _) = flock_b("-x -n");
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));

    // Once both shared holders let go, the exclusive lock is free.
    a.ok("flock un", STEP);
    b.ok("flock un", STEP);
    let (out, _) = flock_b("-x -n");
    assert!(
        out.status.success(),
        "exclusive flock -n on B after every shared lock went: {}",
        describe(&out)
    );
}

#[test]
fn getlk_names_the_holder_on_another_mount_and_byte_ranges_are_cluster_wide() {
    let c = Cell::new(2, LEASE_2S);
    write(c.m(0).join("f"), vec![b'.'; 300]).unwrap();
    let mut a = c.agent("A");
    let mut b = c.agent("B");
    let (pid_a, pid_b) = (a.pid(), b.pid());

    // A writes bytes 0..=99 (an fcntl write lock needs a descriptor open for writing, so
    // A holds the writers' turn too; B's descriptors are read-only and never wait for it).
    a.ok(&format!("open rw {}", c.m(0).join("f").display()), STEP);
    a.ok("setlk w 0 100", STEP);
    b.ok(&format!("open r {}", c.m(1).join("f").display()), STEP);

    assert_eq!(
        b.ok("getlk w 0 0", STEP),
        format!("w 0 100 {pid_a}"),
        "F_GETLK (whole file) on B: want A's write lock on bytes 0..=99 held by pid {pid_a}"
    );
    assert_eq!(
        b.ok("getlk r 50 10", STEP),
        format!("w 0 100 {pid_a}"),
        "F_GETLK of a read lock overlapping A's write lock"
    );
    let free = b.ok("getlk w 100 100", STEP);
    assert!(
        free.starts_with("u "),
        "F_GETLK beyond A's range must say unlocked, got {free:?}"
    );

    // Non-overlapping ranges coexist; overlapping ones conflict.
    b.ok("setlk r 100 100", STEP);
    match b.call("setlk r 50 100", STEP) {
        Err(e) if is_conflict(&e) => {}
        other => panic!(
            "F_SETLK on B of bytes 50..=149 (A writes 0..=99): want EAGAIN/EACCES, got {other:?}"
        ),
    }
    assert_eq!(
        a.ok("getlk w 100 100", STEP),
        format!("r 100 100 {pid_b}"),
        "F_GETLK on A must name B's read lock"
    );
    match a.call("setlk w 150 10", STEP) {
        Err(e) if is_conflict(&e) => {}
        other => panic!("F_SETLK on A of bytes 150..=159 (B reads 100..=199): want EAGAIN/EACCES, got {other:?}"),
    }
    b.ok("setlk u 100 100", STEP);
    a.ok("setlk w 150 10", STEP);

    // F_SETLKW waits for the other mount's unlock.
    b.send("setlkw r 0 10");
    if let Some(r) = b.recv(Duration::from_secs(1)) {
        panic!("F_SETLKW on B of bytes 0..=9 answered {r:?} while A still writes 0..=99");
    }
    a.ok("setlk u 0 100", STEP);
    let t = Instant::now();
    match b.recv(WAIT) {
        Some(Ok(_)) => eprintln!("F_SETLKW on B granted {:?} after A's unlock", t.elapsed()),
        other => panic!("F_SETLKW on B after A's unlock: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "F_SETLKW on B took {:?} after A's unlock",
        t.elapsed()
    );
    a.ok("close", STEP);
    b.ok("close", STEP);
}

/// A read-only descriptor closes without a FLUSH request (FOPEN_NOFLUSH), yet an fcntl
/// lock taken through it still goes when it is closed, and a second read-only descriptor
/// opened while the lock is held still drops it at its close (POSIX).
#[test]
fn fcntl_lock_through_a_read_only_descriptor_goes_at_close() {
    // A lease far longer than the wait below: only the release can free the lock in time.
    let c = Cell::new(2, &["--lock-lease-secs", "60"]);
    write(c.m(0).join("f"), vec![b'.'; 100]).unwrap();
    let _ = std::fs::read(c.m(0).join("f")).unwrap();
    let mut a = c.agent("A");
    let mut b = c.agent("B");
    b.ok(&format!("open rw {}", c.m(1).join("f").display()), STEP);
    let b_gets_write_lock = |b: &mut Agent, what: &str| {
        let t = Instant::now();
        loop {
            match b.call("setlk w 0 0", STEP) {
                Ok(_) => return t.elapsed(),
                Err(e) if is_conflict(&e) && t.elapsed() < Duration::from_secs(10) => {
                    thread::sleep(Duration::from_millis(50))
                }
                other => panic!(
                    "B's F_SETLK after {what}: {other:?} after {:?}",
                    t.elapsed()
                ),
            }
        }
    };

    for round in ["first", "second"] {
        a.ok(&format!("open r {}", c.m(0).join("f").display()), STEP);
        a.ok("setlk r 0 0", STEP);
        match b.call("setlk w 0 0", STEP) {
            Err(e) if is_conflict(&e) => {}
            other => panic!("{round}: B's F_SETLK while A reads the whole file: {other:?}"),
        }
        if round == "second" {
            // A second descriptor, opened while A holds the lock: its close drops it.
            a.ok("reopen", STEP);
        }
        a.ok("close", STEP);
        let took = b_gets_write_lock(&mut b, "A's close");
        eprintln!("{round}: B's write lock granted {took:?} after A's close");
        b.ok("setlk u 0 0", STEP);
    }
    b.ok("close", STEP);
}

// ---------------------------------------------------------------------------------------
// 2. Writers take turns, readers never wait
// ---------------------------------------------------------------------------------------

/// How the second writer puts its bytes at the end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Append {
    /// open(O_WRONLY | O_APPEND), write: what `echo … >> f` does.
    OAppend,
    /// open(O_RDWR), lseek(0, SEEK_END), write.
    SeekEnd,
}

/// A opens for writing and appends; B's open for writing waits until A's close; a reader
/// on C never waits meanwhile; B then appends after A's bytes.
fn writers_take_turns(how: Append) {
    let c = Cell::new(3, LEASE_2S);
    write(c.m(0).join("f"), b"base\n").unwrap();
    let mut a = c.agent("A");
    let mut b = c.agent("B");

    a.ok(&format!("open a {}", c.m(0).join("f").display()), STEP);
    a.ok(&format!("write {}", hex(b"A1\n")), STEP);

    let mode = match how {
        Append::OAppend => "a",
        Append::SeekEnd => "rw",
    };
    b.send(&format!("open {mode} {}", c.m(1).join("f").display()));
    if let Some(r) = b.recv(Duration::from_millis(1500)) {
        panic!("B's open for writing answered {r:?} while A has the file open for writing");
    }

    // A reader on a third mount is never held up by the writer, and sees the last close.
    let fc = c.m(2).join("f");
    let t = Instant::now();
    let seen = timed(
        "read on C while A writes",
        Duration::from_secs(5),
        move || std::fs::read(&fc),
    );
    let took = t.elapsed();
    eprintln!("reader on C answered in {took:?} while A held the file open for writing");
    assert!(
        took < Duration::from_secs(1),
        "reader on C took {took:?} while A wrote"
    );
    assert_eq!(
        text(&seen.expect("read on C")),
        "base\n",
        "reader on C must see the last closed version"
    );

    a.ok(&format!("write {}", hex(b"A2\n")), STEP);
    if let Some(r) = b.recv(Duration::ZERO) {
        panic!("B's open for writing answered {r:?} before A closed");
    }
    a.ok("close", STEP);
    let t = Instant::now();
    match b.recv(WAIT) {
        Some(Ok(_)) => eprintln!("B's open returned {:?} after A's close", t.elapsed()),
        other => panic!("B's open for writing after A closed: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "B's open returned only {:?} after A's close",
        t.elapsed()
    );
    if how == Append::SeekEnd {
        let end = b.ok("seekend", STEP);
        assert_eq!(end, "11", "B's lseek(SEEK_END) after A's close");
    }
    b.ok(&format!("write {}", hex(b"B\n")), STEP);
    b.ok("close", STEP);

    // The server has B's bytes after A's once B's close returns. The other mounts see them
    // once B's callback break reaches them: milliseconds later, not necessarily at once
    // (breaks are pushed, not acknowledged).
    let want = "base\nA1\nA2\nB\n";
    let server = fetch_path(&c.server.addr(), "f").map(|b| text(&b));
    assert_eq!(
        server.as_deref(),
        Some(want),
        "{how:?}: B's bytes must land after A's on the server"
    );
    let deadline = Instant::now() + VISIBLE_WITHIN;
    loop {
        let mut seen = Vec::new();
        for (name, m) in [("A", 0), ("B", 1), ("C", 2)] {
            seen.push((name, read(c.m(m).join("f")).map(|b| text(&b))));
        }
        if seen.iter().all(|(_, r)| r.as_deref().ok() == Some(want)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{how:?}: mounts still show {seen:?} {VISIBLE_WITHIN:?} after B's close; want {want:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn second_writer_waits_for_the_first_close_and_readers_never_wait() {
    writers_take_turns(Append::SeekEnd);
}

/// The same with O_APPEND. B's open waited for the writers' lock after its path lookup,
/// so the kernel's size of the file is from before A's store; the append must still land
/// at the real end.
#[test]
fn second_writer_with_o_append_lands_after_the_first() {
    writers_take_turns(Append::OAppend);
}

// ---------------------------------------------------------------------------------------
// 3 and 4. Lost clients: killed, frozen
// ---------------------------------------------------------------------------------------

#[test]
fn flock_of_a_killed_client_goes_when_its_lease_ends() {
    let mut c = Cell::new(2, LEASE_2S);
    write(c.m(0).join("f"), b"x").unwrap();
    let mut a = c.agent("A");
    let mut b = c.agent("B");
    a.ok(&format!("open r {}", c.m(0).join("f").display()), STEP);
    a.ok("flock ex", STEP);
    b.ok(&format!("open r {}", c.m(1).join("f").display()), STEP);
    match b.call("flock ex nb", STEP) {
        Err(e) if is_conflict(&e) => {}
        other => panic!("flock on B while A holds it: want EAGAIN, got {other:?}"),
    }

    c.mounts[0].kill9();
    let killed = Instant::now();
    let got = b.call("flock ex", WAIT);
    let took = killed.elapsed();
    eprintln!("B got the flock {took:?} after A's dfs-mount was killed (lease 2 s)");
    assert_eq!(got, Ok(String::new()), "flock on B after A's client died");
    assert!(
        took < Duration::from_secs(10),
        "B waited {took:?} for the lock of a dead client with a 2 s lease"
    );
    // A's agent holds a descriptor on a dead mount: kill it before the mount is detached.
    a.kill();
}

/// When frozen A is thawed, relative to the next writer B.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Thaw {
    /// B stored, closed and gave the writers' lock back.
    AfterTheNextWriterLetGo,
    /// B stored and closed, then opened the file for writing again and still holds it.
    WhileTheNextWriterHoldsIt,
}

/// The writers' locks a create-write-close loop gives back go to the server together, a
/// few milliseconds after each close: none may be left for its lease (15 s) to end, and
/// a file written again at once keeps its lock and its contents.
#[test]
fn writers_locks_given_back_in_batches_all_reach_the_server() {
    let c = Cell::new(1, &[]);
    let dir = c.m(0).join("batch");
    std::fs::create_dir(&dir).unwrap();
    let files: Vec<PathBuf> = (0..12).map(|i| dir.join(format!("f{i}"))).collect();
    for (i, f) in files.iter().enumerate() {
        write(f, format!("first {i}\n")).unwrap();
    }
    // Written again right after its close: its release may still be queued.
    write(&files[0], b"again\n").unwrap();
    let t = Instant::now();
    let left = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        let held: Vec<&PathBuf> = files.iter().filter(|f| open_lock_listed(f)).collect();
        held.is_empty().then_some(())
    });
    let still: Vec<String> = files
        .iter()
        .filter(|f| open_lock_listed(f))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        left.is_some(),
        "writers' locks still held {:?} after the last close: {still:?}",
        t.elapsed()
    );
    eprintln!(
        "all writers' locks released {:?} after the last close",
        t.elapsed()
    );
    assert_eq!(text(&read(&files[0]).unwrap()), "again\n");
    assert_eq!(
        fetch_path(&c.server.addr(), "batch/f11")
            .map(|b| text(&b))
            .as_deref(),
        Some("first 11\n")
    );
}

/// Is an `Open` (writers') lock listed on the file at `path`?
fn open_lock_listed(path: &Path) -> bool {
    dfs_locks(path).iter().any(|l| l.contains("Open"))
}

/// A opens for writing and writes; its dfs-mount is frozen (SIGSTOP) until its 2 s lease
/// runs out; B opens, writes and closes; A is thawed and closes. A's close must fail with
/// ESTALE, the server keep B's contents, and A's copy go to A's cache `lost+found/`.
fn frozen_writer(thaw: Thaw) {
    let mut c = Cell::new(2, LEASE_2S);
    write(c.m(0).join("f"), b"original\n").unwrap();
    assert_eq!(read(c.m(1).join("f")).unwrap(), b"original\n");
    let a_data = b"written by A, whose lease ran out\n";
    let b_data = b"written by B\n";
    let (fa, fb) = (c.m(0).join("f"), c.m(1).join("f"));
    let mut a = c.agent("A");
    let mut b = c.agent("B");

    a.ok(&format!("open w {}", fa.display()), STEP);
    a.ok(&format!("write {}", hex(a_data)), STEP);

    let pid_a = c.m(0).pid();
    signal(pid_a, libc::SIGSTOP);
    let cont = ContOnDrop(pid_a);
    let stopped = Instant::now();

    let t = Instant::now();
    b.ok(&format!("open w {}", fb.display()), WAIT);
    let waited = t.elapsed();
    eprintln!("B's open for writing waited {waited:?} for frozen A's lease (2 s) to end");
    b.ok(&format!("write {}", hex(b_data)), STEP);
    b.ok("close", STEP);
    assert!(
        waited >= Duration::from_millis(1000),
        "B got the writers' lock after {waited:?}, while frozen A's 2 s lease still held"
    );
    match thaw {
        Thaw::AfterTheNextWriterLetGo => {
            // B gives its writers' lock back just after its close returns.
            let gone = poll(STEP, Duration::from_millis(50), || {
                (!open_lock_listed(&fb)).then_some(())
            });
            assert!(
                gone.is_some(),
                "B's writers' lock still listed 10 s after its close: {:?}",
                dfs_locks(&fb)
            );
        }
        Thaw::WhileTheNextWriterHoldsIt => {
            b.ok(&format!("open a {}", fb.display()), STEP);
            assert!(
                open_lock_listed(&fb),
                "B's open for writing holds no Open lock"
            );
        }
    }

    drop(cont);
    eprintln!("A was frozen for {:?}", stopped.elapsed());
    let closed = a.call("close", WAIT);
    if thaw == Thaw::WhileTheNextWriterHoldsIt {
        b.ok("close", STEP);
    }

    // Gather every finding before judging, so one report shows them all. What a retry
    // could still settle (lost+found, A's view) gets 10 s (the mount retries every 3 s).
    let mut wrong = Vec::new();
    if closed != Err("ESTALE".to_string()) {
        wrong.push(format!(
            "A's close after its lease ran out and B stored: want ESTALE, got {closed:?}"
        ));
    }
    let lf = c.m(0).cache_dir().join("lost+found");
    let kept_aside = || -> Vec<(String, String)> {
        list(&lf)
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                let body = std::fs::read(lf.join(&n))
                    .map(|b| text(&b))
                    .unwrap_or_default();
                (n, body)
            })
            .collect()
    };
    let found = poll(STEP, Duration::from_millis(100), || {
        kept_aside()
            .iter()
            .any(|(_, body)| body.as_bytes() == a_data)
            .then_some(())
    });
    if found.is_none() {
        wrong.push(format!(
            "A's copy is not in {}: found {:?}",
            lf.display(),
            kept_aside()
        ));
    }
    let server = fetch_path(&c.server.addr(), "f");
    if server.as_deref() != Some(&b_data[..]) {
        wrong.push(format!(
            "server holds {:?}, want B's {:?}",
            server.map(|b| text(&b)),
            text(b_data)
        ));
    }
    let want = text(b_data);
    let through_b = read(&fb).map(|b| text(&b));
    if through_b.as_deref().ok() != Some(&want[..]) {
        wrong.push(format!("read through B: {through_b:?}"));
    }
    let fresh = c.add_mount();
    let through_fresh = read(c.m(fresh).join("f")).map(|b| text(&b));
    if through_fresh.as_deref().ok() != Some(&want[..]) {
        wrong.push(format!("read through a fresh mount: {through_fresh:?}"));
    }
    let through_a = poll(STEP, Duration::from_millis(100), || {
        read(&fa).ok().filter(|b| b == b_data)
    });
    if through_a.is_none() {
        wrong.push(format!(
            "read through A afterwards: {:?}",
            read(&fa).map(|b| text(&b))
        ));
    }
    eprintln!(
        "{thaw:?}: A's close {closed:?}; lost+found {:?}",
        kept_aside()
    );
    assert!(
        wrong.is_empty(),
        "stale writer, thawed {thaw:?}:\n  {}\n---- A's dfs-mount log:\n{}",
        wrong.join("\n  "),
        c.m(0).log_tail(30)
    );
}

#[test]
fn frozen_writer_store_is_refused_and_its_copy_kept_in_lost_found() {
    frozen_writer(Thaw::AfterTheNextWriterLetGo);
}

/// The same, but B holds the file open for writing again when A wakes: A's copy is just
/// as stale (the server moved past its base version), so its close must say ESTALE too,
/// not "try again".
#[test]
fn frozen_writer_woken_while_the_next_writer_holds_the_file_gets_estale() {
    frozen_writer(Thaw::WhileTheNextWriterHoldsIt);
}

// ---------------------------------------------------------------------------------------
// 5. The dfs command
// ---------------------------------------------------------------------------------------

#[test]
fn dfs_lock_unlock_and_locks_commands() {
    let c = Cell::new(2, &[]);
    write(c.m(0).join("f"), b"x").unwrap();
    assert_eq!(read(c.m(1).join("f")).unwrap(), b"x");
    let (fa, fb) = (c.m(0).join("f"), c.m(1).join("f"));
    let (id_a, id_b) = (client_id(c.m(0).path()), client_id(c.m(1).path()));
    let label = our_label();

    let out = dfs(&[&"lock", &fa]);
    assert!(out.status.success(), "dfs lock on A: {}", describe(&out));
    assert!(text(&out.stdout).contains("locked"), "{}", describe(&out));

    let shown = dfs_locks(&fa);
    assert_eq!(shown.len(), 1, "dfs locks after dfs lock: {shown:?}");
    let line = &shown[0];
    for want in ["Advisory", "Exclusive", "0-EOF", &label, &id_a] {
        assert!(
            line.contains(want),
            "dfs locks line {line:?} lacks {want:?}"
        );
    }
    let expires: f64 = line
        .split_whitespace()
        .last()
        .and_then(|e| e.strip_suffix('s'))
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no expiry at the end of {line:?}"));
    assert!(
        expires > 0.0 && expires <= 15.0,
        "expiry {expires} s with the default 15 s lease: {line:?}"
    );
    assert_eq!(
        dfs_locks(&fb).len(),
        1,
        "the lock taken on A is listed on B too"
    );

    // Unlocking what you do not hold fails and leaves the holder's lock alone.
    let out = dfs(&[&"unlock", &fb]);
    assert!(
        !out.status.success(),
        "dfs unlock on B of A's lock must fail: {}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("hold no lock"),
        "dfs unlock on B: unclear message: {}",
        describe(&out)
    );
    let token = |l: &str| l.split_whitespace().rev().nth(1).map(str::to_string);
    let after = dfs_locks(&fa);
    assert_eq!(
        after.len(),
        1,
        "A's lock after B's failed unlock: {after:?}"
    );
    assert_eq!(
        token(&after[0]),
        token(line),
        "A's lock changed: {after:?} vs {line:?}"
    );

    // A second mount waits a second, then gives up naming the holder, exit code 75.
    let t = Instant::now();
    let out = dfs(&[&"lock", &"--wait", &"1", &fb]);
    let took = t.elapsed();
    assert_eq!(
        out.status.code(),
        Some(75),
        "dfs lock --wait 1 on B: {}",
        describe(&out)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains(&label) && err.contains(&id_a),
        "dfs lock --wait 1 on B must name the holder ({label}, client {id_a}): {err:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "dfs lock --wait 1 took {took:?}"
    );

    let out = dfs(&[&"unlock", &fa]);
    assert!(out.status.success(), "dfs unlock on A: {}", describe(&out));
    assert!(text(&out.stdout).contains("unlocked"), "{}", describe(&out));
    let out = dfs(&[&"lock", &"--wait", &"5", &fb]);
    assert!(
        out.status.success(),
        "dfs lock on B after A's unlock: {}",
        describe(&out)
    );
    let now = dfs_locks(&fa);
    assert!(
        now.len() == 1 && now[0].contains(&id_b),
        "dfs locks must show B ({id_b}) as the holder: {now:?}"
    );
    let out = dfs(&[&"unlock", &fb]);
    assert!(out.status.success(), "dfs unlock on B: {}", describe(&out));
    assert_eq!(
        dfs_locks(&fa),
        Vec::<String>::new(),
        "locks after both unlocks"
    );
}

#[test]
fn dfs_lock_of_a_path_off_dfs_is_a_clear_error() {
    let tmp = tempfile::TempDir::new().unwrap();
    let f = tmp.path().join("plain");
    std::fs::write(&f, b"x").unwrap();
    for args in [vec!["lock"], vec!["unlock"], vec!["locks"]] {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        all.push(&f);
        let out = dfs(&all);
        assert_eq!(
            out.status.code(),
            Some(1),
            "dfs {} of a file off dfs: {}",
            args[0],
            describe(&out)
        );
        assert!(
            text(&out.stderr).contains("is not on a dfs mount"),
            "dfs {}: unclear message: {}",
            args[0],
            describe(&out)
        );
    }
    let missing = tmp.path().join("missing");
    let out = dfs(&[&"lock", &missing]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("missing"),
        "dfs lock of a missing path must fail naming it: {}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------
// 6. Server restart
// ---------------------------------------------------------------------------------------

#[test]
fn flock_survives_a_server_kill9_and_restart() {
    // The default 15 s lease: the lock must survive the restart itself, not run out.
    let mut c = Cell::new(2, &[]);
    write(c.m(0).join("f"), b"x").unwrap();
    let mut a = c.agent("A");
    let mut b = c.agent("B");
    a.ok(&format!("open r {}", c.m(0).join("f").display()), STEP);
    a.ok("flock ex", STEP);
    b.ok(&format!("open r {}", c.m(1).join("f").display()), STEP);
    match b.call("flock ex nb", STEP) {
        Err(e) if is_conflict(&e) => {}
        other => panic!("flock on B before the restart: want EAGAIN, got {other:?}"),
    }

    c.server.kill9();
    c.server.restart();
    let restarted = Instant::now();

    // B asks again; while its mount reconnects it may see transport errors, never a grant.
    let mut seen = Vec::new();
    let refused = poll(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || match b.call("flock ex nb", STEP) {
            Ok(_) => panic!(
                "B got the flock after the server restart while A still holds it (before: {seen:?})"
            ),
            Err(e) if is_conflict(&e) => Some(()),
            Err(e) => {
                seen.push(e);
                None
            }
        },
    );
    assert!(
        refused.is_some(),
        "flock -n on B after the restart never answered EAGAIN: {seen:?}"
    );
    eprintln!(
        "B refused {:?} after the restart (errors before: {seen:?})",
        restarted.elapsed()
    );

    // B waits; A lets go (through its reconnected mount); B gets it promptly.
    b.send("flock ex");
    if let Some(r) = b.recv(Duration::from_secs(1)) {
        panic!("blocking flock on B answered {r:?} while A holds the lock");
    }
    let t = Instant::now();
    a.ok("flock un", WAIT);
    let released = Instant::now();
    eprintln!("A's unlock took {:?}", t.elapsed());
    match b.recv(WAIT) {
        Some(Ok(_)) => {}
        other => panic!("blocking flock on B after A's unlock: {other:?}"),
    }
    let took = released.elapsed();
    eprintln!("B got the flock {took:?} after A's unlock");
    assert!(
        took < Duration::from_secs(5),
        "B got the flock {took:?} after A's unlock (the 15 s lease, not the unlock, freed it?)"
    );
}
