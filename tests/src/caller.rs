//! A caller of a server for tests that speak the wire themselves, request by request: test
//! client number `n` (`crate::clients`; none when 0), and in a realm also a principal with
//! a ticket minted from the realm's service key (`crate::realm`); without a ticket a
//! caller of a realm is anonymous. Directory requests, fetches, stores, extended attributes
//! and transactions as that caller, answered whole (a refusal is the test's business) or
//! checked to succeed.
//!
//! Not re-exported at the crate root (its `attr` and `mknod` would clash with `sys`): use
//! `dfs_tests::caller::{As, attr, mknod}`. Must not reach into the server's data dir.

use crate::clients::http_with_proof;
use crate::http::{http, HttpResponse};
use crate::realm::Principal;
use crate::server::Server;
use dfs_common::auth::{self, Key};
use dfs_common::proto::{DirReply, DirRequest, XattrSet};
use dfs_common::tx::{BeginReply, CommitReply, CommitRequest, Staged, TxId, TxStatus};
use dfs_common::{codec, Attr, FileKind, Ino};

/// Who calls: a test client number (0: none), and in a realm a principal with its ticket.
pub struct As {
    client: u64,
    principal: Option<Principal>,
}

impl As {
    /// Test client `client` of an open cell (or an anonymous caller of a realm).
    pub fn open(client: u64) -> As {
        As {
            client,
            principal: None,
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
        As {
            client,
            principal: Some(Principal::minted_in_groups(service_key, uid, groups, admin)),
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
    ) -> HttpResponse {
        let addr = s.addr();
        let headers = |proof: Vec<(&'static str, String)>| {
            let mut all: Vec<(&str, String)> = proof;
            all.extend(extra.iter().cloned());
            self.headers(method, path, &all, body)
        };
        let r = if self.client == 0 {
            let all = headers(Vec::new());
            let all: Vec<(&str, &str)> =
                all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            http(&addr, method, path, &all, body)
        } else {
            http_with_proof(&addr, self.client, method, path, &headers, body)
        };
        r.unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"))
    }

    /// The request's headers: `extra` (the client's proof among them), and in a realm the
    /// ticket and an authenticator covering them and the body (`Principal::sign`).
    fn headers(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        match &self.principal {
            Some(p) => p.sign(method, path, extra, body).headers,
            None => extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    pub fn try_dir(&self, s: &Server, req: &DirRequest) -> HttpResponse {
        let body = codec::encode(req);
        self.send(s, "POST", "/v1/dir", &[], &body)
    }

    pub fn dir(&self, s: &Server, req: &DirRequest) -> DirReply {
        let r = self.try_dir(s, req);
        assert_eq!(r.status, 200, "{req:?}: {}", r.describe());
        codec::decode(&r.body).unwrap()
    }

    /// The `x-dfs-error` code of a request that must fail.
    pub fn refused(&self, s: &Server, req: &DirRequest) -> String {
        let r = self.try_dir(s, req);
        assert_ne!(r.status, 200, "{req:?} succeeded");
        r.code().unwrap_or("none").to_string()
    }

    /// `PUT /v1/files/{ino}` of `data`, its hash in `x-dfs-sha256`.
    pub fn store(
        &self,
        s: &Server,
        ino: Ino,
        data: &[u8],
        extra: &[(&str, String)],
    ) -> HttpResponse {
        let path = format!("/v1/files/{ino}");
        let mut extra = extra.to_vec();
        extra.push(("x-dfs-sha256", codec::to_hex(&auth::sha256(data))));
        self.send(s, "PUT", &path, &extra, data)
    }

    pub fn fetch_status(&self, s: &Server, ino: Ino) -> u16 {
        self.fetch(s, ino).status
    }

    /// `GET /v1/files/{ino}`: the whole answer.
    pub fn fetch(&self, s: &Server, ino: Ino) -> HttpResponse {
        let path = format!("/v1/files/{ino}");
        self.send(s, "GET", &path, &[], b"")
    }

    /// A `POST` of `body` to `path`, signed in a realm.
    pub fn post(&self, s: &Server, path: &str, body: &[u8]) -> HttpResponse {
        self.send(s, "POST", path, &[], body)
    }

    /// `POST /v1/tx/begin`: the whole answer.
    pub fn try_tx_begin(&self, s: &Server) -> HttpResponse {
        self.post(s, "/v1/tx/begin", b"")
    }

    pub fn tx_begin(&self, s: &Server) -> TxId {
        let r = self.try_tx_begin(s);
        assert_eq!(r.status, 200, "tx begin: {}", r.describe());
        codec::decode::<BeginReply>(&r.body).unwrap().tx
    }

    /// Stages `data` in transaction `tx`.
    pub fn tx_stage(&self, s: &Server, tx: TxId, data: &[u8]) -> Staged {
        let path = format!("/v1/tx/{tx}/blobs");
        let extra = [("x-dfs-sha256", codec::to_hex(&auth::sha256(data)))];
        let r = self.send(s, "PUT", &path, &extra, data);
        assert_eq!(r.status, 200, "stage: {}", r.describe());
        codec::decode(&r.body).unwrap()
    }

    pub fn tx_commit(&self, s: &Server, tx: TxId, req: &CommitRequest) -> CommitReply {
        let r = self.post(s, &format!("/v1/tx/{tx}/commit"), &codec::encode(req));
        assert_eq!(r.status, 200, "commit: {}", r.describe());
        codec::decode(&r.body).unwrap()
    }

    pub fn tx_status(&self, s: &Server, tx: TxId) -> TxStatus {
        let path = format!("/v1/tx/{tx}");
        let r = self.send(s, "GET", &path, &[], b"");
        assert_eq!(r.status, 200, "status: {}", r.describe());
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

    pub fn set_xattr(&self, s: &Server, ino: Ino, name: &[u8], value: &[u8]) -> HttpResponse {
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

/// The attributes in a directory answer (`Attr` or `Made`).
pub fn attr(reply: DirReply) -> Attr {
    match reply {
        DirReply::Attr(a) | DirReply::Made { attr: a, .. } => a,
        other => panic!("expected attributes, got {other:?}"),
    }
}

/// A `Mknod` request (mode 0666, umask 022).
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
