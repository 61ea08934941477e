//! Reading installed blobs: opening one checked for its size, streaming it in chunks with
//! a bounded read-ahead (checked against its hash on the way when asked, the last chunk
//! held back until the whole copy matched), and reading a small one whole and checked.
//!
//! Owns: those reads. Must not decide what happens to a bad copy beyond calling the
//! caller's `on_bad` (the file service and the cluster decide).

use super::{BlobStore, READ_CHUNK};
use bytes::Bytes;
use dfs_common::fileread::read_fresh;
use dfs_common::hash::BlobHasher;
use dfs_common::{BlobId, FsError};
use std::fs;
use std::io::{self, Read};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks buffered between the file reader and the socket.
const READ_AHEAD: usize = 4;

impl BlobStore {
    /// Opens blob `id` for reading and checks it has `size` bytes (blocking).
    pub fn open_blob(&self, id: &BlobId, size: u64) -> Result<fs::File, FsError> {
        self.write_pending(id)?;
        let file = fs::File::open(self.path(id)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                FsError::Corrupt(format!("blob {id} is missing"))
            } else {
                FsError::from(e)
            }
        })?;
        let len = file.metadata()?.len();
        if len != size {
            return Err(FsError::Corrupt(format!(
                "blob {id} has {len} bytes, expected {size}"
            )));
        }
        Ok(file)
    }

    /// Streams `len` bytes of `file` as chunks of at most `READ_CHUNK` bytes, with at
    /// most `READ_AHEAD` chunks in memory. Stops when the receiver goes away.
    pub fn read_stream(file: fs::File, len: u64) -> mpsc::Receiver<io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::spawn(async move {
            let file = Arc::new(file);
            let mut offset = 0;
            while offset < len {
                let item = read_chunk(&file, offset, len).await;
                let failed = item.is_err();
                if let Ok(chunk) = &item {
                    offset += chunk.len() as u64;
                }
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        rx
    }

    /// Like `read_stream`, but hashes the blob on the way and holds its last chunk back
    /// until the whole copy has been checked against `id`: a copy that does not match
    /// never reaches its reader complete (the stream ends with an `InvalidData` error),
    /// and `on_bad` runs (to drop the copy, so that it is repaired from a replica).
    pub fn read_stream_verified(
        file: fs::File,
        len: u64,
        id: BlobId,
        on_bad: impl FnOnce() + Send + 'static,
    ) -> mpsc::Receiver<io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::spawn(async move {
            let file = Arc::new(file);
            let mut hasher = BlobHasher::new();
            let mut held: Option<Bytes> = None;
            let mut offset = 0;
            while offset < len {
                match read_chunk(&file, offset, len).await {
                    Ok(chunk) => {
                        offset += chunk.len() as u64;
                        hasher.update(&chunk);
                        if let Some(prev) = held.replace(chunk) {
                            if tx.send(Ok(prev)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            if hasher.finish() != id {
                log::warn!("local copy of blob {id} does not match its hash; dropping it");
                on_bad();
                let _ = tx.send(Err(corrupt_copy(&id))).await;
                return;
            }
            if let Some(last) = held {
                let _ = tx.send(Ok(last)).await;
            }
        });
        rx
    }

    /// Reads a whole (small) blob into memory and checks it against its id (blocking).
    pub fn read_verified(&self, id: &BlobId, size: u64) -> Result<Bytes, FsError> {
        if let Some(bytes) = self.pending.get(id) {
            return Ok(bytes);
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open_blob(id, size)?.read_to_end(&mut buf)?;
        if dfs_common::hash::blob_id_of(&buf) != *id {
            return Err(FsError::Corrupt(format!(
                "local copy of blob {id} does not match its hash"
            )));
        }
        Ok(Bytes::from(buf))
    }
}

/// The next chunk of a blob of `len` bytes from `offset`, read off the async threads into a
/// buffer that is not zeroed first; a blob that ends early is an error.
async fn read_chunk(file: &Arc<fs::File>, offset: u64, len: u64) -> io::Result<Bytes> {
    let want = ((len - offset) as usize).min(READ_CHUNK);
    let file = file.clone();
    let buf = tokio::task::spawn_blocking(move || read_fresh(&file, want, offset))
        .await
        .map_err(io::Error::other)??;
    if buf.is_empty() {
        return Err(short_blob());
    }
    Ok(Bytes::from(buf))
}

fn short_blob() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than expected")
}

fn corrupt_copy(id: &BlobId) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("copy of blob {id} failed its hash check"),
    )
}
