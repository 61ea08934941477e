//! The blob id (SHA-256) of a local file, read off the async threads: what a signed store
//! sends before its body (`remote`) and what tells the cache a lost store landed (`cache`).
//!
//! Owns: reading a file to hash it. Must not send or cache anything.

use dfs_common::FsError;
use std::path::Path;

const CHUNK: usize = 1 << 20;

/// The blob hash of the whole of `src`.
pub(crate) async fn of_file(src: &Path) -> Result<[u8; 32], FsError> {
    let src = src.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
        let mut f = std::fs::File::open(src)?;
        let mut h = dfs_common::hash::BlobHasher::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish().0)
    })
    .await
    .map_err(|e| FsError::Io(e.to_string()))?
    .map_err(FsError::from)
}
