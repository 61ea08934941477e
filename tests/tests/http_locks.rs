//! The lock service over raw HTTP against the real `dfs-server` binary: shared and
//! exclusive locks, waiting and wake-up, conflicts naming the holder, lease expiry and
//! fencing of stores, releases of what is not held, durability across `kill -9`, byte
//! ranges, all-or-nothing acquire-many, a waiter that hangs up, and many concurrent pairs.

use dfs_common::codec;
use dfs_common::locks::{
    ListRequest, LockClass, LockInfo, LockMode, LockRange, LockReply, LockRequest, ReleaseReply,
    ReleaseRequest, RenewReply, RenewRequest, TestReply, HDR_FENCE,
};
use dfs_common::proto::{DirReply, DirRequest};
use dfs_common::{Attr, ROOT_INO};
use dfs_tests::{free_port, http, http_as, proof_headers, test_client, HttpResponse, Server};
use serde::{de::DeserializeOwned, Serialize};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// An anonymous request, answered whole.
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    http(addr, method, path, &[], body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A request as registered test client `n` (anonymous when 0), with `extra` headers.
fn request_as(
    addr: &str,
    n: u64,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let r = match n {
        0 => http(addr, method, path, extra, body),
        n => http_as(addr, n, method, path, extra, body),
    };
    r.unwrap_or_else(|e| panic!("{method} {path} as client {n}: {e}"))
}

/// The lock service's calls on a server, as test clients.
trait LockCalls {
    /// POSTs `body` to `/v1/locks/{op}` as test client `client`; the raw answer.
    fn raw<T: Serialize>(&self, client: u64, op: &str, body: &T) -> HttpResponse;
    /// The id the server issued test client `n`.
    fn id(&self, n: u64) -> u64;
    fn call<T: Serialize, R: DeserializeOwned>(&self, client: u64, op: &str, body: &T) -> R;
    fn acquire(&self, client: u64, req: &LockRequest) -> LockReply;
    fn list(&self, ino: Option<u64>) -> Vec<LockInfo>;
    fn store(&self, client: u64, ino: u64, fence: Option<u64>, data: &[u8]) -> HttpResponse;
}

impl LockCalls for Server {
    fn raw<T: Serialize>(&self, client: u64, op: &str, body: &T) -> HttpResponse {
        let path = format!("/v1/locks/{op}");
        request_as(
            &self.addr(),
            client,
            "POST",
            &path,
            &[],
            &codec::encode(body),
        )
    }

    fn id(&self, n: u64) -> u64 {
        test_client(&self.addr(), n).client
    }

    fn call<T: Serialize, R: DeserializeOwned>(&self, client: u64, op: &str, body: &T) -> R {
        let r = self.raw(client, op, body);
        assert_eq!(r.status, 200, "{op}: {}", r.describe());
        codec::decode(&r.body).unwrap()
    }

    fn acquire(&self, client: u64, req: &LockRequest) -> LockReply {
        self.call(client, "acquire", req)
    }

    fn list(&self, ino: Option<u64>) -> Vec<LockInfo> {
        let req = ListRequest {
            ino,
            after: None,
            limit: 0,
        };
        self.call(1, "list", &req)
    }

    fn store(&self, client: u64, ino: u64, fence: Option<u64>, data: &[u8]) -> HttpResponse {
        let fence = fence.map(|t| t.to_string());
        let mut headers = Vec::new();
        if let Some(t) = &fence {
            headers.push((HDR_FENCE, t.as_str()));
        }
        let path = format!("/v1/files/{ino}");
        request_as(&self.addr(), client, "PUT", &path, &headers, data)
    }
}

fn lock(ino: u64, class: LockClass, mode: LockMode, start: u64, end: u64) -> LockRequest {
    LockRequest {
        ino,
        class,
        mode,
        range: LockRange { start, end },
        owner: 1,
        pid: 4242,
        label: "alice@host".into(),
        wait_ms: 0,
    }
}

fn whole(ino: u64, mode: LockMode) -> LockRequest {
    lock(ino, LockClass::Advisory, mode, 0, u64::MAX)
}

fn granted(r: LockReply) -> u64 {
    match r {
        LockReply::Granted { token, .. } => token,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn conflict(r: LockReply) -> LockInfo {
    match r {
        LockReply::Conflict { holder } => holder,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn release(ino: u64, class: LockClass) -> ReleaseRequest {
    ReleaseRequest {
        ino,
        class,
        owner: 1,
        range: None,
    }
}

use LockMode::{Exclusive as X, Shared as S};

#[test]
fn shared_exclusive_waiting_ranges_and_acquire_many() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let server = Server::start(&data, free_port(), &[]);
    let (a, b, c) = (11u64, 22u64, 33u64);

    // Anonymous callers are refused.
    let r = server.raw(0, "acquire", &whole(1, S));
    assert_eq!((r.status, r.header("x-dfs-error")), (400, Some("EBADMSG")));
    assert_eq!(
        request(&server.addr(), "GET", "/v1/locks/acquire", b"").status,
        405
    );

    // Shared locks coexist; an exclusive one conflicts and names a holder.
    granted(server.acquire(a, &whole(100, S)));
    granted(server.acquire(b, &whole(100, S)));
    let holder = conflict(server.acquire(c, &whole(100, X)));
    assert!([server.id(a), server.id(b)].contains(&holder.client));
    assert_eq!((holder.label.as_str(), holder.pid), ("alice@host", 4242));
    let t: TestReply = server.call(c, "test", &whole(100, X));
    assert!(matches!(t, TestReply::Conflict { .. }));
    let t: TestReply = server.call(c, "test", &whole(100, S));
    assert_eq!(t, TestReply::Free);

    // A conflict after wait_ms names the holder and took about that long.
    let mut r = whole(100, X);
    r.wait_ms = 400;
    let start = Instant::now();
    conflict(server.acquire(c, &r));
    assert!(start.elapsed() >= Duration::from_millis(350));

    // A blocked exclusive acquire is granted soon after the readers release.
    let addr = server.addr();
    let waiter = std::thread::spawn(move || {
        let mut r = whole(100, X);
        r.wait_ms = 20_000;
        let body = codec::encode(&r);
        let resp = request_as(&addr, c, "POST", "/v1/locks/acquire", &[], &body);
        (
            codec::decode::<LockReply>(&resp.body).unwrap(),
            Instant::now(),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let _: ReleaseReply = server.call(a, "release", &release(100, LockClass::Advisory));
    std::thread::sleep(Duration::from_millis(200));
    let released_at = Instant::now();
    let _: ReleaseReply = server.call(b, "release", &release(100, LockClass::Advisory));
    let (reply, at) = waiter.join().unwrap();
    granted(reply);
    assert!(at.duration_since(released_at) < Duration::from_secs(2));
    assert_eq!(server.list(Some(100)).len(), 1);

    // Releasing what is not held, or an unknown id: 404 and nothing changes.
    let r = server.raw(a, "release", &release(100, LockClass::Advisory));
    assert_eq!((r.status, r.header("x-dfs-error")), (404, Some("ENOENT")));
    let r = server.raw(c, "release", &release(100, LockClass::Open));
    assert_eq!(r.status, 404);
    let r = server.raw(c, "release", &release(987_654, LockClass::Advisory));
    assert_eq!(r.status, 404);
    assert_eq!(server.list(Some(100))[0].client, server.id(c));

    // Byte ranges: disjoint exclusive ranges coexist, overlapping ones conflict.
    granted(server.acquire(a, &lock(200, LockClass::Advisory, X, 0, 99)));
    granted(server.acquire(b, &lock(200, LockClass::Advisory, X, 100, 199)));
    let h = conflict(server.acquire(c, &lock(200, LockClass::Advisory, X, 150, 250)));
    assert_eq!(
        (h.client, h.range),
        (
            server.id(b),
            LockRange {
                start: 100,
                end: 199
            }
        )
    );
    granted(server.acquire(c, &lock(200, LockClass::Advisory, S, 200, u64::MAX)));
    // A partial release splits a's range; the freed bytes can then be taken.
    let rel = ReleaseRequest {
        range: Some(LockRange { start: 40, end: 59 }),
        ..release(200, LockClass::Advisory)
    };
    let n: ReleaseReply = server.call(a, "release", &rel);
    assert_eq!(n.released, 1);
    granted(server.acquire(c, &lock(200, LockClass::Advisory, X, 40, 59)));
    conflict(server.acquire(c, &lock(200, LockClass::Advisory, X, 39, 39)));

    // acquire-many is all or nothing.
    let batch: Vec<LockRequest> = [300, 301, 100, 302].iter().map(|&i| whole(i, X)).collect();
    let replies: Vec<LockReply> = server.call(a, "acquire-many", &batch);
    assert_eq!(replies.len(), 4);
    for r in replies {
        assert_eq!(conflict(r).ino, 100);
    }
    for ino in [300, 301, 302] {
        assert!(
            server.list(Some(ino)).is_empty(),
            "ino {ino} was left locked"
        );
    }
    let _: ReleaseReply = server.call(c, "release", &release(100, LockClass::Advisory));
    let replies: Vec<LockReply> = server.call(a, "acquire-many", &batch);
    let tokens: Vec<u64> = replies.into_iter().map(granted).collect();
    assert_eq!(tokens.len(), 4);
    for ino in [300, 301, 100, 302] {
        assert_eq!(server.list(Some(ino))[0].client, server.id(a));
    }

    // A waiter whose connection goes away stops waiting: it never takes the lock.
    let mut r = whole(100, X);
    r.wait_ms = 20_000;
    let body = codec::encode(&r);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let mut head = format!(
        "POST /v1/locks/acquire HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in proof_headers(&server.addr(), b, "POST", "/v1/locks/acquire") {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let _: ReleaseReply = server.call(a, "release", &release(100, LockClass::Advisory));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.list(Some(100)).is_empty(),
        "{:?}",
        server.list(Some(100))
    );
    granted(server.acquire(c, &whole(100, X)));
}

fn create_file(server: &Server, name: &str) -> Attr {
    let req = DirRequest::Create {
        parent: ROOT_INO,
        name: name.as_bytes().to_vec(),
        mode: 0o644,
        umask: 0,
        uid: 0,
        gid: 0,
        exclusive: true,
    };
    let r = request_as(
        &server.addr(),
        5,
        "POST",
        "/v1/dir",
        &[],
        &codec::encode(&req),
    );
    assert_eq!(r.status, 200);
    match codec::decode(&r.body).unwrap() {
        DirReply::Attr(a) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn leases_expire_and_stale_fences_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let server = Server::start(&data, free_port(), &["--lock-lease-secs", "1"]);
    let (a, b) = (11u64, 22u64);
    let f = create_file(&server, "f");
    let open = lock(f.ino, LockClass::Open, X, 0, u64::MAX);

    let ta = granted(server.acquire(a, &open));
    assert_eq!(server.store(a, f.ino, Some(ta), b"from a").status, 200);
    // Without a fence, another client's store is refused while a holds the writers' lock.
    let r = server.store(b, f.ino, None, b"sneaky");
    assert_eq!((r.status, r.header("x-dfs-error")), (423, Some("EAGAIN")));
    assert!(r.header("x-dfs-detail").unwrap().contains("alice@host"));

    // a renews for a while and keeps the lock.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        let held = vec![(f.ino, LockClass::Open, 1)];
        let r: RenewReply = server.call(a, "renew", &RenewRequest { held });
        assert_eq!((r.renewed, r.lost.len(), r.lease_ms), (1, 0, 1000));
    }
    conflict(server.acquire(b, &open));

    // a stops renewing: b, waiting, gets the lock after the lease with a higher token.
    let mut wait = open.clone();
    wait.wait_ms = 5000;
    let start = Instant::now();
    let tb = granted(server.acquire(b, &wait));
    assert!(tb > ta);
    assert!(start.elapsed() < Duration::from_secs(3));

    // a's store with its stale token: 409 ESTALE naming the holder; b's store succeeds.
    let r = server.store(a, f.ino, Some(ta), b"late write");
    assert_eq!((r.status, r.header("x-dfs-error")), (409, Some("ESTALE")));
    assert!(r.header("x-dfs-detail").unwrap().contains("token"));
    let r = server.store(b, f.ino, Some(tb), b"from b");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = request(&server.addr(), "GET", &format!("/v1/files/{}", f.ino), b"");
    assert_eq!(r.body, b"from b");

    // a learns that it lost the lock.
    let held = vec![(f.ino, LockClass::Open, 1)];
    let r: RenewReply = server.call(a, "renew", &RenewRequest { held });
    assert_eq!(r.lost, vec![(f.ino, LockClass::Open, 1)]);
    // Once b's lease runs out too, nobody wanting the file, b's token still stores; the
    // next writer takes the lapsed turn, and then b's token is stale.
    std::thread::sleep(Duration::from_millis(1300));
    let r = server.store(b, f.ino, Some(tb), b"late, nobody else wanted it");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let tc = granted(server.acquire(a, &open));
    assert!(tc > tb);
    let r = server.store(b, f.ino, Some(tb), b"too late");
    assert_eq!((r.status, r.header("x-dfs-error")), (409, Some("ESTALE")));
}

#[test]
fn locks_survive_kill_9_and_concurrent_pairs_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let mut server = Server::start(&data, free_port(), &[]);
    let (a, b) = (11u64, 22u64);
    let ta = granted(server.acquire(a, &whole(7, X)));
    granted(server.acquire(a, &lock(8, LockClass::Advisory, S, 10, 20)));
    server.kill9();
    server.restart();
    let held = server.list(None);
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(
        (held[0].ino, held[0].token, held[0].client),
        (7, ta, server.id(a))
    );
    assert!(held[0].expires_in_ms > 5_000);
    conflict(server.acquire(b, &whole(7, S)));
    conflict(server.acquire(b, &lock(8, LockClass::Advisory, X, 0, 10)));
    // A new grant after the restart still has a higher token.
    assert!(granted(server.acquire(b, &whole(9, X))) > ta);

    // 8 clients x 125 lock+unlock pairs on 4 shared ids, all succeed.
    let start = Instant::now();
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let addr = server.addr();
            std::thread::spawn(move || {
                let client = 1000 + i;
                for n in 0..125u64 {
                    let mut r = whole(50 + n % 4, X);
                    r.wait_ms = 20_000;
                    let (acquire, rel_path) = ("/v1/locks/acquire", "/v1/locks/release");
                    let resp = request_as(&addr, client, "POST", acquire, &[], &codec::encode(&r));
                    assert_eq!(resp.status, 200);
                    granted(codec::decode(&resp.body).unwrap());
                    let rel = codec::encode(&release(50 + n % 4, LockClass::Advisory));
                    let resp = request_as(&addr, client, "POST", rel_path, &[], &rel);
                    assert_eq!(resp.status, 200, "{}", resp.describe());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eprintln!("1000 lock+unlock pairs in {:?}", start.elapsed());
    for ino in 50..54 {
        assert!(server.list(Some(ino)).is_empty());
    }
}
