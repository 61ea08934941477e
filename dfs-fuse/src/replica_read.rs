//! Reading a file's contents straight from the cluster nodes that hold them, when the
//! directory node holds no copy itself: it names the nodes (best first) and gives a read
//! token for this one blob; this tries them in turn, so a node that is down, lacks the
//! blob or sends bytes that do not hash to the (signed) blob id is skipped.
//!
//! Owns: that failover loop, and `receive`, the one loop that writes a fetched body into
//! the cache (used by `Remote::fetch` too). Must not: trust any byte it has not checked
//! against the blob id, or keep a partial file (the caller removes `dest` on error).

use crate::cache::filling::Filling;
use bytes::Bytes;
use dfs_common::cluster::READ_PREFIX;
use dfs_common::hash::BlobHasher;
use dfs_common::{Attr, FsError};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    receive(body, attr, dest, true, NODE_TIMEOUT, None).await
}

/// Writes a fetched body into `dest`: exactly `attr.size` bytes and, if `check`, bytes
/// that hash to `attr.blob`; at most `idle` between two frames. The one receiving loop of
/// a fetch, from the server or from a node it names. A body that stalls, ends early or is
/// cut reports `Unavailable` ("fetch interrupted", "ended after": worth a retry); one that
/// fails a check, `Corrupt`. An unchecked body written to a file tells `progress` how far
/// the file is written as it goes, so a reader can have its first bytes before the end.
pub(crate) async fn receive(
    body: Body,
    attr: &Attr,
    dest: &Path,
    check: bool,
    idle: Duration,
    progress: Option<&Filling>,
) -> Result<(), FsError> {
    // A small file is gathered in memory and written with one call on this thread; a
    // large one is written as it arrives, through the blocking pool.
    let mut sink = if attr.size <= crate::remote::INLINE_IO {
        Sink::Memory(Vec::with_capacity(attr.size as usize))
    } else {
        Sink::File(FileSink::create(dest)?)
    };
    let progress = progress.filter(|_| !check);
    let received = receive_into(body, attr, &mut sink, check, idle, progress).await;
    // Even after an error: no write of this fetch may land after the caller's next step.
    let written = match sink {
        Sink::Memory(bytes) => match received {
            Ok(_) => std::fs::write(dest, bytes).map(|()| None),
            Err(_) => Ok(None),
        },
        Sink::File(mut file) => file.settle().await,
    };
    let received = received?;
    if let (Some(p), Some(upto)) = (progress, written?) {
        p.advance(upto);
    }
    let ino = attr.ino;
    if received != attr.size {
        return Err(FsError::Unavailable(format!(
            "fetch of {ino} ended after {received} of {} bytes",
            attr.size
        )));
    }
    Ok(())
}

/// The loop of `receive`: returns how many bytes came, once the body ends and its hash
/// (if `check`) matches.
async fn receive_into(
    mut body: Body,
    attr: &Attr,
    sink: &mut Sink,
    check: bool,
    idle: Duration,
    progress: Option<&Filling>,
) -> Result<u64, FsError> {
    let ino = attr.ino;
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
                    let at = received;
                    received += data.len() as u64;
                    if received > attr.size {
                        return Err(FsError::Corrupt(format!(
                            "contents of inode {ino} longer than the file"
                        )));
                    }
                    if let Some(h) = hasher.as_mut() {
                        h.update(&data);
                    }
                    match sink {
                        Sink::Memory(bytes) => bytes.extend_from_slice(&data),
                        Sink::File(file) => {
                            if let (Some(upto), Some(p)) = (file.write(data, at).await?, progress) {
                                p.advance(upto);
                            }
                        }
                    }
                }
            }
        }
    }
    if let (Some(h), Some(want)) = (hasher, attr.blob) {
        if h.finish() != want {
            log::warn!("contents of inode {ino} do not match their signed hash");
            return Err(FsError::Corrupt(format!(
                "contents of inode {ino} do not match their hash"
            )));
        }
    }
    Ok(received)
}

/// Where `receive` puts the bytes.
enum Sink {
    Memory(Vec<u8>),
    File(FileSink),
}

/// A large body's file: each chunk is written by the blocking pool while the next one
/// arrives, one write in flight at a time, so the loop always knows how far the file is
/// written.
struct FileSink {
    file: Arc<std::fs::File>,
    /// The write in flight; it yields the offset the file is then written up to.
    in_flight: Option<tokio::task::JoinHandle<std::io::Result<u64>>>,
}

impl FileSink {
    fn create(dest: &Path) -> std::io::Result<FileSink> {
        Ok(FileSink {
            file: Arc::new(std::fs::File::create(dest)?),
            in_flight: None,
        })
    }

    /// Waits for the write in flight, then starts writing `data` at `at`. Returns how far
    /// the file was written before this chunk (`None` for the first chunk).
    async fn write(&mut self, data: Bytes, at: u64) -> std::io::Result<Option<u64>> {
        let written = self.settle().await?;
        let file = self.file.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            file.write_all_at(&data, at)?;
            Ok(at + data.len() as u64)
        }));
        Ok(written)
    }

    /// Waits for the write in flight; returns how far the file is written.
    async fn settle(&mut self) -> std::io::Result<Option<u64>> {
        match self.in_flight.take() {
            Some(write) => write.await.map_err(std::io::Error::other)?.map(Some),
            None => Ok(None),
        }
    }
}
