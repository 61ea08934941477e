//! The client's side of the wire: one HTTP/1.1 keep-alive connection pool to the
//! directory's nodes (`servers`: the one that leads, when the directory is replicated),
//! the `/v1/dir` calls, the callback channel, and (`files`) streaming fetch/store of whole
//! files between the server and a local file. Every request of a mount carries the proof of
//! its client identity (`identity`); one refused because the server restarted (a new
//! epoch) or forgot the mount (unknown id), or sent to a node that does not lead, is sent
//! again under the same request id after mending that (`retry`). Each
//! request that acts on files names who it acts for (`Who`) and is signed with their
//! credentials from this remote's `CredentialStore`, at this remote's protection level
//! (both fixed when it is built). Owns request timeouts and the mapping of transport
//! failures to `FsError::Unavailable`. It must not know about caches, handles or FUSE (it
//! implements the cache's port, `crate::port::Server`, in `http_port`).

mod files;
mod http_port;
#[cfg(feature = "testing")]
pub(crate) use http_port::frames_of;
pub mod identity;
mod retry;
mod servers;
pub(crate) use retry::Attempt;
mod upload;

use crate::auth::{CredentialStore, Signed};
pub use crate::port::Fetched;
use crate::port::{PortError, Who};
use crate::privacy::Protection;
use bytes::Bytes;
use dfs_common::auth;
use dfs_common::client_id;
use dfs_common::codec;
use dfs_common::privacy::{self, HDR_PROTECTION as PRIVACY_HDR};
use dfs_common::proto::{self, DirReply, DirRequest};
use dfs_common::{Attr, FsError};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::port::Body;

/// How long a metadata call may take before it fails (the server may be gone).
const META_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a data transfer may go without moving a byte.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bodies up to this size are sent in one piece.
const SMALL_BODY: u64 = 1 << 20;
/// Files up to this size are read, hashed and written on the async thread itself: for
/// them a hop to the blocking pool costs more than the work.
pub(crate) const INLINE_IO: u64 = 128 << 10;
/// Chunk size for streaming file bodies.
const CHUNK: usize = 1 << 20;

/// Told how many bytes of a file have been read for sending so far.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// What one fetch request got: an answer, or the nodes to read the contents from.
enum FetchOutcome {
    Done(Fetched),
    Elsewhere {
        attr: Attr,
        nodes: String,
        token: String,
    },
}

#[derive(Clone)]
pub struct Remote {
    /// The directory nodes this client may ask, and the one it asks now.
    servers: Arc<servers::Servers>,
    /// Who this client is to the server; `None`: anonymous (a command-line tool).
    identity: Option<Arc<identity::Identity>>,
    /// The credentials its users handed it, which sign their requests.
    credentials: Arc<CredentialStore>,
    /// Whether signed requests ask for privacy.
    protection: Protection,
    http: Client<HttpConnector, Body>,
}

/// An error that may be the server's answer (which `Remote::with_client` looks at).
pub(crate) trait ServerAnswer {
    fn answer(&self) -> Option<&FsError>;
}

impl ServerAnswer for FsError {
    fn answer(&self) -> Option<&FsError> {
        Some(self)
    }
}

impl ServerAnswer for PortError {
    fn answer(&self) -> Option<&FsError> {
        PortError::answer(self)
    }
}

fn unavailable(e: impl std::fmt::Display) -> FsError {
    FsError::Unavailable(e.to_string())
}

fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

impl Remote {
    /// An anonymous remote for the server at `addr` (`HOST:PORT`): it names no client, so
    /// it holds no promises, locks or callback channel (the `dfs` tools).
    pub fn new(addr: &str) -> Remote {
        Remote::with_identity(addr, None)
    }

    /// The remote of a client (a mount, or a program holding transactions) that is
    /// `identity` to the server (registered on first use).
    pub fn for_client(addr: &str, identity: identity::Identity) -> Remote {
        Remote::with_identity(addr, Some(Arc::new(identity)))
    }

    /// This remote, signing with the credentials in `store` (shared with whoever files
    /// them: a mount's control socket). A new remote holds none: everyone is anonymous.
    pub fn with_credentials(mut self, store: Arc<CredentialStore>) -> Remote {
        self.credentials = store;
        self
    }

    /// This remote at protection level `protection` (default: integrity).
    pub fn with_protection(mut self, protection: Protection) -> Remote {
        self.protection = protection;
        self
    }

    /// The credentials this remote signs with.
    pub fn credentials(&self) -> &Arc<CredentialStore> {
        &self.credentials
    }

    /// Whether requests of `who` are signed (the store holds their credentials).
    pub fn signs(&self, who: &Who) -> bool {
        self.credentials.of(who).is_some()
    }

    /// Whether requests of `who` ask for privacy (and so their contents come only in the
    /// server's sealed answer).
    fn private(&self, who: &Who) -> bool {
        self.protection == Protection::Privacy && self.signs(who)
    }

    fn with_identity(addr: &str, identity: Option<Arc<identity::Identity>>) -> Remote {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Remote {
            servers: Arc::new(servers::Servers::parse(addr)),
            identity,
            credentials: Arc::new(CredentialStore::new()),
            protection: Protection::default(),
            http,
        }
    }

    /// The client id the server issued this client (0: anonymous, or not registered yet).
    pub fn client_id(&self) -> u64 {
        self.identity.as_ref().map_or(0, |i| i.client())
    }

    /// `http://HOST:PORT` of the server requests go to now.
    fn base(&self) -> String {
        format!("http://{}", self.servers.current())
    }

    /// The servers this client knows, the one it asks now first.
    pub fn servers(&self) -> Vec<String> {
        self.servers.all()
    }

    /// A request to `path` as `attempt` of a call (its request id, the same in every
    /// attempt), with this client's proof of identity.
    fn request(
        &self,
        method: Method,
        path: &str,
        attempt: Attempt,
    ) -> hyper::http::request::Builder {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(format!("{}{}", self.base(), path))
            .header(proto::HDR_REQUEST_ID, format!("{:016x}", attempt.id));
        if let Some((client, proof)) = self
            .identity
            .as_ref()
            .and_then(|i| i.proof(method.as_str(), path))
        {
            b = b
                .header(proto::HDR_CLIENT, client.to_string())
                .header(client_id::HDR_CLIENT_AUTH, proof);
        }
        b
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<hyper::body::Incoming>, FsError> {
        let started = std::time::Instant::now();
        let method = crate::metrics::method_index(req.method());
        // Only for the debug line: the id, method and path of the request.
        let traced = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            let id = req
                .headers()
                .get(proto::HDR_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            (id, req.method().clone(), req.uri().path().to_string())
        });
        crate::metrics::SERVER_REQUESTS.inc(method);
        let sent = self.http.request(req).await;
        crate::metrics::SERVER_LATENCY.observe(method, started.elapsed());
        if let Some((id, m, path)) = traced {
            match &sent {
                Ok(r) => tracing::debug!(
                    request_id = %id,
                    "{m} {path} -> {} in {:?}",
                    r.status().as_u16(),
                    started.elapsed()
                ),
                Err(e) => tracing::debug!(request_id = %id, "{m} {path} failed: {e}"),
            }
        }
        if sent.is_err() {
            crate::metrics::SERVER_ERRORS.inc();
        }
        let resp = sent.map_err(unavailable)?;
        // Every answer names the server's epoch, which our proofs must carry.
        if let Some(identity) = &self.identity {
            let epoch = resp
                .headers()
                .get(client_id::HDR_EPOCH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            if let Some(epoch) = epoch {
                identity.saw_epoch(epoch);
            }
        }
        Ok(resp)
    }

    /// Signs `req` with the credentials of `who`, if they have any (see `crate::auth`),
    /// and sends it. `body_sha` is the SHA-256 of the body.
    async fn send_signed(
        &self,
        who: &Who,
        mut req: Request<Body>,
        body_sha: [u8; 32],
        store: bool,
    ) -> Result<(Response<hyper::body::Incoming>, Option<Signed>), FsError> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let method = req.method().as_str().to_string();
        let creds = self.credentials.for_signing(who)?;
        let privacy = self.protection == Protection::Privacy && creds.is_some();
        if privacy {
            let h = req.headers_mut();
            h.insert(PRIVACY_HDR, HeaderValue::from_static(privacy::PRIVACY));
            if let Some(len) = h.remove(hyper::header::CONTENT_LENGTH) {
                h.insert(privacy::HDR_PLAIN_LENGTH, len);
            }
        }
        let signed = creds.map(|creds| {
            let mut s =
                self.credentials
                    .sign(&creds, &method, &pq, req.headers_mut(), &body_sha, store);
            s.privacy = privacy;
            s
        });
        let req = match &signed {
            Some(s) if s.privacy => {
                let sealer = privacy::Sealer::new(&s.key, privacy::Dir::Request, s.nonce);
                req.map(|b| crate::privacy::sealing(b, sealer))
            }
            _ => req,
        };
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            log::warn!(
                "{method} {pq}: the server refused the credentials of uid {:?}: {}; run `dfs login` again",
                who.uid(),
                resp.headers()
                    .get(proto::HDR_DETAIL)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            );
        }
        Ok((resp, signed))
    }

    /// Reads a whole (small) answer and checks the server's proof on it.
    async fn finish(
        resp: Response<hyper::body::Incoming>,
        signed: Option<&Signed>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), FsError> {
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(META_TIMEOUT, body.collect())
            .await
            .map_err(|_| unavailable("answer timed out"))?
            .map_err(unavailable)?
            .to_bytes();
        let body = match signed {
            Some(s) if s.privacy && parts.status != StatusCode::UNAUTHORIZED => {
                privacy::open_all(&s.key, privacy::Dir::Response, s.nonce, &body)
                    .map(Bytes::from)
                    .map_err(|e| {
                        log::warn!("answer from the server failed its integrity check: {e}");
                        FsError::Corrupt(format!("answer failed its integrity check: {e}"))
                    })?
            }
            _ => body,
        };
        if let Some(s) = signed {
            if parts.status != StatusCode::UNAUTHORIZED {
                crate::auth::verify(
                    s,
                    parts.status.as_u16(),
                    &parts.headers,
                    &auth::sha256(&body),
                )?;
            }
        }
        Ok((parts.status, parts.headers, body))
    }

    fn error_from(status: StatusCode, headers: &hyper::HeaderMap, body: &[u8]) -> FsError {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match header(proto::HDR_ERROR) {
            Some(code) => FsError::from_code(&code, header(proto::HDR_DETAIL).unwrap_or_default()),
            None => FsError::Io(format!(
                "server answered {status}: {}",
                String::from_utf8_lossy(body).trim()
            )),
        }
    }

    /// Turns a non-success answer into the server's `FsError`.
    async fn error_of(resp: Response<hyper::body::Incoming>) -> FsError {
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let code = header(proto::HDR_ERROR);
        let detail = header(proto::HDR_DETAIL).unwrap_or_default();
        let status = resp.status();
        match code {
            Some(code) => FsError::from_code(&code, detail),
            None => {
                let body = tokio::time::timeout(META_TIMEOUT, resp.into_body().collect())
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
                    .unwrap_or_default();
                FsError::Io(format!("server answered {status}: {}", body.trim()))
            }
        }
    }

    /// One directory-service call for `who`.
    pub async fn dir(&self, who: &Who, req: &DirRequest) -> Result<DirReply, FsError> {
        if log::log_enabled!(log::Level::Trace) {
            let what = format!("{req:?}");
            log::trace!("dir request {what:.60}");
        }
        self.call(who, "/v1/dir", req, Duration::ZERO).await
    }

    /// A bincode `POST` to `path` for `who`. `extra` lengthens the timeout for calls the
    /// server may legitimately hold (a lock wait).
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        who: &Who,
        path: &str,
        req: &Req,
        extra: Duration,
    ) -> Result<Resp, FsError> {
        self.with_client(|a| self.call_once(a, who, path, req, extra))
            .await
    }

    async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        attempt: Attempt,
        who: &Who,
        path: &str,
        req: &Req,
        extra: Duration,
    ) -> Result<Resp, FsError> {
        let bytes = codec::encode(req);
        let sha = auth::sha256(&bytes);
        let http_req = self
            .request(Method::POST, path, attempt)
            .body(full(bytes))
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let call = async {
            let (resp, signed) = self.send_signed(who, http_req, sha, false).await?;
            let (status, headers, body) = Self::finish(resp, signed.as_ref()).await?;
            if !status.is_success() {
                return Err(Self::error_from(status, &headers, &body));
            }
            codec::decode::<Resp>(&body)
        };
        tokio::time::timeout(META_TIMEOUT + extra, call)
            .await
            .map_err(|_| unavailable(format!("{path} timed out")))?
    }

    /// A bincode `GET` of `path`, unsigned: it acts for nobody (a transaction's status is
    /// its client's, the cluster's everyone's).
    pub async fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, FsError> {
        self.with_client(|a| self.get_once(a, path)).await
    }

    async fn get_once<Resp: DeserializeOwned>(
        &self,
        attempt: Attempt,
        path: &str,
    ) -> Result<Resp, FsError> {
        let http_req = self
            .request(Method::GET, path, attempt)
            .body(full(Vec::new()))
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let call = async {
            let resp = self.send(http_req).await?;
            if !resp.status().is_success() {
                return Err(Self::error_of(resp).await);
            }
            let body = resp.into_body().collect().await.map_err(unavailable)?;
            codec::decode::<Resp>(&body.to_bytes())
        };
        tokio::time::timeout(META_TIMEOUT, call)
            .await
            .map_err(|_| unavailable(format!("{path} timed out")))?
    }

    /// What the server's realm is (its KDC's `RealmInfo`); an error if it serves none or
    /// cannot be reached. Asked anonymously: it comes before any ticket.
    pub async fn realm_info(&self) -> Result<dfs_common::auth::RealmInfo, String> {
        self.call(
            &Who::ANONYMOUS,
            dfs_common::auth::KDC_INFO,
            &(),
            Duration::ZERO,
        )
        .await
        .map_err(|e| format!("cannot reach the realm's KDC: {e}"))
    }

    /// Whether the server serves a realm (its KDC answers).
    pub async fn has_realm(&self) -> bool {
        self.realm_info().await.is_ok()
    }

    /// Opens this client's callback channel; returns its streaming body, opened as it
    /// comes (the server seals it with this client's key: `dfs_common::client_id`).
    pub async fn callbacks(&self) -> Result<Body, FsError> {
        self.with_client(|a| self.callbacks_once(a)).await
    }

    async fn callbacks_once(&self, attempt: Attempt) -> Result<Body, FsError> {
        let http_req = self
            .request(Method::GET, "/v1/callbacks", attempt)
            .body(full(Vec::new()))
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let resp = tokio::time::timeout(META_TIMEOUT, self.send(http_req))
            .await
            .map_err(|_| unavailable("callback channel timed out"))??;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let epoch: u64 = header(client_id::HDR_EPOCH)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| FsError::Io("callback channel without the server's epoch".into()))?;
        let nonce = header(client_id::HDR_CHANNEL_NONCE)
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .ok_or_else(|| FsError::Io("callback channel without its nonce".into()))?;
        let key = self
            .identity
            .as_ref()
            .and_then(|i| i.channel_key(epoch))
            .ok_or_else(|| {
                FsError::Invalid("an anonymous remote has no callback channel".into())
            })?;
        let opener = privacy::Opener::new(&key, privacy::Dir::Response, nonce);
        Ok(crate::privacy::opening(resp.into_body(), opener))
    }
}
