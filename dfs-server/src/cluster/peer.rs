//! The HTTP client one node uses to talk to another: signed requests, checked answers,
//! timeouts, and streamed blob bodies both ways.
//!
//! Owns: connections to peers (bound to this node's own IP, so a link can be cut by
//! address), the call shapes of `/v1/cluster/`. Must not: decide what to send (callers
//! do) or touch blob files other than streaming one it is handed.

use super::key::{ClusterKey, STREAMED};
use crate::blobs::BlobStore;
use crate::net::body::{self as wire, ReqBody};
use bytes::Bytes;
use dfs_common::cluster::{self as proto, Digests, Listing, ListingRequest};
use dfs_common::privacy::{Dir, Opener, Sealer, HDR_PLAIN_LENGTH};
use dfs_common::proto::{HDR_DETAIL, HDR_ERROR};
use dfs_common::sealed_body::{opening, sealing};
use dfs_common::{codec, BlobId, FsError};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for a control call (digests, listings, orders).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while streaming a blob either way.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest control answer accepted (a listing of a few buckets).
const ANSWER_LIMIT: usize = 256 << 20;
/// Longest wait for a push's answer (the receiver's fsync) after its last byte.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// `Tracked::progress` once the whole body has been handed over.
const SENT: u64 = u64::MAX;

/// A body that records when it last gave out a frame (unix ms), or `SENT` at its end.
struct Tracked {
    inner: ReqBody,
    progress: Arc<AtomicU64>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(_)) => {
                self.progress.store(super::key::now_ms(), Ordering::Relaxed)
            }
            std::task::Poll::Ready(None) => self.progress.store(SENT, Ordering::Relaxed),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

pub struct PeerClient {
    http: Client<HttpConnector, ReqBody>,
    key: Option<ClusterKey>,
    me: String,
}

fn unreachable(addr: SocketAddr, e: impl std::fmt::Display) -> FsError {
    FsError::Unavailable(format!("node {addr}: {e}"))
}

fn sha256(b: &[u8]) -> [u8; 32] {
    dfs_common::auth::sha256(b)
}

impl PeerClient {
    pub fn new(local_ip: IpAddr, key: Option<ClusterKey>, me: &str) -> PeerClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        if !local_ip.is_unspecified() {
            connector.set_local_address(Some(local_ip));
        }
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        PeerClient {
            http,
            key,
            me: me.to_string(),
        }
    }

    fn key(&self) -> Result<&ClusterKey, FsError> {
        self.key
            .as_ref()
            .ok_or_else(|| FsError::NotSupported("this node is not in a cluster".into()))
    }

    /// Sends a signed request; returns the answer, the request's MAC and its time (the
    /// nonce of sealed blob bodies both ways). `body` gets the time and makes the body.
    async fn send(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        body: impl FnOnce(u64) -> ReqBody,
        body_sha: &[u8; 32],
        len: Option<u64>,
    ) -> Result<(Response<Incoming>, Vec<u8>, u64), FsError> {
        let key = self.key()?;
        let mut b = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}{path}"));
        // The MAC covers the destination too: a captured order replayed to another
        // node does not verify there.
        let target = format!("{addr}{path}");
        let signed = key.sign_request(method.as_str(), &target, &self.me, body_sha);
        let mac = codec::from_hex(&signed[2].1).unwrap_or_default();
        let time: u64 = signed[1].1.parse().unwrap_or(0);
        for (k, v) in signed {
            b = b.header(k, v);
        }
        let body = match len {
            Some(n) if body_sha == &STREAMED => {
                // A sealed blob body: its length on the wire is not the blob's.
                b = b.header(HDR_PLAIN_LENGTH, n);
                sealing(body(time), Sealer::new(&key.seal_key(), Dir::Request, time))
            }
            Some(n) => {
                b = b.header(CONTENT_LENGTH, n);
                body(time)
            }
            None => body(time),
        };
        let req = b.body(body).map_err(|e| FsError::Invalid(e.to_string()))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| unreachable(addr, e))?;
        Ok((resp, mac, time))
    }

    /// Reads a whole (small) answer, checks its MAC against the request's, and turns a
    /// failure status into an error.
    async fn checked_answer(
        &self,
        addr: SocketAddr,
        resp: Response<Incoming>,
        request_mac: &[u8],
        limit: usize,
    ) -> Result<Bytes, FsError> {
        let (parts, body) = resp.into_parts();
        let bytes = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| unreachable(addr, e))?
            .to_bytes();
        self.key()?.verify_answer(
            request_mac,
            parts.status.as_u16(),
            &parts.headers,
            &sha256(&bytes),
        )?;
        if !parts.status.is_success() {
            return Err(answer_error(addr, parts.status, &parts.headers));
        }
        Ok(bytes)
    }

    /// A control call: bincode body in, checked bincode body out.
    async fn call(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Bytes, FsError> {
        self.call_within(addr, method, path, body, CALL_TIMEOUT)
            .await
    }

    /// `call` with a deadline of the caller's.
    async fn call_within(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, FsError> {
        let work = async {
            let sha = sha256(&body);
            let len = body.len() as u64;
            let (resp, mac, _) = self
                .send(addr, method, path, |_| wire::full(body), &sha, Some(len))
                .await?;
            self.checked_answer(addr, resp, &mac, ANSWER_LIMIT).await
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| unreachable(addr, format!("{path} timed out")))?
    }

    /// One call of the directory's Raft (`crate::raft::network`): bincode in, checked
    /// bincode out, within `ttl` (openraft's deadline for the call).
    pub async fn raft_call(
        &self,
        addr: SocketAddr,
        call: &str,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Bytes, FsError> {
        let path = format!("{}raft/{call}", proto::PREFIX);
        self.call_within(addr, Method::POST, &path, body, ttl).await
    }

    /// Asks `addr` for a change of the directory's voters (`dfs-server admin`); the
    /// answer is the log state after it. Waits up to `ttl` (a new voter catches up first).
    pub async fn members(
        &self,
        addr: SocketAddr,
        change: &proto::MembershipChange,
        ttl: Duration,
    ) -> Result<proto::RaftStatus, FsError> {
        let path = format!("{}{}", proto::PREFIX, proto::DIRECTORY_MEMBERS);
        let answer = self
            .call_within(addr, Method::POST, &path, codec::encode(change), ttl)
            .await?;
        codec::decode(&answer)
    }

    pub async fn digests(&self, addr: SocketAddr) -> Result<Digests, FsError> {
        let path = format!("{}digests", proto::PREFIX);
        codec::decode(&self.call(addr, Method::GET, &path, Vec::new()).await?)
    }

    pub async fn listing(&self, addr: SocketAddr, buckets: Vec<u16>) -> Result<Listing, FsError> {
        let path = format!("{}listing", proto::PREFIX);
        let body = codec::encode(&ListingRequest { buckets });
        codec::decode(&self.call(addr, Method::POST, &path, body).await?)
    }

    /// Sends an order (`pull`: answer = blobs newly queued; `delete`: copies deleted).
    pub async fn order<T: serde::Serialize>(
        &self,
        addr: SocketAddr,
        name: &str,
        order: &T,
    ) -> Result<u64, FsError> {
        let path = format!("{}{name}", proto::PREFIX);
        let answer = self
            .call(addr, Method::POST, &path, codec::encode(order))
            .await?;
        codec::decode(&answer)
    }

    /// Streams the local file of blob `id` (`size` bytes) to `addr`, which answers once
    /// its copy is fsynced. Fails when the body makes no progress for `IDLE_TIMEOUT`, or
    /// the answer takes longer than `ANSWER_TIMEOUT` after the last byte; a slow but
    /// moving transfer of any size is left to finish.
    pub async fn push_blob(
        &self,
        addr: SocketAddr,
        id: BlobId,
        file: std::fs::File,
        size: u64,
    ) -> Result<(), FsError> {
        let progress = Arc::new(AtomicU64::new(super::key::now_ms()));
        let tracked = progress.clone();
        let body = move |_| {
            Tracked {
                inner: wire::channel(BlobStore::read_stream(file, size), Some(size)),
                progress: tracked,
            }
            .boxed()
        };
        let path = proto::blob_path(&id);
        let work = async {
            let (resp, mac, _) = self
                .send(addr, Method::PUT, &path, body, &STREAMED, Some(size))
                .await?;
            self.checked_answer(addr, resp, &mac, 1 << 20)
                .await
                .map(drop)
        };
        let watchdog = async {
            let mut sent_at: Option<std::time::Instant> = None;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let last = progress.load(Ordering::Relaxed);
                if last == SENT {
                    let t = *sent_at.get_or_insert_with(std::time::Instant::now);
                    if t.elapsed() > ANSWER_TIMEOUT {
                        return "no answer after the last byte";
                    }
                } else if super::key::now_ms().saturating_sub(last)
                    > IDLE_TIMEOUT.as_millis() as u64
                {
                    return "the transfer stalled";
                }
            }
        };
        tokio::select! {
            r = work => r,
            why = watchdog => Err(unreachable(addr, format!("push of blob {id}: {why}"))),
        }
    }

    /// Asks `addr` for its copy of `id`: the answer's status and headers are checked;
    /// returns the blob's length and its opened body, which is the caller's to check
    /// against `id`.
    pub async fn fetch_blob(
        &self,
        addr: SocketAddr,
        id: &BlobId,
    ) -> Result<(u64, ReqBody), FsError> {
        let path = proto::blob_path(id);
        let work = async {
            let (resp, mac, time) = self
                .send(
                    addr,
                    Method::GET,
                    &path,
                    |_| wire::empty(),
                    &sha256(b""),
                    None,
                )
                .await?;
            if resp.status() != StatusCode::OK {
                let status = resp.status();
                let headers = resp.headers().clone();
                return Err(answer_error(addr, status, &headers));
            }
            self.key()?
                .verify_answer(&mac, 200, resp.headers(), &STREAMED)?;
            let len = resp
                .headers()
                .get(HDR_PLAIN_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| unreachable(addr, "a blob answer without its length"))?;
            let opener = Opener::new(&self.key()?.seal_key(), Dir::Response, time);
            Ok((len, opening(resp.into_body(), opener)))
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .map_err(|_| unreachable(addr, format!("fetch of blob {id} timed out")))?
    }
}

fn answer_error(addr: SocketAddr, status: StatusCode, headers: &hyper::HeaderMap) -> FsError {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let detail = format!("node {addr} answered {status}: {}", get(HDR_DETAIL));
    match FsError::from_code(&get(HDR_ERROR), detail.clone()) {
        e @ (FsError::NotFound | FsError::NoSpace | FsError::Corrupt(_)) => e,
        // Its detail is the leader's address, whoever acts on it.
        FsError::NotLeader(_) => FsError::NotLeader(get(HDR_DETAIL)),
        FsError::Unauthenticated(_) => FsError::Unauthenticated(detail),
        _ => FsError::Unavailable(detail),
    }
}
