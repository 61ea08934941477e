//! Starts the real `dfs-server` binary on a free port and talks raw HTTP/1.1 to it: bad
//! requests are refused with messages and the server keeps serving, directory requests
//! work, an 8 MiB store reads back, a store survives `kill -9`, SIGTERM exits 0.

#[allow(dead_code)]
mod harness;

use dfs_common::hash::blob_id_of;
use dfs_common::proto::{
    CallbackFrame, DirReply, DirRequest, HDR_ATTR, HDR_HAVE_VERSION, HDR_SHA256,
};
use dfs_common::{codec, Attr, FileKind, ROOT_INO};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server child; killed on drop so it never outlives a failing test.
struct Server {
    child: Option<Child>,
    port: u16,
}

impl Server {
    fn start(data: &Path, port: u16) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dfs-server"))
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dfs-server");
        let server = Server {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = server.try_request("GET", "/v1/health", &[], b"") {
                if r.status == 200 {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        // The server may answer (and close) before it has read a body it refuses.
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok(Resp::parse(&raw))
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Resp {
        self.try_request(method, path, headers, body)
            .expect("request")
    }

    fn dir(&self, req: &DirRequest) -> DirReply {
        self.dir_as(17, req)
    }

    /// A request as registered test client `n` (`harness::client`), sent once more if
    /// the server restarted since.
    fn request_as(
        &self,
        n: u64,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Resp {
        let prover = harness::client(self.port, n);
        let send = || {
            let mut h: Vec<(&str, String)> = prover.headers(method, path).to_vec();
            h.extend(extra.iter().cloned());
            self.request(method, path, &h, body)
        };
        let r = send();
        if r.status == 401 && r.header("x-dfs-error") == Some("EEPOCH") {
            let epoch = r
                .header(dfs_common::client_id::HDR_EPOCH)
                .unwrap()
                .parse()
                .unwrap();
            prover.set_epoch(epoch);
            return send();
        }
        r
    }

    /// The server's epoch, as every answer names it.
    fn epoch(&self) -> u64 {
        let r = self.request("GET", "/v1/health", &[], b"");
        r.header(dfs_common::client_id::HDR_EPOCH)
            .unwrap()
            .parse()
            .unwrap()
    }

    fn dir_as(&self, client: u64, req: &DirRequest) -> DirReply {
        let r = self.request_as(client, "POST", "/v1/dir", &[], &codec::encode(req));
        assert_eq!(
            r.status,
            200,
            "{req:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        codec::decode(&r.body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn parse(raw: &[u8]) -> Resp {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        if chunked {
            body = dechunk(&body);
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        b = &b[line_end + 2..];
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn attr(reply: DirReply) -> Attr {
    match reply {
        DirReply::Attr(a) | DirReply::Made { attr: a, .. } => a,
        other => panic!("expected Attr, got {other:?}"),
    }
}

fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn real_server_over_raw_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let port = free_port();
    let mut server = Server::start(&data, port);

    // Garbage is a 400 with a message, and the server goes on.
    let r = server.request("POST", "/v1/dir", &[], &[0xff; 40]);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-dfs-error"), Some("EBADMSG"));
    assert!(String::from_utf8_lossy(&r.body).contains("malformed request"));

    // A declared 2 MiB directory request is refused without being read.
    let r = server.request(
        "POST",
        "/v1/dir",
        &[("content-length", (2u64 << 20).to_string())],
        b"",
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-dfs-error"), Some("EFBIG"));

    // Unknown paths and wrong methods.
    assert_eq!(server.request("GET", "/v2/nothing", &[], b"").status, 404);
    assert_eq!(server.request("GET", "/v1/dir", &[], b"").status, 405);

    // Mkdir then Lookup.
    let d = attr(server.dir(&DirRequest::Mkdir {
        parent: ROOT_INO,
        name: b"d".to_vec(),
        mode: 0o755,
        umask: 0,
        uid: 1000,
        gid: 1000,
    }));
    assert_eq!(d.kind, FileKind::Dir);
    let found = attr(server.dir(&DirRequest::Lookup {
        parent: ROOT_INO,
        name: b"d".to_vec(),
    }));
    assert_eq!(found, d);
    let r = server.request(
        "POST",
        "/v1/dir",
        &[],
        &codec::encode(&DirRequest::Mkdir {
            parent: ROOT_INO,
            name: b"d".to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 0,
            gid: 0,
        }),
    );
    assert_eq!((r.status, r.header("x-dfs-error")), (409, Some("EEXIST")));

    // An 8 MiB store reads back byte for byte.
    let f = attr(server.dir(&DirRequest::Create {
        parent: d.ino,
        name: b"big".to_vec(),
        mode: 0o644,
        umask: 0,
        uid: 1000,
        gid: 1000,
        exclusive: true,
    }));
    let contents = pseudo_random(8 << 20);
    let path = format!("/v1/files/{}", f.ino);
    let sha = blob_id_of(&contents).to_hex();
    let r = server.request("PUT", &path, &[(HDR_SHA256, sha)], &contents);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let stored: Attr = codec::decode(&r.body).unwrap();
    assert_eq!((stored.size, stored.version), (contents.len() as u64, 2));
    let r = server.request("GET", &path, &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body == contents, "fetched bytes differ");
    let fetched: Attr = codec::from_header(r.header(HDR_ATTR).unwrap()).unwrap();
    assert_eq!(fetched, stored);
    let r = server.request("GET", &path, &[(HDR_HAVE_VERSION, "2".into())], b"");
    assert_eq!(r.status, 304);
    assert!(r.header(HDR_ATTR).is_some());

    // A wrong hash stores nothing.
    let r = server.request("PUT", &path, &[(HDR_SHA256, "00".repeat(32))], b"other");
    assert_eq!((r.status, r.header("x-dfs-error")), (422, Some("ECORRUPT")));

    // Durability: a store acknowledged before kill -9 is there after a restart.
    let small = b"durable bytes".to_vec();
    let r = server.request("PUT", &path, &[], &small);
    assert_eq!(r.status, 200);
    server.kill9();
    let mut server = Server::start(&data, port);
    let r = server.request("GET", &path, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, small);

    // SIGTERM: clean exit with status 0.
    let mut child = server.child.take().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    server.kill9();
}

#[test]
fn callbacks_break_other_clients_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let port = free_port();
    let server = Server::start(&data, port);
    let (a, b) = (100u64, 200u64);
    let d = attr(server.dir_as(
        b,
        &DirRequest::Mkdir {
            parent: ROOT_INO,
            name: b"d".to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 0,
            gid: 0,
        },
    ));
    let f = attr(server.dir_as(
        b,
        &DirRequest::Create {
            parent: d.ino,
            name: b"f".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 0,
            gid: 0,
            exclusive: true,
        },
    ));
    let mut cb = harness::Callbacks::open(port, a);
    let epoch = server.epoch();
    // A looks at d and f: promises on both.
    attr(server.dir_as(
        a,
        &DirRequest::Lookup {
            parent: d.ino,
            name: b"f".to_vec(),
        },
    ));
    // B stores f: A hears Break{f}.
    let path = format!("/v1/files/{}", f.ino);
    let r = server.request_as(b, "PUT", &path, &[], b"new bytes");
    assert_eq!(r.status, 200);
    assert_eq!(cb.next_change(), CallbackFrame::Break { ino: f.ino });
    // B adds a name in d: A hears EntryBreak{d, name} and Break{d}.
    attr(server.dir_as(
        b,
        &DirRequest::Create {
            parent: d.ino,
            name: b"g".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 0,
            gid: 0,
            exclusive: true,
        },
    ));
    assert_eq!(
        cb.next_change(),
        CallbackFrame::EntryBreak {
            dir: d.ino,
            name: b"g".to_vec()
        }
    );
    assert_eq!(cb.next_change(), CallbackFrame::Break { ino: d.ino });
    // A's own changes send A nothing: the next frame A hears is about B's change.
    attr(server.dir_as(
        a,
        &DirRequest::Lookup {
            parent: d.ino,
            name: b"f".to_vec(),
        },
    ));
    let r = server.request_as(a, "PUT", &path, &[], b"mine");
    assert_eq!(r.status, 200);
    attr(server.dir_as(
        b,
        &DirRequest::Mkdir {
            parent: d.ino,
            name: b"h".to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 0,
            gid: 0,
        },
    ));
    assert_eq!(
        cb.next_change(),
        CallbackFrame::EntryBreak {
            dir: d.ino,
            name: b"h".to_vec()
        }
    );
    assert_eq!(cb.next_change(), CallbackFrame::Break { ino: d.ino });
    let r = server.request_as(b, "PUT", &path, &[], b"theirs");
    assert_eq!(r.status, 200);
    assert_eq!(cb.next_change(), CallbackFrame::Break { ino: f.ino });
    drop(cb);
    // A restart is a new epoch.
    drop(server);
    let server = Server::start(&data, port);
    assert_ne!(epoch, server.epoch());
    // The client's registration survived the restart: its channel opens again.
    let _cb = harness::Callbacks::open(port, a);
}
