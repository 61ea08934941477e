//! A small HTTP client of a real `dfs-server` for the tests of this directory that need
//! one: start the binary (open cell, or a realm made with `dfs-server init`), send
//! directory requests, fetches, stores and transactions as a caller of either (in a realm
//! with tickets minted from the realm's service key, as its KDC would mint them; without a
//! ticket a caller of a realm is anonymous), and read a client's callback channel. Owns
//! nothing the server has; must not reach into the server's data dir except for the
//! realm's service key.

use dfs_common::auth::{self, Authenticator, Identity, Key, Ticket};
use dfs_common::proto::{CallbackFrame, DirReply, DirRequest, XattrSet};
use dfs_common::tx::{BeginReply, CommitReply, CommitRequest, Staged, TxId, TxStatus};
use dfs_common::{codec, Attr, FileKind, Ino};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn code(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == "x-dfs-error")
            .map(|(_, v)| v.as_str())
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let text = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status = lines
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
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

/// Makes a realm in data dir `data` (`dfs-server init`) and returns its service key.
pub fn init_realm(data: &Path) -> Key {
    let mut init = Command::new(env!("CARGO_BIN_EXE_dfs-server"))
        .args([
            "init",
            "--realm",
            "TEST.DFS",
            "--password-stdin",
            "--iterations",
            "1000",
            "--data-dir",
        ])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    init.stdin.take().unwrap().write_all(b"admin-pw\n").unwrap();
    assert!(init.wait().unwrap().success(), "dfs-server init");
    let key = std::fs::read(data.join("realm/dfs.key")).unwrap();
    Key(key.try_into().unwrap())
}

impl Server {
    pub fn start(data: &Path) -> Server {
        let port = free_port();
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dfs-server"))
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dfs-server");
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || send(port, "GET", "/v1/health", &[], b"").status != 200
        {
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

/// Who calls: a client id, and in a realm a ticket and its session key.
pub struct As {
    client: u64,
    ticket: Option<(Vec<u8>, Key, String)>,
}

impl As {
    pub fn open(client: u64) -> As {
        As {
            client,
            ticket: None,
        }
    }

    /// A caller of the realm whose service key is `service_key`: uid `uid`, its own group
    /// (gid = uid) and no other.
    pub fn realm(service_key: &Key, client: u64, uid: u32, admin: bool) -> As {
        As::realm_in_groups(service_key, client, uid, &[], admin)
    }

    /// `realm`, also a member of `groups`.
    pub fn realm_in_groups(
        service_key: &Key,
        client: u64,
        uid: u32,
        groups: &[u32],
        admin: bool,
    ) -> As {
        let now = dfs_common::Timestamp::now().secs;
        let principal = format!("u{uid}");
        let session_key = Key::random();
        let ticket = Ticket {
            identity: Identity {
                principal: principal.clone(),
                realm: "TEST.DFS".into(),
                uid,
                gid: uid,
                groups: groups.to_vec(),
                admin,
            },
            service: auth::FILE_SERVICE.into(),
            session_key: session_key.clone(),
            issued: now,
            expires: now + 3600,
        };
        As {
            client,
            ticket: Some((ticket.seal(service_key), session_key, principal)),
        }
    }

    /// The request's headers: the client id, `extra`, and in a realm the AP headers. The
    /// body is covered by `x-dfs-body-sha256`, which this adds, except on a store, whose
    /// `x-dfs-sha256` (in `extra`) covers it.
    pub fn headers(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let mut h = vec![("x-dfs-client".to_string(), self.client.to_string())];
        h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let Some((ticket, key, principal)) = &self.ticket else {
            return h;
        };
        let sha = auth::sha256(body);
        if method != "PUT" {
            h.push((auth::HDR_BODY_SHA256.into(), codec::to_hex(&sha)));
        }
        let digest = auth::request_digest(
            method,
            path,
            h.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            &sha,
        );
        let now = dfs_common::Timestamp::now();
        let a = Authenticator {
            principal: principal.clone(),
            time: now.secs,
            nanos: now.nanos,
            nonce: auth::random_u64(),
            seq: 1,
            digest,
        };
        h.push((auth::HDR_TICKET.into(), codec::to_hex(ticket)));
        h.push((
            auth::HDR_AUTH.into(),
            codec::to_hex(&auth::seal_ap_auth(key, &a)),
        ));
        h
    }

    pub fn try_dir(&self, s: &Server, req: &DirRequest) -> Resp {
        let body = codec::encode(req);
        let h = self.headers("POST", "/v1/dir", &[], &body);
        send(s.port, "POST", "/v1/dir", &h, &body)
    }

    pub fn dir(&self, s: &Server, req: &DirRequest) -> DirReply {
        let r = self.try_dir(s, req);
        assert_eq!(
            r.status,
            200,
            "{req:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        codec::decode(&r.body).unwrap()
    }

    /// The `x-dfs-error` code of a request that must fail.
    pub fn refused(&self, s: &Server, req: &DirRequest) -> String {
        let r = self.try_dir(s, req);
        assert_ne!(r.status, 200, "{req:?} succeeded");
        r.code().unwrap_or("none").to_string()
    }

    pub fn store(&self, s: &Server, ino: Ino, data: &[u8], extra: &[(&str, String)]) -> Resp {
        let path = format!("/v1/files/{ino}");
        let mut extra = extra.to_vec();
        extra.push(("x-dfs-sha256", codec::to_hex(&auth::sha256(data))));
        let h = self.headers("PUT", &path, &extra, data);
        send(s.port, "PUT", &path, &h, data)
    }

    pub fn fetch_status(&self, s: &Server, ino: Ino) -> u16 {
        self.fetch(s, ino).status
    }

    /// `GET /v1/files/{ino}`: the whole answer.
    pub fn fetch(&self, s: &Server, ino: Ino) -> Resp {
        let path = format!("/v1/files/{ino}");
        let h = self.headers("GET", &path, &[], b"");
        send(s.port, "GET", &path, &h, b"")
    }

    /// A `POST` of `body` to `path`, signed in a realm.
    pub fn post(&self, s: &Server, path: &str, body: &[u8]) -> Resp {
        let h = self.headers("POST", path, &[], body);
        send(s.port, "POST", path, &h, body)
    }

    /// `POST /v1/tx/begin`: the whole answer (a refusal is a test's business).
    pub fn try_tx_begin(&self, s: &Server) -> Resp {
        self.post(s, "/v1/tx/begin", b"")
    }

    pub fn tx_begin(&self, s: &Server) -> TxId {
        let r = self.try_tx_begin(s);
        assert_eq!(
            r.status,
            200,
            "tx begin: {}",
            String::from_utf8_lossy(&r.body)
        );
        codec::decode::<BeginReply>(&r.body).unwrap().tx
    }

    /// Stages `data` in transaction `tx`.
    pub fn tx_stage(&self, s: &Server, tx: TxId, data: &[u8]) -> Staged {
        let path = format!("/v1/tx/{tx}/blobs");
        let extra = [("x-dfs-sha256", codec::to_hex(&auth::sha256(data)))];
        let h = self.headers("PUT", &path, &extra, data);
        let r = send(s.port, "PUT", &path, &h, data);
        assert_eq!(r.status, 200, "stage: {}", String::from_utf8_lossy(&r.body));
        codec::decode(&r.body).unwrap()
    }

    pub fn tx_commit(&self, s: &Server, tx: TxId, req: &CommitRequest) -> CommitReply {
        let r = self.post(s, &format!("/v1/tx/{tx}/commit"), &codec::encode(req));
        assert_eq!(
            r.status,
            200,
            "commit: {}",
            String::from_utf8_lossy(&r.body)
        );
        codec::decode(&r.body).unwrap()
    }

    pub fn tx_status(&self, s: &Server, tx: TxId) -> TxStatus {
        let path = format!("/v1/tx/{tx}");
        let h = self.headers("GET", &path, &[], b"");
        let r = send(s.port, "GET", &path, &h, b"");
        assert_eq!(
            r.status,
            200,
            "status: {}",
            String::from_utf8_lossy(&r.body)
        );
        codec::decode(&r.body).unwrap()
    }

    pub fn create(&self, s: &Server, parent: Ino, name: &str, mode: u32) -> Attr {
        attr(self.dir(
            s,
            &DirRequest::Create {
                parent,
                name: name.into(),
                mode,
                umask: 0,
                uid: 0,
                gid: 0,
                exclusive: true,
            },
        ))
    }

    pub fn mkdir(&self, s: &Server, parent: Ino, name: &str, mode: u32) -> Attr {
        attr(self.dir(
            s,
            &DirRequest::Mkdir {
                parent,
                name: name.into(),
                mode,
                umask: 0,
                uid: 0,
                gid: 0,
            },
        ))
    }

    pub fn getattr(&self, s: &Server, ino: Ino) -> Attr {
        attr(self.dir(s, &DirRequest::GetAttr { ino }))
    }

    pub fn lookup(&self, s: &Server, parent: Ino, name: &str) -> Attr {
        let name = name.into();
        attr(self.dir(s, &DirRequest::Lookup { parent, name }))
    }

    pub fn set_xattr(&self, s: &Server, ino: Ino, name: &[u8], value: &[u8]) -> Resp {
        self.try_dir(
            s,
            &DirRequest::SetXattr {
                ino,
                name: name.to_vec(),
                value: value.to_vec(),
                how: XattrSet::Either,
            },
        )
    }

    /// The names of `ino`'s extended attributes this caller is shown.
    pub fn xattr_names(&self, s: &Server, ino: Ino) -> Vec<String> {
        match self.dir(s, &DirRequest::Xattrs { ino }) {
            DirReply::Xattrs(all) => all
                .into_iter()
                .map(|(n, _)| String::from_utf8(n).unwrap())
                .collect(),
            other => panic!("{other:?}"),
        }
    }
}

pub fn attr(reply: DirReply) -> Attr {
    match reply {
        DirReply::Attr(a) | DirReply::Made { attr: a, .. } => a,
        other => panic!("expected attributes, got {other:?}"),
    }
}

pub fn mknod(parent: Ino, name: &str, kind: FileKind, rdev: u32) -> DirRequest {
    DirRequest::Mknod {
        parent,
        name: name.into(),
        kind,
        mode: 0o666,
        umask: 0o022,
        rdev,
        uid: 0,
        gid: 0,
    }
}

/// The callback channel of `client`, read frame by frame.
pub struct Callbacks {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Callbacks {
    pub fn open(port: u16, client: u64) -> Callbacks {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head =
            format!("GET /v1/callbacks HTTP/1.1\r\nhost: test\r\nx-dfs-client: {client}\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut cb = Callbacks {
            stream,
            buf: Vec::new(),
        };
        while !cb.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            cb.fill();
        }
        let end = cb.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        cb.buf.drain(..end + 4);
        assert!(matches!(cb.next(), CallbackFrame::Hello { .. }));
        cb
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).expect("callback channel read");
        assert!(n > 0, "callback channel closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next frame (the channel's body is chunked: one frame may span chunks).
    pub fn next(&mut self) -> CallbackFrame {
        let mut body = Vec::new();
        loop {
            while let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size = std::str::from_utf8(&self.buf[..eol]).unwrap().trim();
                let n = usize::from_str_radix(size, 16).unwrap();
                if self.buf.len() < eol + 2 + n + 2 {
                    break;
                }
                body.extend_from_slice(&self.buf[eol + 2..eol + 2 + n]);
                self.buf.drain(..eol + 2 + n + 2);
                if let Some(frame) = codec::take_frame::<CallbackFrame>(&mut body).unwrap() {
                    assert!(body.is_empty());
                    return frame;
                }
            }
            self.fill();
        }
    }

    /// The next frame that is not a heartbeat.
    pub fn next_change(&mut self) -> CallbackFrame {
        loop {
            match self.next() {
                CallbackFrame::Heartbeat => continue,
                f => return f,
            }
        }
    }
}
