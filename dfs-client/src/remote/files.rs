//! Whole-file transfers with the server: fetch into a local file (or from the replicas the
//! server names), store from a local file (streamed, hashed when signed), store while the
//! file is still being written (`store_streamed`). Must not know about caches or handles
//! (a fetch reports how far it wrote through the port's `FetchProgress`).

use super::{full, unavailable, Attempt, Body, FetchOutcome, Fetched, Remote};
use super::{IDLE_TIMEOUT, INLINE_IO, META_TIMEOUT, SMALL_BODY};
use crate::auth::Signed;
use crate::port::{FetchProgress, PortError, Who};
use dfs_common::auth;
use dfs_common::privacy;
use dfs_common::proto;
use dfs_common::{codec, Attr, FsError, Ino};
use http_body_util::BodyExt;
use hyper::{Method, Response, StatusCode};
use std::path::Path;
use std::sync::Arc;

impl Remote {
    /// Fetches `ino` for `who` into `dest` unless the server still has `have_version`.
    /// On error `dest` may hold a partial file; the caller removes it.
    ///
    /// When the server's node holds no copy of the contents, it names the nodes that do
    /// and this reads them from there (checked against the signed blob id), trying each
    /// in turn; if none serves a good copy, the server is asked again to fetch it itself.
    pub(crate) async fn fetch(
        &self,
        who: &Who,
        ino: Ino,
        have_version: Option<u64>,
        dest: &Path,
        progress: Option<Arc<dyn FetchProgress>>,
    ) -> Result<Fetched, PortError> {
        // At the privacy level only the server's sealed answer may carry contents.
        let replica_ok = !self.private(who);
        let (attr, nodes, token) = match self
            .with_client(|a| {
                self.fetch_from(
                    a,
                    who,
                    ino,
                    have_version,
                    dest,
                    replica_ok,
                    progress.clone(),
                )
            })
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
                    .with_client(|a| {
                        self.fetch_from(a, who, ino, have_version, dest, false, progress.clone())
                    })
                    .await?
                {
                    FetchOutcome::Done(f) => Ok(f),
                    FetchOutcome::Elsewhere { .. } => Err(FsError::Io(
                        "the server sent a fetch elsewhere that asked not to be".into(),
                    )
                    .into()),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_from(
        &self,
        attempt: Attempt,
        who: &Who,
        ino: Ino,
        have_version: Option<u64>,
        dest: &Path,
        replica_ok: bool,
        progress: Option<Arc<dyn FetchProgress>>,
    ) -> Result<FetchOutcome, PortError> {
        let mut builder = self.request(Method::GET, &format!("/v1/files/{ino}"), attempt);
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
            self.send_signed(who, http_req, auth::sha256(b""), false),
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
                return Err(Self::error_from(status, &headers, &body).into());
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
        crate::metrics::BYTES_FETCHED.add(attr.size);
        Ok(FetchOutcome::Done(Fetched::Fetched(attr)))
    }

    /// Stores, for `who`, the whole contents of `src` as the new contents of `ino`, fenced
    /// by the token of the writer's lock if it has one, with the permission bits `mode` if
    /// given (`HDR_MODE`), clearing set-id bits if `kill_suid` (`HDR_KILL_SUID`). Returns
    /// the new attributes once the server has made them durable.
    pub async fn store(
        &self,
        who: &Who,
        ino: Ino,
        src: &Path,
        fence: Option<u64>,
        mode: Option<u32>,
        kill_suid: bool,
    ) -> Result<Attr, FsError> {
        self.with_client(|a| self.store_once(a, who, ino, src, fence, mode, kill_suid))
            .await
    }

    /// One attempt of `store`.
    #[allow(clippy::too_many_arguments)]
    async fn store_once(
        &self,
        attempt: Attempt,
        who: &Who,
        ino: Ino,
        src: &Path,
        fence: Option<u64>,
        mode: Option<u32>,
        kill_suid: bool,
    ) -> Result<Attr, FsError> {
        // Signed stores carry the contents' hash, which the signature covers and the
        // server checks.
        let signing = self.signs(who);
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
                true => Some(crate::file_hash::of_file(src).await?),
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
            .store_request(attempt, ino, fence, kill_suid)
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
                .send_signed(who, http_req, sha.unwrap_or_default(), true)
                .await?;
            Self::stored_attr(resp, signed.as_ref()).await
        }
        .await;
        if result.is_ok() {
            crate::metrics::BYTES_STORED.add(len);
        }
        result
    }

    /// Stores `body`, sent while its file is still being written (see `cache::behind`): no
    /// length, hash or mtime up front, so unsigned: anonymous in a realm, which is what
    /// the `who` the cache sends one for is (`signs` says they have no credentials).
    /// Returns the new attributes once the server has made them durable.
    pub async fn store_streamed(
        &self,
        ino: Ino,
        body: Body,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> Result<Attr, FsError> {
        let http_req = self
            .store_request(Attempt::single(), ino, fence, kill_suid)
            .body(body)
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let resp = self.send(http_req).await?;
        let stored = Self::stored_attr(resp, None).await;
        if let Ok(attr) = &stored {
            crate::metrics::BYTES_STORED.add(attr.size);
        }
        stored
    }

    /// The start of a store of `ino`, fenced by `fence` if the writer holds the lock, and
    /// clearing the file's set-id bits if `kill_suid`.
    fn store_request(
        &self,
        attempt: Attempt,
        ino: Ino,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> hyper::http::request::Builder {
        let mut builder = self.request(Method::PUT, &format!("/v1/files/{ino}"), attempt);
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
}
