//! Snapshot files of the directory's state machine: each one a redb database holding a copy
//! of every table of the namespace, the state machine's records included
//! (`Namespace::export`), plus the snapshot's id.
//!
//! Owns: the snapshot directory (`snapshots/`: `current.redb`, and `building-N.redb` /
//! `incoming-N.redb` while one is made or received; leftovers of a crash are removed at
//! open), the file type openraft streams (`SnapshotFile`), and which snapshot is current.
//! Must not: apply anything to the namespace (the state machine installs), or decide when
//! to snapshot (openraft's policy).

use super::codec::{decode, encode};
use super::{NodeId, StorageError};
use openraft::{BasicNode, SnapshotMeta, StorageIOError};
use redb::{Database, ReadableDatabase, TableDefinition};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// In a snapshot file only: `ID` -> the snapshot's id.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const ID: &str = "id";

pub type Meta = SnapshotMeta<NodeId, BasicNode>;

/// A snapshot's bytes as openraft reads and writes them: a file, with its path (so a
/// received one can be opened as a database and then become the current one).
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes what was written durable.
    pub async fn sync(&mut self) -> io::Result<()> {
        tokio::io::AsyncWriteExt::flush(&mut self.file).await?;
        self.file.sync_all().await
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

fn failed(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, openraft::AnyError::new(&e)).into()
}

/// The snapshot directory and the current snapshot's meta.
pub struct Snapshots {
    dir: PathBuf,
    /// The current snapshot; its lock is held while `current.redb` is replaced or opened,
    /// so a meta always goes with its file.
    current: Mutex<Option<Meta>>,
    next: AtomicU64,
}

impl Snapshots {
    /// Opens `dir` (created if missing): removes files of snapshots not finished, reads
    /// the current snapshot's meta.
    pub fn open(dir: &Path) -> Result<Snapshots, StorageError> {
        std::fs::create_dir_all(dir).map_err(failed)?;
        for item in std::fs::read_dir(dir).map_err(failed)? {
            let item = item.map_err(failed)?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("building-") || name.starts_with("incoming-") {
                std::fs::remove_file(item.path()).map_err(failed)?;
            }
        }
        let path = dir.join("current.redb");
        let current = if path.exists() {
            let db = Database::open(&path).map_err(failed)?;
            Some(read_meta(&db)?)
        } else {
            None
        };
        Ok(Snapshots {
            dir: dir.to_path_buf(),
            current: Mutex::new(current),
            next: AtomicU64::new(0),
        })
    }

    /// A fresh path for a snapshot being made (`building`) or received (`incoming`).
    pub fn fresh_path(&self, what: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{what}-{n}.redb"))
    }

    /// A new empty file to receive a snapshot into.
    pub async fn receive(&self) -> Result<SnapshotFile, StorageError> {
        let path = self.fresh_path("incoming");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(failed)?;
        Ok(SnapshotFile { file, path })
    }

    /// Makes the finished snapshot at `path` (with `meta`) the current one, unless the
    /// current one is as new; the file is removed then. Blocking.
    pub fn promote(&self, path: &Path, meta: Meta) -> Result<(), StorageError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current
            .as_ref()
            .is_some_and(|c| c.last_log_id >= meta.last_log_id)
        {
            std::fs::remove_file(path).map_err(failed)?;
            return Ok(());
        }
        std::fs::rename(path, self.dir.join("current.redb")).map_err(failed)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(failed)?;
        *current = Some(meta);
        Ok(())
    }

    /// The current snapshot, opened for reading.
    pub fn current(&self) -> Result<Option<(Meta, SnapshotFile)>, StorageError> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some(meta) = current.clone() else {
            return Ok(None);
        };
        let path = self.dir.join("current.redb");
        let file = std::fs::File::open(&path).map_err(failed)?;
        Ok(Some((
            meta,
            SnapshotFile {
                file: tokio::fs::File::from_std(file),
                path,
            },
        )))
    }
}

/// Writes the snapshot id into a snapshot file being made.
pub fn write_id(db: &Database, id: &str) -> Result<(), StorageError> {
    let bytes = encode(&id).map_err(failed)?;
    let txn = db.begin_write().map_err(failed)?;
    txn.open_table(SNAPSHOT)
        .map_err(failed)?
        .insert(ID, bytes.as_slice())
        .map_err(failed)?;
    txn.commit().map_err(failed)
}

/// The meta of a snapshot file: its id, and the applied position and membership its copy
/// of the state machine's records holds.
pub fn read_meta(db: &Database) -> Result<Meta, StorageError> {
    let txn = db.begin_read().map_err(failed)?;
    let (last_log_id, last_membership) = super::state_machine::applied_in(&txn)?;
    // A snapshot being made has no id yet.
    let id = match txn.open_table(SNAPSHOT) {
        Ok(t) => match t.get(ID).map_err(failed)? {
            Some(g) => decode::<String>(g.value()).map_err(failed)?,
            None => String::new(),
        },
        Err(redb::TableError::TableDoesNotExist(_)) => String::new(),
        Err(e) => return Err(failed(e)),
    };
    Ok(Meta {
        last_log_id,
        last_membership,
        snapshot_id: id,
    })
}
