//! A small HTTP client of a real `dfs-server` for the tests of this directory that need
//! one: start the binary (open cell, or a realm made with `dfs-server init`), send
//! directory requests, fetches, stores and transactions as a caller of either (in a realm
//! with tickets minted from the realm's service key, as its KDC would mint them; without a
//! ticket a caller of a realm is anonymous), as a registered client (`dfs_common::client_id`:
//! test client number `n` of a server is registered on first use), and read a client's
//! (sealed) callback channel. Owns nothing the server has; must not reach into the server's
//! data dir except for the realm's service key.

use dfs_common::auth::{self, Authenticator, Identity, Key, Ticket};
use dfs_common::client_id::{Prover, HDR_EPOCH};
use dfs_common::proto::{CallbackFrame, DirReply, DirRequest, XattrSet};
use dfs_common::tx::{BeginReply, CommitReply, CommitRequest, Staged, TxId, TxStatus};
use dfs_common::{codec, Attr, FileKind, Ino};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
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
        self.header("x-dfs-error")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Test clients by (server port, number).
type Registered = HashMap<(u16, u64), Arc<Prover>>;

/// Test client `n` (not 0) of the server on `port`, registered on first use.
pub fn client(port: u16, n: u64) -> Arc<Prover> {
    static CLIENTS: OnceLock<Mutex<Registered>> = OnceLock::new();
    let mut all = CLIENTS.get_or_init(Default::default).lock().unwrap();
    all.entry((port, n))
        .or_insert_with(|| {
            let prover = Prover::register(|body| {
                let r = send(
                    port,
                    "POST",
                    dfs_common::client_id::REGISTER_PATH,
                    &[],
                    &body,
                );
                assert_eq!(
                    r.status,
                    200,
                    "registration: {}",
                    String::from_utf8_lossy(&r.body)
                );
                Ok(r.body)
            })
            .expect("registration");
            Arc::new(prover)
        })
        .clone()
}

/// Makes a request's headers from a client's proof headers.
pub type HeadersWith<'a> = dyn Fn(&[(&'static str, String)]) -> Vec<(String, String)> + 'a;

/// Sends a request as test client `n` (none when 0) with `headers` (made by `headers` for
/// the proof's headers), once more if the server restarted since (a new epoch).
pub fn send_as(
    port: u16,
    n: u64,
    method: &str,
    path: &str,
    headers: &HeadersWith,
    body: &[u8],
) -> Resp {
    let proof = |n: u64| match n {
        0 => Vec::new(),
        n => client(port, n).headers(method, path).to_vec(),
    };
    let r = send(port, method, path, &headers(&proof(n)), body);
    if n != 0 && r.status == 401 && r.code() == Some("EEPOCH") {
        let epoch = r
            .header(HDR_EPOCH)
            .and_then(|v| v.parse().ok())
            .expect("epoch");
        client(port, n).set_epoch(epoch);
        return send(port, method, path, &headers(&proof(n)), body);
    }
    r
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
        Server::start_with(data, &[])
    }

    /// `start` with extra options (`--anonymous write`, …).
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dfs-server"))
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
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

/// Who calls: a test client number (0: none), and in a realm a ticket and its session key.
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

    /// Sends a request as this caller, with `extra` headers.
    pub fn send(
        &self,
        s: &Server,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Resp {
        let headers = |proof: &[(&'static str, String)]| {
            let mut all = proof.to_vec();
            all.extend(extra.iter().cloned());
            self.headers(method, path, &all, body)
        };
        send_as(s.port, self.client, method, path, &headers, body)
    }

    /// The request's headers: `extra` (the client's proof among them), and in a realm the
    /// AP headers. The body is covered by `x-dfs-body-sha256`, which this adds, except on
    /// a store, whose `x-dfs-sha256` (in `extra`) covers it.
    pub fn headers(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = Vec::new();
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
        self.send(s, "POST", "/v1/dir", &[], &body)
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
        self.send(s, "PUT", &path, &extra, data)
    }

    pub fn fetch_status(&self, s: &Server, ino: Ino) -> u16 {
        self.fetch(s, ino).status
    }

    /// `GET /v1/files/{ino}`: the whole answer.
    pub fn fetch(&self, s: &Server, ino: Ino) -> Resp {
        let path = format!("/v1/files/{ino}");
        self.send(s, "GET", &path, &[], b"")
    }

    /// A `POST` of `body` to `path`, signed in a realm.
    pub fn post(&self, s: &Server, path: &str, body: &[u8]) -> Resp {
        self.send(s, "POST", path, &[], body)
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
        let r = self.send(s, "PUT", &path, &extra, data);
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
        let r = self.send(s, "GET", &path, &[], b"");
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

/// The callback channel of test client `n`, opened (it is sealed with the client's key)
/// and read frame by frame.
pub struct Callbacks {
    stream: TcpStream,
    buf: Vec<u8>,
    opener: dfs_common::privacy::Opener,
    plain: Vec<u8>,
}

impl Callbacks {
    pub fn open(port: u16, n: u64) -> Callbacks {
        let prover = client(port, n);
        let epoch: u64 = send(port, "GET", "/v1/health", &[], b"")
            .header(HDR_EPOCH)
            .and_then(|v| v.parse().ok())
            .expect("the server's epoch");
        prover.set_epoch(epoch);
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = "GET /v1/callbacks HTTP/1.1\r\nhost: test\r\n".to_string();
        for (k, v) in prover.headers("GET", "/v1/callbacks") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let got = stream.read(&mut chunk).expect("callback channel read");
            assert!(got > 0, "callback channel closed");
            buf.extend_from_slice(&chunk[..got]);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 200"),
            "callback channel refused: {head}"
        );
        let nonce = head
            .lines()
            .find_map(|l| l.strip_prefix("x-dfs-channel-nonce:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .expect("channel nonce");
        buf.drain(..end + 4);
        let key = prover.channel_key(epoch);
        let mut cb = Callbacks {
            stream,
            buf,
            opener: dfs_common::privacy::Opener::new(
                &key,
                dfs_common::privacy::Dir::Response,
                nonce,
            ),
            plain: Vec::new(),
        };
        assert!(matches!(cb.next(), CallbackFrame::Hello { .. }));
        cb
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).expect("callback channel read");
        assert!(n > 0, "callback channel closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next frame (the channel's body is chunked and sealed: one frame may span
    /// chunks and sealed frames).
    pub fn next(&mut self) -> CallbackFrame {
        loop {
            if let Some(frame) = codec::take_frame::<CallbackFrame>(&mut self.plain).unwrap() {
                return frame;
            }
            while let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size = std::str::from_utf8(&self.buf[..eol]).unwrap().trim();
                let n = usize::from_str_radix(size, 16).unwrap();
                if self.buf.len() < eol + 2 + n + 2 {
                    break;
                }
                let sealed = self.buf[eol + 2..eol + 2 + n].to_vec();
                self.buf.drain(..eol + 2 + n + 2);
                let opened = self.opener.push(&sealed).expect("the channel opens");
                self.plain.extend_from_slice(&opened);
                if let Some(frame) = codec::take_frame::<CallbackFrame>(&mut self.plain).unwrap() {
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
