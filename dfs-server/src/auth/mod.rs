//! The server end of the AP exchange and who a caller is.
//!
//! With a realm (`DATA/realm/`), every request except the KDC's own and `/v1/health` is
//! either anonymous (no `x-dfs-ticket`: the caller is `nobody`, and gets what the cell's
//! `--anonymous` level admits, by default nothing, see `anonymous`; within it, only what
//! is world-readable or world-writable) or carries a service ticket for `dfs` plus an
//! authenticator sealed with the ticket's session key, whose digest must match the request
//! as received (method, path, every `x-dfs-*` header, and the body's SHA-256, header
//! `x-dfs-body-sha256`, which the body reader checks). A bad ticket or authenticator is a
//! 401, never a fall-back to anonymous. Authenticators are remembered for the clock-skew
//! window, on disk too (`replay`), so a replay is refused, also after a restart. Every
//! answer to an authenticated request carries `x-dfs-auth-reply`: the nonce back (mutual
//! authentication) and the digest of the answer (status, `x-dfs-*` headers, body hash;
//! streamed file contents are covered by their content hash in `x-dfs-attr` instead).
//!
//! Without a realm (an "open" cell) `authenticate` is the old pass-through.
//!
//! Owns: `Security`, `Session`, `authenticate`, `seal_response`, the replay cache
//! (`replay`), what anonymous callers may do (`anonymous`), and the permission rules
//! (`perm`). Must not issue tickets (see `crate::kdc`).

pub mod anonymous;
pub mod caller;
pub mod perm;
pub mod privacy;
pub mod replay;

use crate::callbacks::ClientId;
use crate::kdc::Kdc;
use crate::net::body::{self as wire, full, ResBody};
pub use anonymous::AnonymousAccess;
use bytes::Bytes;
pub use caller::Caller;
use dfs_common::auth::{
    self, denied, ApReply, Identity, Key, Ticket, FILE_SERVICE, HDR_AUTH, HDR_AUTH_REPLY,
    HDR_TICKET,
};
use dfs_common::proto::HDR_SHA256;
use dfs_common::{codec, FsError};
use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
pub use replay::ReplayCache;

/// Header with the hex SHA-256 of a request body; required on authenticated requests
/// (file stores carry `x-dfs-sha256` instead).
pub use dfs_common::auth::HDR_BODY_SHA256;

/// uid and gid of anonymous callers.
pub const NOBODY: u32 = 65534;

pub struct Security {
    pub kdc: Kdc,
    pub replay: ReplayCache,
    /// What callers without a ticket may do (`anonymous`).
    pub anonymous: AnonymousAccess,
}

impl Security {
    /// A realm whose replay cache lives in memory only (tests).
    pub fn new(kdc: Kdc) -> Security {
        Security {
            kdc,
            replay: ReplayCache::new(),
            anonymous: AnonymousAccess::default(),
        }
    }
}

/// An authenticated request: who, and the key to answer with.
pub struct Session {
    pub identity: Identity,
    pub key: Key,
    pub nonce: u64,
    /// The request asked for the privacy protection level (`privacy`).
    pub privacy: bool,
}

fn hex_header<B>(req: &Request<B>, name: &str) -> Result<Option<Vec<u8>>, FsError> {
    match wire::header(req.headers(), name)? {
        None => Ok(None),
        Some(s) => codec::from_hex(s)
            .map(Some)
            .ok_or_else(|| denied(format!("header {name} is not hex"))),
    }
}

/// Who sends `req` on behalf of `client` (the mount its proof showed, 0 if none,
/// `crate::clients`), in the realm of `security` (an open cell without one). Called by
/// THE authentication hook, `crate::api::router::authenticate`.
pub fn authenticate<B>(
    client: ClientId,
    security: Option<&Security>,
    req: &mut Request<B>,
) -> Result<(Caller, Option<Session>), FsError> {
    let Some(sec) = security else {
        return Ok((Caller::open(client), None));
    };
    let path = req.uri().path();
    if path == "/v1/health" || (path.starts_with(auth::KDC_PREFIX) && path != auth::KDC_ADMIN) {
        return Ok((Caller::anonymous(client), None));
    }
    let ticket = hex_header(req, HDR_TICKET)?;
    let authenticator = hex_header(req, HDR_AUTH)?;
    let (ticket, sealed_auth) = match (ticket, authenticator) {
        (None, None) => {
            let (method, path) = (req.method().clone(), path.to_string());
            anonymous::admit(sec.anonymous, &method, &path, req.extensions_mut())?;
            return Ok((Caller::anonymous(client), None));
        }
        (Some(t), Some(a)) => (t, a),
        _ => {
            return Err(denied(
                "a ticket needs an authenticator and the other way round",
            ))
        }
    };
    let now = Kdc::now();
    let skew = sec.kdc.conf.skew_secs;
    let t = Ticket::open(sec.kdc.service_key(), FILE_SERVICE, &ticket, now, skew)?;
    let a = auth::open_ap_auth(&t.session_key, &sealed_auth)
        .map_err(|_| denied("authenticator not sealed with the ticket's session key"))?;
    if a.principal != t.identity.principal {
        return Err(denied("authenticator does not match the ticket"));
    }
    if *req.method() == Method::PUT && wire::header(req.headers(), HDR_SHA256)?.is_none() {
        return Err(denied(format!("an authenticated store needs {HDR_SHA256}")));
    }
    if *req.method() != Method::PUT && wire::header(req.headers(), HDR_BODY_SHA256)?.is_none() {
        return Err(denied(format!(
            "an authenticated request needs {HDR_BODY_SHA256}"
        )));
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()));
    let body_sha = body_sha_of(req)?;
    let digest = auth::request_digest(req.method().as_str(), pq, headers, &body_sha);
    if digest != a.digest {
        return Err(denied(
            "request does not match its authenticator (tampered?)",
        ));
    }
    sec.replay.check(&t.session_key, &a, now, skew)?;
    let caller = Caller::of(client, &t.identity);
    Ok((
        caller,
        Some(Session {
            identity: t.identity,
            key: t.session_key,
            nonce: a.nonce,
            privacy: privacy::wanted(req.headers()),
        }),
    ))
}

/// The body hash the digest binds: `x-dfs-sha256` for a store, `x-dfs-body-sha256` else.
fn body_sha_of<B>(req: &Request<B>) -> Result<[u8; 32], FsError> {
    let name = if *req.method() == Method::PUT {
        HDR_SHA256
    } else {
        HDR_BODY_SHA256
    };
    let v = hex_header(req, name)?.unwrap_or_default();
    v.try_into()
        .map_err(|_| denied(format!("{name} is not a SHA-256")))
}

/// Whether the answer's body is hashed whole into its digest: everything except streamed
/// file contents (covered by the blob id in `x-dfs-attr`) and the callback channel.
pub fn body_covered(method: &Method, path: &str, status: u16) -> bool {
    !(path == "/v1/callbacks"
        || (*method == Method::GET && path.starts_with("/v1/files/") && status == 200))
}

/// Adds `x-dfs-auth-reply` to the answer of an authenticated request.
pub async fn seal_response(
    session: &Session,
    method: &Method,
    path: &str,
    resp: Response<ResBody>,
) -> Response<ResBody> {
    let (mut parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut whole = None;
    let (body, body_sha) = if body_covered(method, path, status) {
        let bytes: Bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                log::warn!("cannot collect an answer to seal: {e}");
                Bytes::new()
            }
        };
        let sha = auth::sha256(&bytes);
        whole = Some(bytes.clone());
        (full(bytes), sha)
    } else {
        (body, auth::STREAMED)
    };
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()));
    let digest = auth::response_digest(status, headers, &body_sha);
    let reply = auth::seal_ap_reply(
        &session.key,
        &ApReply {
            nonce: session.nonce,
            digest,
        },
    );
    if let Ok(v) = HeaderValue::from_str(&codec::to_hex(&reply)) {
        parts.headers.insert(HDR_AUTH_REPLY, v);
    }
    let resp = Response::from_parts(parts, body);
    if session.privacy {
        privacy::seal_response(session, resp, whole)
    } else {
        resp
    }
}
