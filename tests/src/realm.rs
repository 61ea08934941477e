//! A realm for tests that talk HTTP to a server directly: `dfs-server init` on a data dir,
//! and requests signed as any principal with tickets minted from the realm's service key
//! (as the realm's KDC would mint them). A signed request is kept whole, so a test can
//! send it again exactly as a network attacker who captured it would (a replay). These
//! requests name no client (as a tool's, not a mount's): what is tested is the ticket and
//! the authenticator, not a client's proof (`crate::clients`).
//!
//! Must not reach into the server's data dir except to read the realm's service key.

use crate::http::{http, HttpResponse};
use crate::procs::bin;
use dfs_common::auth::{self, Authenticator, Identity, Key, Ticket};
use dfs_common::codec;
use dfs_common::proto::DirRequest;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The realm the tests make.
pub const TEST_REALM: &str = "TEST.DFS";

/// Makes a realm in data dir `data` with `dfs-server init` (admin password `admin-pw`)
/// and returns its service key.
pub fn init_realm(data: &Path) -> Key {
    let mut init = Command::new(bin("dfs-server"))
        .args(["init", "--realm", TEST_REALM, "--password-stdin"])
        .args(["--iterations", "1000", "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dfs-server init");
    init.stdin
        .take()
        .expect("stdin")
        .write_all(b"admin-pw\n")
        .expect("password to dfs-server init");
    assert!(init.wait().expect("dfs-server init").success());
    let key = std::fs::read(data.join("realm/dfs.key")).expect("realm service key");
    Key(key.try_into().expect("a 32-byte service key"))
}

/// A principal of the realm, with a service ticket for the file service.
pub struct Principal {
    name: String,
    ticket: Vec<u8>,
    session_key: Key,
}

impl Principal {
    /// Principal `u{uid}` acting as `uid` (and group `uid`), with a ticket sealed with
    /// `service_key`, valid for an hour.
    pub fn minted(service_key: &Key, uid: u32, admin: bool) -> Principal {
        Principal::minted_in_groups(service_key, uid, &[], admin)
    }

    /// `minted`, also a member of `groups`.
    pub fn minted_in_groups(service_key: &Key, uid: u32, groups: &[u32], admin: bool) -> Principal {
        let now = dfs_common::Timestamp::now().secs;
        let name = format!("u{uid}");
        let session_key = Key::random();
        let ticket = Ticket {
            identity: Identity {
                principal: name.clone(),
                realm: TEST_REALM.into(),
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
        Principal {
            name,
            ticket: ticket.seal(service_key),
            session_key,
        }
    }

    /// A request signed now with a fresh authenticator. `extra` headers are covered by
    /// the signature; a store (`PUT`) must carry `x-dfs-sha256` in them.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> CapturedRequest {
        let mut headers: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let sha = auth::sha256(body);
        if method != "PUT" {
            headers.push((auth::HDR_BODY_SHA256.into(), codec::to_hex(&sha)));
        }
        let digest = auth::request_digest(
            method,
            path,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            &sha,
        );
        let now = dfs_common::Timestamp::now();
        let authenticator = Authenticator {
            principal: self.name.clone(),
            time: now.secs,
            nanos: now.nanos,
            nonce: auth::random_u64(),
            seq: 1,
            digest,
        };
        headers.push((auth::HDR_TICKET.into(), codec::to_hex(&self.ticket)));
        headers.push((
            auth::HDR_AUTH.into(),
            codec::to_hex(&auth::seal_ap_auth(&self.session_key, &authenticator)),
        ));
        CapturedRequest {
            method: method.into(),
            path: path.into(),
            headers,
            body: body.to_vec(),
        }
    }

    /// A signed `POST /v1/dir`.
    pub fn dir(&self, req: &DirRequest) -> CapturedRequest {
        self.sign("POST", "/v1/dir", &[], &codec::encode(req))
    }
}

/// A request as it went over the wire, to be sent (again).
#[derive(Clone, Debug)]
pub struct CapturedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CapturedRequest {
    /// An unsigned (anonymous) request.
    pub fn anonymous(method: &str, path: &str, body: &[u8]) -> CapturedRequest {
        CapturedRequest {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }

    /// An anonymous `POST /v1/dir`.
    pub fn anonymous_dir(req: &DirRequest) -> CapturedRequest {
        CapturedRequest::anonymous("POST", "/v1/dir", &codec::encode(req))
    }

    /// Sends it to `addr` and reads the answer.
    pub fn send(&self, addr: &str) -> HttpResponse {
        let h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        http(addr, &self.method, &self.path, &h, &self.body)
            .unwrap_or_else(|e| panic!("{} {} to {addr}: {e}", self.method, self.path))
    }
}
