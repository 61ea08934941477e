//! The client's side of the wire: one HTTP/1.1 keep-alive connection pool to one server,
//! the `/v1/dir` calls, and streaming fetch/store of whole files between the server and a
//! local file (reading local files to send them is `upload`'s). Owns request timeouts and
//! the mapping of transport failures to `FsError::Unavailable`. It must not know about
//! caches, handles or FUSE.

use crate::auth::Signed;
use crate::cache::filling::Filling;
use bytes::Bytes;
use dfs_common::auth;
use dfs_common::codec;
use dfs_common::privacy::{self, HDR_PROTECTION as PRIVACY_HDR};
use dfs_common::proto::{self, DirReply, DirRequest};
use dfs_common::{Attr, FsError, Ino};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::time::Duration;

mod upload;

pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

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

/// What a fetch found.
pub enum Fetched {
    /// The caller's version is current; nothing was transferred.
    NotModified(Attr),
    /// The contents were written to the destination file.
    Fetched(Attr),
}

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
    base: String,
    client_id: u64,
    http: Client<HttpConnector, Body>,
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
    /// `addr` is `HOST:PORT`.
    pub fn new(addr: &str, client_id: u64) -> Remote {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Remote {
            base: format!("http://{addr}"),
            client_id,
            http,
        }
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(proto::HDR_CLIENT, self.client_id.to_string())
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<hyper::body::Incoming>, FsError> {
        self.http.request(req).await.map_err(unavailable)
    }

    /// Signs `req` with the calling user's credentials, if any (see `crate::auth`), and
    /// sends it. `body_sha` is the SHA-256 of the body.
    async fn send_signed(
        &self,
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
        let privacy = crate::privacy::enabled() && crate::auth::current_credentials().is_some();
        if privacy {
            let h = req.headers_mut();
            h.insert(PRIVACY_HDR, HeaderValue::from_static(privacy::PRIVACY));
            if let Some(len) = h.remove(hyper::header::CONTENT_LENGTH) {
                h.insert(privacy::HDR_PLAIN_LENGTH, len);
            }
        }
        let mut signed = crate::auth::sign(&method, &pq, req.headers_mut(), &body_sha, store)?;
        if let Some(s) = signed.as_mut() {
            s.privacy = privacy;
        }
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
                crate::auth::current_uid(),
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

    /// One directory-service call.
    pub async fn dir(&self, req: &DirRequest) -> Result<DirReply, FsError> {
        if log::log_enabled!(log::Level::Trace) {
            let what = format!("{req:?}");
            log::trace!("dir request {what:.60}");
        }
        self.call("/v1/dir", req, Duration::ZERO).await
    }

    /// A bincode `POST` to `path`. `extra` lengthens the timeout for calls the server may
    /// legitimately hold (a lock wait).
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        extra: Duration,
    ) -> Result<Resp, FsError> {
        let bytes = codec::encode(req);
        let sha = auth::sha256(&bytes);
        let http_req = self
            .request(Method::POST, path)
            .body(full(bytes))
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let call = async {
            let (resp, signed) = self.send_signed(http_req, sha, false).await?;
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

    /// Fetches `ino` into `dest` unless the server still has `have_version`.
    /// On error `dest` may hold a partial file; the caller removes it.
    ///
    /// When the server's node holds no copy of the contents, it names the nodes that do
    /// and this reads them from there (checked against the signed blob id), trying each
    /// in turn; if none serves a good copy, the server is asked again to fetch it itself.
    pub(crate) async fn fetch(
        &self,
        ino: Ino,
        have_version: Option<u64>,
        dest: &Path,
        progress: Option<&std::sync::Arc<Filling>>,
    ) -> Result<Fetched, FsError> {
        // At the privacy level only the server's sealed answer may carry contents.
        let replica_ok =
            !(crate::privacy::enabled() && crate::auth::current_credentials().is_some());
        let (attr, nodes, token) = match self
            .fetch_from(ino, have_version, dest, replica_ok, progress)
            .await?
        {
            FetchOutcome::Done(f) => return Ok(f),
            FetchOutcome::Elsewhere { attr, nodes, token } => (attr, nodes, token),
        };
        match crate::replica_read::read(&self.http, &attr, &nodes, &token, dest).await {
            Ok(()) => Ok(Fetched::Fetched(attr)),
            Err(e) => {
                log::warn!("inode {ino}: no node named by the server served its contents ({e}); asking the server");
                match self
                    .fetch_from(ino, have_version, dest, false, progress)
                    .await?
                {
                    FetchOutcome::Done(f) => Ok(f),
                    FetchOutcome::Elsewhere { .. } => Err(FsError::Io(
                        "the server sent a fetch elsewhere that asked not to be".into(),
                    )),
                }
            }
        }
    }

    async fn fetch_from(
        &self,
        ino: Ino,
        have_version: Option<u64>,
        dest: &Path,
        replica_ok: bool,
        progress: Option<&std::sync::Arc<Filling>>,
    ) -> Result<FetchOutcome, FsError> {
        let mut builder = self.request(Method::GET, &format!("/v1/files/{ino}"));
        if let Some(v) = have_version {
            builder = builder.header(proto::HDR_HAVE_VERSION, v.to_string());
        }
        if replica_ok {
            builder = builder.header(dfs_common::cluster::HDR_REPLICA_OK, "1");
        }
        let http_req = builder
            .body(full(Vec::new()))
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let (resp, signed) = tokio::time::timeout(
            META_TIMEOUT,
            self.send_signed(http_req, auth::sha256(b""), false),
        )
        .await
        .map_err(|_| unavailable("fetch timed out"))??;
        let status = resp.status();
        if status != StatusCode::OK {
            let (status, headers, body) = Self::finish(resp, signed.as_ref()).await?;
            if status == StatusCode::SEE_OTHER && replica_ok {
                let get = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                        .ok_or_else(|| FsError::Io(format!("fetch answer without {name}")))
                };
                return Ok(FetchOutcome::Elsewhere {
                    attr: codec::from_header(&get(proto::HDR_ATTR)?)?,
                    nodes: get(dfs_common::cluster::HDR_REPLICAS)?,
                    token: get(dfs_common::cluster::HDR_READ_TOKEN)?,
                });
            }
            if status != StatusCode::NOT_MODIFIED {
                return Err(Self::error_from(status, &headers, &body));
            }
            let attr: Attr = headers
                .get(proto::HDR_ATTR)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| FsError::Io("fetch answer without attributes".into()))
                .and_then(codec::from_header)?;
            return Ok(FetchOutcome::Done(Fetched::NotModified(attr)));
        }
        if let Some(s) = &signed {
            crate::auth::verify(s, status.as_u16(), resp.headers(), &auth::STREAMED)?;
        }
        let attr: Attr = resp
            .headers()
            .get(proto::HDR_ATTR)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| FsError::Io("fetch answer without attributes".into()))
            .and_then(codec::from_header)?;
        if status == StatusCode::NOT_MODIFIED {
            return Ok(FetchOutcome::Done(Fetched::NotModified(attr)));
        }
        let body: Body = match &signed {
            Some(s) if s.privacy => crate::privacy::opening(
                resp.into_body(),
                privacy::Opener::new(&s.key, privacy::Dir::Response, s.nonce),
            ),
            _ => resp
                .into_body()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .boxed(),
        };
        // Signed fetches check the contents against the (signed) blob id.
        crate::replica_read::receive(body, &attr, dest, signed.is_some(), IDLE_TIMEOUT, progress)
            .await?;
        Ok(FetchOutcome::Done(Fetched::Fetched(attr)))
    }

    /// Stores the whole contents of `src` as the new contents of `ino`, fenced by the
    /// token of the writer's lock if it has one, with the permission bits `mode` if given
    /// (`HDR_MODE`), clearing set-id bits if `kill_suid` (`HDR_KILL_SUID`). Returns the
    /// new attributes once the server has made them durable.
    pub async fn store(
        &self,
        ino: Ino,
        src: &Path,
        fence: Option<u64>,
        mode: Option<u32>,
        kill_suid: bool,
    ) -> Result<Attr, FsError> {
        // Signed stores carry the contents' hash, which the signature covers and the
        // server checks.
        let signing = crate::auth::current_credentials().is_some();
        let file = std::fs::File::open(src)?;
        let meta = file.metadata()?;
        // The contents' own mtime travels with them (it may have been set by utimens).
        let mtime = meta.modified().ok().map(dfs_common::Timestamp::from_system);
        let (body, len, sha) = if meta.len() <= INLINE_IO {
            // Read and hashed right here: a thread hop would cost more than the work. What
            // is read is what is sent (a passthrough writer may be growing it; the caller
            // checks).
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            std::io::Read::read_to_end(&mut &file, &mut bytes)?;
            let sha = signing.then(|| dfs_common::hash::blob_id_of(&bytes).0);
            let n = bytes.len() as u64;
            (full(bytes), n, sha)
        } else {
            let sha = match signing {
                false => None,
                true => Some(Self::hash_file(src).await?),
            };
            let (body, len) = if meta.len() <= SMALL_BODY {
                // One write with the headers: no per-chunk hops.
                let cap = meta.len() as usize;
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut bytes = Vec::with_capacity(cap);
                    std::io::Read::read_to_end(&mut &file, &mut bytes).map(|_| bytes)
                })
                .await
                .map_err(|e| FsError::Io(e.to_string()))??;
                let n = bytes.len() as u64;
                (full(bytes), n)
            } else {
                (Self::stream_file(file, meta.len(), None), meta.len())
            };
            (body, len, sha)
        };
        let mut builder = self
            .store_request(ino, fence, kill_suid)
            .header(hyper::header::CONTENT_LENGTH, len.to_string());
        if let Some(mtime) = mtime {
            builder = builder.header(proto::HDR_MTIME, codec::to_header(&mtime));
        }
        if let Some(mode) = mode {
            builder = builder.header(proto::HDR_MODE, mode.to_string());
        }
        if let Some(sha) = &sha {
            builder = builder.header(proto::HDR_SHA256, codec::to_hex(sha));
        }
        let http_req = builder
            .body(body)
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let result = async {
            let (resp, signed) = self
                .send_signed(http_req, sha.unwrap_or_default(), true)
                .await?;
            Self::stored_attr(resp, signed.as_ref()).await
        }
        .await;
        result
    }

    /// Stores `body`, sent while its file is still being written (see `cache::behind`): no
    /// length, hash or mtime up front, so unsigned only. Returns the new attributes once
    /// the server has made them durable.
    pub async fn store_streamed(
        &self,
        ino: Ino,
        body: Body,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> Result<Attr, FsError> {
        let http_req = self
            .store_request(ino, fence, kill_suid)
            .body(body)
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let resp = self.send(http_req).await?;
        Self::stored_attr(resp, None).await
    }

    /// The start of a store of `ino`, fenced by `fence` if the writer holds the lock, and
    /// clearing the file's set-id bits if `kill_suid`.
    fn store_request(
        &self,
        ino: Ino,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> hyper::http::request::Builder {
        let mut builder = self.request(Method::PUT, &format!("/v1/files/{ino}"));
        if let Some(token) = fence {
            builder = builder.header(dfs_common::locks::HDR_FENCE, token.to_string());
        }
        if kill_suid {
            builder = builder.header(proto::HDR_KILL_SUID, "1");
        }
        builder
    }

    /// The new attributes a store's answer carries, or the error it reports.
    async fn stored_attr(
        resp: Response<hyper::body::Incoming>,
        signed: Option<&Signed>,
    ) -> Result<Attr, FsError> {
        let (status, headers, body) = Self::finish(resp, signed).await?;
        if !status.is_success() {
            return Err(Self::error_from(status, &headers, &body));
        }
        codec::decode::<Attr>(&body)
    }

    /// A bincode `GET` of `path`.
    pub async fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, FsError> {
        let http_req = self
            .request(Method::GET, path)
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

    /// Opens the callback channel; returns the streaming body.
    pub async fn callbacks(&self) -> Result<hyper::body::Incoming, FsError> {
        let http_req = self
            .request(Method::GET, "/v1/callbacks")
            .body(full(Vec::new()))
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let resp = tokio::time::timeout(META_TIMEOUT, self.send(http_req))
            .await
            .map_err(|_| unavailable("callback channel timed out"))??;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        Ok(resp.into_body())
    }
}
