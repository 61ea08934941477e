//! Attacks on the server's infrastructure (#21 items 4, 6, 7, 8), each against real
//! processes: a request captured before a restart and replayed after it; anonymous
//! callers of a realm; data at rest under a umask of 000; idle, slow and stalled
//! connections, and more connections than the caps allow.
//!
//! `data_at_rest_is_private_whatever_the_umask` sets this process's umask to 000: no
//! other test of this file depends on the umask.

use dfs_common::auth;
use dfs_common::codec;
use dfs_common::locks::{LockReply, LockRequest, RenewRequest};
use dfs_common::proto::{AttrChange, DirReply, DirRequest, HDR_ERROR, HDR_SHA256};
use dfs_common::types::{Attr, ROOT_INO};
use dfs_tests::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const ALICE: u32 = 2101;

fn made(r: &HttpResponse) -> Attr {
    assert_eq!(r.status, 200, "{}", r.describe());
    match codec::decode(&r.body).expect("a DirReply") {
        DirReply::Attr(a) | DirReply::Made { attr: a, .. } => a,
        other => panic!("expected attributes, got {other:?}"),
    }
}

fn create(name: &str, mode: u32) -> DirRequest {
    DirRequest::Create {
        parent: ROOT_INO,
        name: name.into(),
        mode,
        umask: 0,
        uid: 0,
        gid: 0,
        exclusive: true,
    }
}

fn chmod(ino: u64, mode: u32) -> DirRequest {
    DirRequest::SetAttr {
        ino,
        change: AttrChange {
            mode: Some(mode),
            ..AttrChange::default()
        },
    }
}

/// Stores `data` into `ino` as `who`.
fn store(who: &Principal, addr: &str, ino: u64, data: &[u8]) -> HttpResponse {
    let sha = codec::to_hex(&auth::sha256(data));
    who.sign(
        "PUT",
        &format!("/v1/files/{ino}"),
        &[(HDR_SHA256, sha)],
        data,
    )
    .send(addr)
}

fn code(r: &HttpResponse) -> &str {
    r.header(HDR_ERROR).unwrap_or("none")
}

/// #21 item 4: the replay cache used to live in memory only, so a request captured up to
/// 300 s before a restart was accepted once more after it (here: a chmod 644 that opens a
/// private file again). Both a crash (kill -9) and a clean stop.
#[test]
fn a_request_captured_before_a_restart_is_refused_after_it() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let key = init_realm(&data);
    let mut server = Server::start(&data, free_port(), &[]);
    let addr = server.addr();
    let alice = Principal::minted(&key, ALICE, false);
    let file = made(&alice.dir(&create("secret", 0o600)).send(&addr)).ino;
    for restart in ["kill -9", "clean stop"] {
        let captured = alice.dir(&chmod(file, 0o644));
        assert_eq!(captured.send(&addr).status, 200);
        let again = captured.send(&addr);
        assert_eq!(again.status, 401, "replay before the {restart}");
        assert_eq!(alice.dir(&chmod(file, 0o600)).send(&addr).status, 200);
        if restart == "clean stop" {
            assert!(server.stop().success());
        }
        server.restart();
        let replayed = captured.send(&addr);
        assert_eq!(
            (replayed.status, code(&replayed)),
            (401, "EAUTH"),
            "a request captured before a {restart} was accepted after it: {}",
            replayed.describe()
        );
        let attr = made(&alice.dir(&DirRequest::GetAttr { ino: file }).send(&addr));
        assert_eq!(attr.mode & 0o777, 0o600, "the replayed chmod took effect");
    }
}

/// Sends the head of a store of `len` bytes (no body) and reads the answer: a server that
/// refuses the caller answers at once, one that accepts waits for the body.
fn store_head_only(addr: &str, ino: u64, len: u64) -> std::io::Result<HttpResponse> {
    let mut s = connect(addr, Duration::from_secs(5))?;
    let path = format!("/v1/files/{ino}");
    let mut head = format!(
        "PUT {path} HTTP/1.1\r\nhost: t\r\n{HDR_SHA256}: {}\r\ncontent-length: {len}\r\n",
        "ab".repeat(32)
    );
    for (k, v) in proof_headers(addr, 77, "PUT", &path) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    read_response(&mut s)
}

/// The status of the answer to an anonymous `GET /v1/callbacks` of client 77 (the
/// channel stays open: only its head is read).
fn callback_channel_status(addr: &str) -> u16 {
    let mut s = connect(addr, Duration::from_secs(5)).unwrap();
    refresh_epoch(addr, 77);
    let mut head = "GET /v1/callbacks HTTP/1.1\r\nhost: t\r\n".to_string();
    for (k, v) in proof_headers(addr, 77, "GET", "/v1/callbacks") {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") && s.read(&mut b).unwrap() == 1 {
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// #21 item 8: in a realm, anonymous callers could create and store in `/` (mode 1777):
/// a 20 MiB store without a ticket was accepted. Now they get nothing unless the cell is
/// started with `--anonymous read` or `--anonymous write`; what a mount does on its own
/// (its callback channel, renewing its leases) stays open.
#[test]
fn anonymous_callers_get_nothing_in_a_realm_unless_the_cell_allows_it() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let key = init_realm(&data);
    let server = Server::start(&data, free_port(), &[]);
    let addr = server.addr();
    let alice = Principal::minted(&key, ALICE, false);
    let shared = made(&alice.dir(&create("shared", 0o666)).send(&addr)).ino;
    assert_eq!(store(&alice, &addr, shared, b"for all\n").status, 200);
    let anon = |req: &DirRequest, addr: &str| CapturedRequest::anonymous_dir(req).send(addr);
    let fetch = |addr: &str| {
        CapturedRequest::anonymous("GET", &format!("/v1/files/{shared}"), b"").send(addr)
    };
    let big_store = |addr: &str| {
        store_head_only(addr, shared, 20 << 20).unwrap_or_else(|e| {
            panic!("an anonymous 20 MiB store was not answered before its body: {e}")
        })
    };

    // Default: nothing.
    let r = anon(&create("anon-file", 0o666), &addr);
    assert_eq!((r.status, code(&r)), (401, "EAUTH"), "{}", r.describe());
    let r = big_store(&addr);
    assert_eq!((r.status, code(&r)), (401, "EAUTH"), "{}", r.describe());
    for req in [chmod(shared, 0o777), DirRequest::GetAttr { ino: ROOT_INO }] {
        let r = anon(&req, &addr);
        assert_eq!(r.status, 401, "{req:?}: {}", r.describe());
    }
    assert_eq!(fetch(&addr).status, 401);
    // A mount's own upkeep runs anonymous.
    assert_eq!(callback_channel_status(&addr), 200);
    let renew = codec::encode(&RenewRequest { held: vec![] });
    let r = http_as(&addr, 77, "POST", "/v1/locks/renew", &[], &renew).unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    drop(server);

    // --anonymous read: what nobody may read, nothing more.
    let server = Server::start(&data, free_port(), &["--anonymous", "read"]);
    let addr = server.addr();
    assert_eq!(
        made(&anon(&DirRequest::GetAttr { ino: shared }, &addr)).ino,
        shared
    );
    let r = fetch(&addr);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"for all\n"[..]));
    let r = anon(&create("anon-file", 0o666), &addr);
    assert_eq!((r.status, code(&r)), (401, "EAUTH"), "{}", r.describe());
    assert_eq!(anon(&chmod(shared, 0o777), &addr).status, 401);
    assert_eq!(big_store(&addr).status, 401);
    drop(server);

    // --anonymous write: as before, what the modes let nobody do.
    let server = Server::start(&data, free_port(), &["--anonymous", "write"]);
    let addr = server.addr();
    made(&anon(&create("anon-file", 0o666), &addr));
}

/// Every directory under `root` that is not 0700 and every file that is not 0600.
fn not_private(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            if mode != 0o700 {
                bad.push(format!("dir {:o} {}", mode, p.display()));
            }
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        } else if !meta.is_file() || mode != 0o600 {
            bad.push(format!("file {:o} {}", mode, p.display()));
        }
    }
    bad
}

fn assert_private(what: &str, root: &Path) {
    let bad = not_private(root);
    assert!(
        bad.is_empty(),
        "{what} open to other users:\n{}",
        bad.join("\n")
    );
}

/// Blob files under `data/blobs` (not temporary or spare ones).
fn blob_files(data: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(data.join("blobs")).unwrap().flatten() {
        let name = fan.file_name().to_string_lossy().into_owned();
        if name == "tmp" || name == "spare" || !fan.path().is_dir() {
            continue;
        }
        out.extend(
            std::fs::read_dir(fan.path())
                .unwrap()
                .flatten()
                .map(|e| e.path()),
        );
    }
    out
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// #21 item 7: blobs were 0644 in 0755 directories, `meta.redb` 0644, the client's cache
/// 0755 with 0644 copies: any local user read a 0600 file. Now both daemons keep 0700
/// directories and 0600 files whatever their umask, and tighten looser modes at start.
#[test]
fn data_at_rest_is_private_whatever_the_umask() {
    // SAFETY: umask(2) cannot fail; see the file's comment for why 000 is harmless here.
    unsafe { libc::umask(0) };
    let tmp = tempfile::TempDir::new().unwrap();
    let realm = tmp.path().join("realm-data");
    let key = init_realm(&realm);
    let mut realm_server = Server::start(&realm, free_port(), &[]);
    let alice = Principal::minted(&key, ALICE, false);
    let ino = made(
        &alice
            .dir(&create("secret", 0o600))
            .send(&realm_server.addr()),
    )
    .ino;
    assert_eq!(
        store(&alice, &realm_server.addr(), ino, &[7u8; 300_000]).status,
        200
    );

    let mut f = Fixture::new();
    for (name, len) in [("small", 4096), ("large", 1 << 20)] {
        write(f.mnt().join(name), pseudo_random(len, len as u64)).unwrap();
        assert_eq!(read(f.mnt().join(name)).unwrap().len(), len);
    }
    let data = f.server.data_dir().to_path_buf();
    let cache = f.mount.cache_dir().to_path_buf();
    // A small blob's file is written by the journal's checkpoint, a moment after its store.
    wait_for("both blobs on disk", Duration::from_secs(10), || {
        let n = blob_files(&data).len();
        (n >= 2).then_some(()).ok_or(format!("{n} blob files"))
    });
    assert_private("server data", &data);
    assert_private("client cache", &cache);
    assert_private("realm data", &realm);

    // Modes left loose (by an older release, or by hand) are tightened at start.
    f.mount.stop();
    f.server.stop();
    realm_server.stop();
    set_mode(&data, 0o755);
    set_mode(&data.join("blobs"), 0o755);
    set_mode(&blob_files(&data)[0], 0o644);
    set_mode(&data.join("meta.redb"), 0o644);
    set_mode(&cache, 0o777);
    set_mode(&cache.join("files"), 0o755);
    set_mode(&realm.join("realm/principals.redb"), 0o644);
    f.server.restart();
    f.mount.restart();
    realm_server.restart();
    assert_private("server data after a restart", &data);
    assert_private("client cache after a restart", &cache);
    assert_private("realm data after a restart", &realm);
    for (who, log) in [
        ("server", f.server.log_path()),
        ("mount", f.mount.log_path()),
        ("realm server", realm_server.log_path()),
    ] {
        let log = std::fs::read_to_string(log).unwrap();
        let since_restart = log.rsplit("==== harness: starting").next().unwrap();
        assert!(
            since_restart.contains("open to other local users"),
            "the {who} did not log what it tightened:\n{log}"
        );
    }
    assert_eq!(read(f.mnt().join("small")).unwrap().len(), 4096);
}

/// What an attacking connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// Connects and sends nothing.
    Idle,
    /// Sends a request head one byte at a time, never finishing it.
    SlowHead,
    /// Sends a head announcing a body, three bytes of it, then nothing.
    StalledBody,
}

/// Takes the writers' turn of a new file as one client, then asks for it as another,
/// waiting 5 s, longer than the test's timeouts, on a thread: how long the answer took,
/// and what it was.
fn lock_wait_longer_than_the_timeouts(
    addr: &str,
) -> std::thread::JoinHandle<(Duration, LockReply)> {
    let ino = match dir_call(addr, &create("locked", 0o644)) {
        Ok(DirReply::Attr(a)) | Ok(DirReply::Made { attr: a, .. }) => a.ino,
        other => panic!("create: {other:?}"),
    };
    let acquire = move |addr: &str, client: u64, wait_ms: u32| {
        let req = LockRequest {
            wait_ms,
            ..LockRequest::writers_turn(ino, format!("client {client}"))
        };
        let body = codec::encode(&req);
        let r = http_as(addr, client, "POST", "/v1/locks/acquire", &[], &body).unwrap();
        assert_eq!(r.status, 200, "{}", r.describe());
        codec::decode::<LockReply>(&r.body).unwrap()
    };
    assert!(matches!(acquire(addr, 901, 0), LockReply::Granted { .. }));
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let asked = Instant::now();
        let reply = acquire(&addr, 902, 5000);
        (asked.elapsed(), reply)
    })
}

/// One round of the attack: a byte more of every slow head, and a look at which
/// connections the server closed (noted with the time since `started`). Returns how many
/// are still open.
fn sweep(attack: &mut [(Attack, TcpStream, Option<Duration>)], started: Instant) -> usize {
    let mut buf = [0u8; 1024];
    for (kind, s, closed) in attack.iter_mut().filter(|a| a.2.is_none()) {
        if *kind == Attack::SlowHead {
            let _ = s.write(b"x");
        }
        let gone = match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        if gone {
            *closed = Some(started.elapsed());
        }
    }
    attack.iter().filter(|a| a.2.is_none()).count()
}

/// #21 item 6: no timeouts and no caps: 500 idle or slow connections stayed open
/// (server open files 17 -> 518), and a few thousand would lock real clients out. With
/// short timeouts set by options, 300 idle, 300 slow-head and 20 stalled-body connections
/// are all closed, the server's open files return to their baseline, and a mount reads
/// and writes while they are open.
#[test]
fn idle_slow_and_stalled_connections_are_reaped_while_a_mount_works() {
    let f = Fixture::with_server_args(&[
        "--header-timeout-secs",
        "3",
        "--idle-timeout-secs",
        "4",
        "--body-timeout-secs",
        "3",
        "--max-connections-per-peer",
        "2000",
    ]);
    write(f.mnt().join("before"), b"warm\n").unwrap();
    let waiter = lock_wait_longer_than_the_timeouts(&f.server.addr());
    let pid = f.server.pid();
    let baseline = open_fds(pid);
    let dst: SocketAddrV4 = f.server.addr().parse().unwrap();
    let mut attack: Vec<(Attack, TcpStream, Option<Duration>)> = Vec::new();
    let started = Instant::now();
    for kind in [
        (Attack::Idle, 300),
        (Attack::SlowHead, 300),
        (Attack::StalledBody, 20),
    ] {
        for _ in 0..kind.1 {
            let mut s = TcpStream::connect(dst).unwrap();
            match kind.0 {
                Attack::Idle => {}
                Attack::SlowHead => s.write_all(b"GET /v1/health HTTP/1.1\r\nx").unwrap(),
                Attack::StalledBody => s
                    .write_all(b"POST /v1/dir HTTP/1.1\r\ncontent-length: 1000\r\n\r\nabc")
                    .unwrap(),
            }
            s.set_nonblocking(true).unwrap();
            attack.push((kind.0, s, None));
        }
    }
    // Half of them at once is enough to show the server took them (it may reap the first
    // ones before it has accepted the last on a loaded machine).
    let (held, _) = wait_for(
        "the server holds the attack",
        Duration::from_secs(5),
        || {
            let n = open_fds(pid);
            (n >= baseline + 310)
                .then_some(n)
                .ok_or(format!("{n} open"))
        },
    );
    eprintln!("server open files: {baseline} before, {held} under attack");
    // The mount keeps working while the connections are open.
    write(f.mnt().join("during"), b"written under attack\n").unwrap();
    assert_eq!(read(f.mnt().join("before")).unwrap(), b"warm\n");
    let still_open = sweep(&mut attack, started);
    assert!(
        still_open > 0,
        "the attack was over before the mount's write and read"
    );

    let deadline = started + Duration::from_secs(20);
    while sweep(&mut attack, started) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250)); // the slow heads' pace
    }
    for kind in [Attack::Idle, Attack::SlowHead, Attack::StalledBody] {
        let of_kind: Vec<_> = attack.iter().filter(|a| a.0 == kind).collect();
        let open = of_kind.iter().filter(|a| a.2.is_none()).count();
        let last = of_kind.iter().filter_map(|a| a.2).max();
        eprintln!(
            "{kind:?}: {open} of {} still open, last closed after {last:?}",
            of_kind.len()
        );
        assert_eq!(open, 0, "{kind:?} connections were never closed");
    }
    drop(attack);
    wait_for(
        "the server's open files back to baseline",
        Duration::from_secs(10),
        || {
            let n = open_fds(pid);
            (n <= baseline + 2)
                .then_some(())
                .ok_or(format!("{n} open, {baseline} before"))
        },
    );
    assert_eq!(
        read(f.mnt().join("during")).unwrap(),
        b"written under attack\n"
    );
    // Long requests and the callback channel are no idle connections.
    let (waited, reply) = waiter.join().unwrap();
    assert!(
        matches!(reply, LockReply::Conflict { .. }) && waited >= Duration::from_secs(5),
        "a lock wait of 5 s was answered {reply:?} after {waited:?}"
    );
    let channels = f.mount.log_tail(400).matches("callback channel up").count();
    assert_eq!(channels, 1, "the mount's callback channel was cut");
    wait_for(
        "the reaped connections counted in the log",
        Duration::from_secs(10),
        || {
            let log = f.server.log_tail(200);
            let line = log
                .lines()
                .rfind(|l| l.contains("since start:"))
                .unwrap_or("");
            let (idle, heads, bodies) = (
                count_before(line, " idle"),
                count_before(line, " slow heads"),
                count_before(line, " stalled bodies"),
            );
            // The mount's idle pooled connections are closed too.
            (idle >= 300 && heads == 300 && bodies == 20)
                .then_some(())
                .ok_or(format!("last count: {line:?}"))
        },
    );
}

/// The number just before `what` in `line` (0 if there is none).
fn count_before(line: &str, what: &str) -> u64 {
    line.split_once(what)
        .and_then(|(head, _)| head.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A keep-alive connection from `src` that the server admitted (it answered a health
/// check on it), or the bytes it answered before closing it.
fn admitted(src: Ipv4Addr, dst: SocketAddrV4) -> Result<TcpStream, String> {
    let mut s = connect_from(src, dst).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(b"GET /v1/health HTTP/1.1\r\nhost: t\r\n\r\n")
        .is_err()
    {
        return Err("closed before the request".into());
    }
    match peek_closed(&mut s, Duration::from_millis(500)) {
        Peek::Open => Ok(s),
        Peek::Closed(b) => Err(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// #21 item 6: more connections from one address than the per-peer cap, or from all
/// together than the total cap, are refused (503, closed) and counted in the log; other
/// peers, and the same peer once it closed some, are served.
#[test]
fn connections_over_the_caps_are_refused_and_counted() {
    let tmp = tempfile::TempDir::new().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        free_port(),
        &["--max-connections", "16", "--max-connections-per-peer", "8"],
    );
    let dst: SocketAddrV4 = server.addr().parse().unwrap();
    let (a, b, c) = (
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
        Ipv4Addr::new(127, 0, 0, 4),
    );
    let mut from_a: Vec<TcpStream> = (0..8).map(|_| admitted(a, dst).unwrap()).collect();
    for _ in 0..2 {
        let refused = admitted(a, dst).expect_err("a 9th connection from one peer");
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    }
    let _from_b: Vec<TcpStream> = (0..8).map(|_| admitted(b, dst).unwrap()).collect();
    let refused = admitted(c, dst).expect_err("a 17th connection in all");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    from_a.truncate(4);
    wait_for(
        "a new peer served once others closed",
        Duration::from_secs(10),
        || admitted(c, dst).map(drop),
    );
    // Exactly 2 over the per-peer cap; over the total cap, 1 and any refused while the
    // server had not yet seen the closes.
    wait_for(
        "the refusals counted in the log",
        Duration::from_secs(10),
        || {
            let log = server.log_tail(100);
            log.lines()
                .any(|l| {
                    l.contains("(2 over the per-peer cap of 8, ")
                        && !l.contains(", 0 over the total cap")
                })
                .then_some(())
                .ok_or(log)
        },
    );
}
