//! Attacks on the server's infrastructure (#21), each against real processes: a request
//! captured before a restart and replayed after it; anonymous callers of a realm; data at
//! rest under a umask of 000.
//!
//! `data_at_rest_is_private_whatever_the_umask` sets this process's umask to 000: no
//! other test of this file depends on the umask.

use dfs_common::auth;
use dfs_common::codec;
use dfs_common::locks::RenewRequest;
use dfs_common::proto::{AttrChange, DirReply, DirRequest, HDR_ERROR, HDR_SHA256};
use dfs_common::types::{Attr, ROOT_INO};
use dfs_tests::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

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
    let alice = Principal::minted(&key, 31, ALICE, false);
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
    let head = format!(
        "PUT /v1/files/{ino} HTTP/1.1\r\nhost: t\r\nx-dfs-client: 77\r\n\
         {HDR_SHA256}: {}\r\ncontent-length: {len}\r\n\r\n",
        "ab".repeat(32)
    );
    s.write_all(head.as_bytes())?;
    read_response(&mut s)
}

/// The status of the answer to an anonymous `GET /v1/callbacks` of client 77 (the
/// channel stays open: only its head is read).
fn callback_channel_status(addr: &str) -> u16 {
    let mut s = connect(addr, Duration::from_secs(5)).unwrap();
    s.write_all(b"GET /v1/callbacks HTTP/1.1\r\nhost: t\r\nx-dfs-client: 77\r\n\r\n")
        .unwrap();
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
    let alice = Principal::minted(&key, 31, ALICE, false);
    let shared = made(&alice.dir(&create("shared", 0o666)).send(&addr)).ino;
    assert_eq!(store(&alice, &addr, shared, b"for all\n").status, 200);
    let anon = |req: &DirRequest, addr: &str| CapturedRequest::anonymous_dir(77, req).send(addr);
    let fetch = |addr: &str| {
        CapturedRequest::anonymous(77, "GET", &format!("/v1/files/{shared}"), b"").send(addr)
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
    let r = CapturedRequest::anonymous(77, "POST", "/v1/locks/renew", &renew).send(&addr);
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
    let alice = Principal::minted(&key, 31, ALICE, false);
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
