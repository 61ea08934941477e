//! Sending local contents: whole files streamed from disk (never all in memory) or bytes,
//! with their hash, to a store or a transaction's staging (`PUT`s, signed with the hash
//! when the user has credentials), and the hash of a local file.
//!
//! Owns: reading files for sending. Must not decide what is sent where (`super` and its
//! callers do).

use super::{full, Attempt, Body, Progress, Remote, CHUNK};
use crate::port::Who;
use bytes::Bytes;
use dfs_common::fileread::read_fresh;
use dfs_common::proto;
use dfs_common::{codec, FsError};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use serde::de::DeserializeOwned;
use std::path::Path;

impl Remote {
    /// `PUT`s the whole contents of local file `src` (streamed, never all in memory) to
    /// `path` for `who` and decodes the bincode answer. `progress` is told the bytes sent
    /// so far. Signed (with the contents' hash, read once before) when `who` has
    /// credentials.
    pub async fn put_file<Resp: DeserializeOwned>(
        &self,
        who: &Who,
        path: &str,
        src: &Path,
        progress: Option<Progress>,
    ) -> Result<Resp, FsError> {
        let sha = match self.signs(who) {
            true => Some(crate::file_hash::of_file(src).await?),
            false => None,
        };
        self.with_client(|a| {
            let progress = progress.clone();
            async move {
                let file = std::fs::File::open(src)?;
                let len = file.metadata()?.len();
                let body = Self::stream_file(file, len, progress);
                self.put_body(a, who, path, len, sha, body).await
            }
        })
        .await
    }

    /// `PUT`s `bytes` to `path` for `who` and decodes the bincode answer.
    pub async fn put_bytes<Resp: DeserializeOwned>(
        &self,
        who: &Who,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<Resp, FsError> {
        let len = bytes.len() as u64;
        let sha = self
            .signs(who)
            .then(|| dfs_common::hash::blob_id_of(&bytes).0);
        self.with_client(|a| self.put_body(a, who, path, len, sha, full(bytes.clone())))
            .await
    }

    /// A `PUT` of contents whose hash is `sha` (sent as `HDR_SHA256`, which the signature
    /// covers, as for a store).
    async fn put_body<Resp: DeserializeOwned>(
        &self,
        attempt: Attempt,
        who: &Who,
        path: &str,
        len: u64,
        sha: Option<[u8; 32]>,
        body: Body,
    ) -> Result<Resp, FsError> {
        let mut builder = self
            .request(Method::PUT, path, attempt)
            .header(hyper::header::CONTENT_LENGTH, len.to_string());
        if let Some(sha) = &sha {
            builder = builder.header(proto::HDR_SHA256, codec::to_hex(sha));
        }
        let http_req = builder
            .body(body)
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let (resp, signed) = self
            .send_signed(who, http_req, sha.unwrap_or_default(), true)
            .await?;
        let (status, headers, body) = Self::finish(resp, signed.as_ref()).await?;
        if !status.is_success() {
            return Err(Self::error_from(status, &headers, &body));
        }
        codec::decode::<Resp>(&body)
    }

    /// A body that streams `len` bytes of `file` in chunks read ahead on a blocking thread
    /// into unzeroed buffers; never the whole file in memory. `progress` is told the bytes
    /// read so far. A file that turns out shorter than `len` fails the body.
    pub(super) fn stream_file(file: std::fs::File, len: u64, progress: Option<Progress>) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tokio::task::spawn_blocking(move || {
            let mut sent: u64 = 0;
            while sent < len {
                let want = CHUNK.min((len - sent) as usize);
                let item = match read_fresh(&file, want, sent) {
                    Ok(buf) if buf.len() == want => Ok(Frame::data(Bytes::from(buf))),
                    Ok(_) => Err(std::io::Error::other("file shrank while being sent")),
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                // A send fails once the body is dropped (the request ended): stop reading.
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
                sent += want as u64;
                if let Some(p) = &progress {
                    p(sent);
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        BodyExt::boxed(StreamBody::new(stream))
    }
}
