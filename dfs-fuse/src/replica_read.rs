//! Reading a file's contents straight from the cluster nodes that hold them, when the
//! directory node holds no copy itself: it names the nodes (best first) and gives a read
//! token for this one blob; this tries them in turn, so a node that is down, lacks the
//! blob or sends bytes that do not hash to the (signed) blob id is skipped.
//!
//! Owns: that failover loop, and `receive`, the one loop that writes a fetched body into
//! the cache (used by `Remote::fetch` too). Must not: trust any byte it has not checked
//! against the blob id, or keep a partial file (the caller removes `dest` on error).

use bytes::Bytes;
use dfs_common::cluster::READ_PREFIX;
use dfs_common::hash::BlobHasher;
use dfs_common::{Attr, FsError};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Longest wait for a node to answer, and longest silence while a body streams.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, std::io::Error>;

/// Reads the contents described by `attr` from the first of `nodes` (comma-separated
/// `HOST:PORT`) that serves a good copy, into `dest`.
pub(crate) async fn read(
    http: &Client<HttpConnector, Body>,
    attr: &Attr,
    nodes: &str,
    token: &str,
    dest: &Path,
) -> Result<(), FsError> {
    let id = attr
        .blob
        .ok_or_else(|| FsError::Io("a redirected fetch without a blob id".into()))?;
    let mut last = FsError::Unavailable("the server named no node".into());
    for node in nodes.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let uri = format!("http://{node}{READ_PREFIX}{}?token={token}", id.to_hex());
        match read_one(http, &uri, attr, dest).await {
            Ok(()) => {
                log::debug!("inode {}: read from node {node}", attr.ino);
                return Ok(());
            }
            Err(e) => {
                log::info!(
                    "inode {}: node {node} did not serve blob {id}: {e}",
                    attr.ino
                );
                last = e;
            }
        }
    }
    Err(last)
}

async fn read_one(
    http: &Client<HttpConnector, Body>,
    uri: &str,
    attr: &Attr,
    dest: &Path,
) -> Result<(), FsError> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .map_err(|e| FsError::Invalid(e.to_string()))?;
    let resp = tokio::time::timeout(NODE_TIMEOUT, http.request(req))
        .await
        .map_err(|_| FsError::Unavailable("no answer".into()))?
        .map_err(|e| FsError::Unavailable(e.to_string()))?;
    if resp.status() != StatusCode::OK {
        return Err(FsError::Unavailable(format!("answered {}", resp.status())));
    }
    let body = resp
        .into_body()
        .map_err(|e| std::io::Error::other(e.to_string()))
        .boxed();
    receive(body, attr, dest, true, NODE_TIMEOUT).await
}

/// Writes a fetched body into `dest`: exactly `attr.size` bytes and, if `check`, bytes
/// that hash to `attr.blob`; at most `idle` between two frames. The one receiving loop of a fetch, from the server or from a
/// node it names. A body that stalls, ends early or is cut reports `Unavailable` ("fetch
/// interrupted", "ended after": worth a retry); one that fails a check, `Corrupt`.
pub(crate) async fn receive(
    mut body: Body,
    attr: &Attr,
    dest: &Path,
    check: bool,
    idle: Duration,
) -> Result<(), FsError> {
    let ino = attr.ino;
    // A small file is gathered in memory and written with one call on this thread; a
    // large one is written as it arrives, through the blocking pool.
    let mut sink = if attr.size <= crate::remote::INLINE_IO {
        Sink::Memory(Vec::with_capacity(attr.size as usize))
    } else {
        Sink::File(tokio::fs::File::create(dest).await?)
    };
    let mut hasher = check.then(BlobHasher::new);
    let mut received = 0u64;
    loop {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| FsError::Unavailable("fetch stalled".into()))?;
        match frame {
            None => break,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                log::warn!("contents of inode {ino} failed their integrity check: {e}");
                return Err(FsError::Corrupt(format!(
                    "contents of inode {ino} failed their integrity check"
                )));
            }
            Some(Err(e)) => return Err(FsError::Unavailable(format!("fetch interrupted: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received += data.len() as u64;
                    if received > attr.size {
                        return Err(FsError::Corrupt(format!(
                            "contents of inode {ino} longer than the file"
                        )));
                    }
                    if let Some(h) = hasher.as_mut() {
                        h.update(&data);
                    }
                    match &mut sink {
                        Sink::Memory(bytes) => bytes.extend_from_slice(&data),
                        Sink::File(file) => file.write_all(&data).await?,
                    }
                }
            }
        }
    }
    match sink {
        Sink::Memory(bytes) => std::fs::write(dest, bytes)?,
        Sink::File(mut file) => file.flush().await?,
    }
    if received != attr.size {
        return Err(FsError::Unavailable(format!(
            "fetch of {ino} ended after {received} of {} bytes",
            attr.size
        )));
    }
    if let (Some(h), Some(want)) = (hasher, attr.blob) {
        if h.finish() != want {
            log::warn!("contents of inode {ino} do not match their signed hash");
            return Err(FsError::Corrupt(format!(
                "contents of inode {ino} do not match their hash"
            )));
        }
    }
    Ok(())
}

/// Where `receive` puts the bytes.
enum Sink {
    Memory(Vec<u8>),
    File(tokio::fs::File),
}
