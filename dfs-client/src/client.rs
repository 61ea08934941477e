//! The path API: open/read/write/close and namespace calls on `/`-separated paths, over
//! the cache manager, for programs that use dfs without a mount. Every call acts for the
//! user who runs the program (with the credentials filed for them in `credentials`, if
//! any). Must stay a thin layer: every rule lives in the cache manager.

use crate::auth::CredentialStore;
use crate::cache::{CacheError, CacheManager, CacheOptions, DirItem};
use crate::port::Who;
use dfs_common::{Attr, FsError, Ino, ROOT_INO};
use std::path::Path;
use std::sync::Arc;

/// A dfs client for one server. Create it inside a tokio runtime.
#[derive(Clone)]
pub struct Dfs {
    mgr: Arc<CacheManager>,
    /// The manager's server over HTTP, for transactions (which go past the cache).
    remote: crate::remote::Remote,
    /// Who the calls act for: this process's user.
    who: Who,
    uid: u32,
    gid: u32,
}

/// An open file of a `Dfs`. `close` stores it if it was written; dropping it without
/// `close` keeps any changes in the cache, to be stored by the retry loop.
pub struct DfsFile {
    dfs: Dfs,
    fh: u64,
    closed: bool,
}

fn split(path: &str) -> Vec<&[u8]> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::as_bytes)
        .collect()
}

impl Dfs {
    /// Connects to `addr` (`HOST:PORT`) with its cache in `cache_dir`.
    pub fn connect(addr: &str, cache_dir: &Path, opts: CacheOptions) -> Result<Dfs, CacheError> {
        let (mgr, remote) = crate::connect::over_http(addr, cache_dir, opts)?;
        crate::spawn_background(&mgr);
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(Dfs {
            mgr,
            remote,
            who: Who::user(uid),
            uid,
            gid,
        })
    }

    /// The credentials this client signs with: file this process's user's here (by its
    /// uid) for its calls to act as their principal in a realm. None at first.
    pub fn credentials(&self) -> &Arc<CredentialStore> {
        self.remote.credentials()
    }

    /// Begins a transaction on this client's server, as this client. After its commit the
    /// manager forgets its cached attributes, names and listings of what the batch changed.
    pub async fn begin_tx(&self) -> Result<crate::tx::Transaction, crate::tx::TxError> {
        crate::tx::Transaction::begin(self.remote.clone(), self.who, Some(self.mgr.clone())).await
    }

    pub fn manager(&self) -> &Arc<CacheManager> {
        &self.mgr
    }

    /// The attributes of the file at `path`.
    pub async fn stat(&self, path: &str) -> Result<Attr, CacheError> {
        let mut attr = self.mgr.getattr(&self.who, ROOT_INO).await?;
        for name in split(path) {
            attr = self.mgr.lookup(&self.who, attr.ino, name).await?;
        }
        Ok(attr)
    }

    async fn parent_of<'p>(&self, path: &'p str) -> Result<(Ino, &'p [u8]), CacheError> {
        let parts = split(path);
        let (name, dirs) = parts
            .split_last()
            .ok_or_else(|| FsError::Invalid(format!("{path:?} names no file")))?;
        let mut ino = ROOT_INO;
        for d in dirs {
            ino = self.mgr.lookup(&self.who, ino, d).await?.ino;
        }
        Ok((ino, name))
    }

    /// This caller as the creator of an inode with permission bits `mode`.
    fn creator(&self, mode: u32) -> crate::cache::Creator {
        crate::cache::Creator::with_mode(mode, self.uid, self.gid)
    }

    /// Opens `path` with open(2) flags; `O_CREAT` creates it with `mode`.
    pub async fn open(&self, path: &str, flags: i32, mode: u32) -> Result<DfsFile, CacheError> {
        let fh = if flags & libc::O_CREAT != 0 {
            let (parent, name) = self.parent_of(path).await?;
            let (_, opened) = self
                .mgr
                .create(&self.who, parent, name, self.creator(mode), flags)
                .await?;
            opened.fh
        } else {
            let attr = self.stat(path).await?;
            self.mgr.open(&self.who, attr.ino, flags).await?.fh
        };
        Ok(DfsFile {
            dfs: self.clone(),
            fh,
            closed: false,
        })
    }

    /// The whole contents of `path`.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, CacheError> {
        let mut f = self.open(path, libc::O_RDONLY, 0).await?;
        let mut out = Vec::new();
        loop {
            let chunk = f.read_at(out.len() as u64, 1 << 20).await?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        f.close().await?;
        Ok(out)
    }

    /// Replaces the contents of `path` (creating it), durably stored when this returns.
    pub async fn write_file(&self, path: &str, data: &[u8]) -> Result<(), CacheError> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        let mut f = self.open(path, flags, 0o644).await?;
        f.write_at(0, data.to_vec()).await?;
        f.close().await
    }

    pub async fn mkdir(&self, path: &str, mode: u32) -> Result<Attr, CacheError> {
        let (parent, name) = self.parent_of(path).await?;
        self.mgr
            .mkdir(&self.who, parent, name, self.creator(mode))
            .await
    }

    /// Removes a file, or an empty directory.
    pub async fn remove(&self, path: &str) -> Result<(), CacheError> {
        let attr = self.stat(path).await?;
        let (parent, name) = self.parent_of(path).await?;
        if attr.kind == dfs_common::FileKind::Dir {
            self.mgr.rmdir(&self.who, parent, name).await
        } else {
            self.mgr.unlink(&self.who, parent, name).await
        }
    }

    pub async fn rename(&self, from: &str, to: &str) -> Result<(), CacheError> {
        let (p1, n1) = self.parent_of(from).await?;
        let (p2, n2) = self.parent_of(to).await?;
        self.mgr.rename(&self.who, p1, n1, p2, n2, 0).await
    }

    pub async fn list(&self, path: &str) -> Result<Arc<Vec<DirItem>>, CacheError> {
        let attr = self.stat(path).await?;
        self.mgr.readdir(&self.who, attr.ino).await
    }
}

impl DfsFile {
    pub async fn read_at(&self, offset: u64, len: u32) -> Result<Vec<u8>, CacheError> {
        self.dfs.mgr.wait_readable(self.fh, offset, len).await?;
        let (mgr, fh) = (self.dfs.mgr.clone(), self.fh);
        tokio::task::spawn_blocking(move || mgr.read(fh, offset, len))
            .await
            .map_err(|e| FsError::Io(format!("blocking task: {e}")))?
    }

    pub async fn write_at(&self, offset: u64, data: Vec<u8>) -> Result<u32, CacheError> {
        let (mgr, fh) = (self.dfs.mgr.clone(), self.fh);
        tokio::task::spawn_blocking(move || mgr.write(fh, offset, &data))
            .await
            .map_err(|e| FsError::Io(format!("blocking task: {e}")))?
    }

    /// Stores the file if it was written, then closes it. An error means the server does
    /// not have the changes (they stay in the cache and are retried).
    pub async fn close(&mut self) -> Result<(), CacheError> {
        if self.closed {
            return Ok(());
        }
        let stored = self.dfs.mgr.flush(&self.dfs.who, self.fh).await;
        self.dfs.mgr.release(self.fh);
        self.closed = true;
        stored
    }
}

impl Drop for DfsFile {
    fn drop(&mut self) {
        if !self.closed {
            self.dfs.mgr.release(self.fh);
        }
    }
}
