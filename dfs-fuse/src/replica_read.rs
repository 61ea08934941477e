//! Reading a file's contents straight from the cluster nodes that hold them, when the
//! directory node holds no copy itself: it names the nodes (best first) and gives a read
//! token for this one blob; this tries them in turn, so a node that is down, lacks the
//! blob or sends bytes that do not hash to the (signed) blob id is skipped.
//!
//! Owns: that failover loop. Must not: trust any byte it has not checked against the
//! blob id, or keep a partial file (the caller removes `dest` on error).

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

/// Longest wait for a node to answer, and longest silence while it streams.
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
    let mut body = resp.into_body();
    let mut file = tokio::fs::File::create(dest).await?;
    let mut hasher = BlobHasher::new();
    let mut received = 0u64;
    loop {
        let frame = tokio::time::timeout(NODE_TIMEOUT, body.frame())
            .await
            .map_err(|_| FsError::Unavailable("stalled".into()))?;
        match frame {
            None => break,
            Some(Err(e)) => return Err(FsError::Unavailable(format!("interrupted: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received += data.len() as u64;
                    if received > attr.size {
                        return Err(FsError::Corrupt("longer than the file".into()));
                    }
                    hasher.update(&data);
                    file.write_all(&data).await?;
                }
            }
        }
    }
    file.flush().await?;
    if received != attr.size || Some(hasher.finish()) != attr.blob {
        return Err(FsError::Corrupt(format!(
            "{received} bytes that do not match the blob id"
        )));
    }
    Ok(())
}
