//! Reads and writes of open files' local copies (never the network): handles, reads
//! (small clean copies whole from memory), writes (waiting while a store of the file
//! uploads it), and the changes applied to a copy in place while it is open or dirty
//! here: truncation and times, which its store carries. Must not store or fetch.

use super::error::CacheError;
use super::files::FileHandle;
use super::CacheManager;
use dfs_common::{FsError, Ino};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

impl CacheManager {
    /// Whether handle `fh` was opened for writing (`None`: no such handle).
    pub fn handle_writable(&self, fh: u64) -> Option<bool> {
        self.handles.lock().unwrap().get(&fh).map(|h| h.writable)
    }

    /// The cached copy an open handle reads and writes (the backing file for passthrough).
    pub fn handle_file(&self, fh: u64) -> Option<Arc<File>> {
        self.handles
            .lock()
            .unwrap()
            .get(&fh)
            .map(|h| h.file.clone())
    }

    pub(crate) fn handle(&self, fh: u64) -> Result<Arc<FileHandle>, CacheError> {
        self.handles
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::Invalid(format!("no open file handle {fh}")).into())
    }

    /// Reads from the local copy. Never touches the network.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, CacheError> {
        let h = self.handle(fh)?;
        if let Some(whole) = self.small_file(&h)? {
            let start = (offset as usize).min(whole.len());
            let end = (start + size as usize).min(whole.len());
            return Ok(whole[start..end].to_vec());
        }
        let mut buf = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match h.file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// The whole contents of a small clean copy, from memory (read once from disk).
    fn small_file(&self, h: &FileHandle) -> Result<Option<Arc<Vec<u8>>>, CacheError> {
        if h.writable || h.filling.is_some() || h.node.state().is_dirty() {
            return Ok(None);
        }
        if let Some(whole) = self.small_files.lock().unwrap().get(h.ino, h.version) {
            return Ok(Some(whole));
        }
        let len = h.file.metadata()?.len();
        if len > super::meta::SMALL_FILE_MAX {
            return Ok(None);
        }
        let mut data = vec![0u8; len as usize];
        h.file.read_exact_at(&mut data, 0)?;
        let whole = Arc::new(data);
        if !h.node.state().is_dirty() {
            self.small_files
                .lock()
                .unwrap()
                .put(h.ino, h.version, whole.clone());
        }
        Ok(Some(whole))
    }

    /// Writes to the local copy. Blocks (the calling thread, not the network) while a store
    /// of the same file is uploading. Must not be called from inside the async runtime.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, CacheError> {
        let h = self.handle(fh)?;
        let _shared = match h.node.gate.try_read() {
            Ok(g) => g,
            Err(_) => h.node.gate.blocking_read(),
        };
        self.write_shared(&h, offset, data)
    }

    /// `write`, if it need not wait: `None` while a store of the file is uploading.
    pub fn try_write(&self, fh: u64, offset: u64, data: &[u8]) -> Option<Result<u32, CacheError>> {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let _shared = h.node.gate.try_read().ok()?;
        Some(self.write_shared(&h, offset, data))
    }

    /// The write itself, under a shared hold of the file's gate.
    fn write_shared(&self, h: &FileHandle, offset: u64, data: &[u8]) -> Result<u32, CacheError> {
        if !h.writable {
            return Err(FsError::PermissionDenied("file not open for writing".into()).into());
        }
        let offset = if h.append {
            h.file.metadata()?.len()
        } else {
            offset
        };
        h.file.write_all_at(data, offset)?;
        let mark = {
            let mut l = h.node.state();
            self.behind_wrote(&mut l, h.ino, &h.file, offset, data.len() as u64);
            l.changed()
        };
        if mark.is_some() {
            let len = h.file.metadata()?.len();
            self.mark_dirty_in_index(h.ino, mark, len)?;
        }
        Ok(data.len() as u32)
    }

    /// Truncates the local copy if the file is open for writing or dirty here (the change is
    /// stored with the rest). Returns false when the server should do it instead.
    pub(crate) async fn truncate_open_file(&self, ino: Ino, len: u64) -> Result<bool, CacheError> {
        let Some(node) = self.node_if_any(ino) else {
            return Ok(false);
        };
        let _op = node.op.lock().await;
        let file = {
            let l = node.state();
            if !(l.is_dirty() || l.opens().writers > 0) {
                return Ok(false);
            }
            l.current_file()
        };
        let _excl = node.gate.write().await;
        node.state().abandon_behind();
        match file {
            Some(f) => f.set_len(len)?,
            None => {
                let version = node.state().version();
                OpenOptions::new()
                    .write(true)
                    .open(self.disk.path(ino, version))?
                    .set_len(len)?
            }
        }
        let mark = node.state().changed();
        self.mark_dirty_in_index(ino, mark, len)?;
        self.disk.set_size(ino, len);
        Ok(true)
    }

    /// Sets the times of a copy with unstored changes, which its store then carries.
    /// Returns false when the file has no unstored changes (the server sets them instead).
    pub(crate) fn set_local_times(
        &self,
        ino: Ino,
        atime: Option<dfs_common::types::SetTime>,
        mtime: Option<dfs_common::types::SetTime>,
    ) -> Result<bool, CacheError> {
        use dfs_common::types::SetTime;
        let Some(node) = self.node_if_any(ino) else {
            return Ok(false);
        };
        let mut l = node.state();
        l.abandon_behind();
        if !l.is_dirty() {
            return Ok(false);
        }
        l.changed();
        let resolve = |t: SetTime| match t {
            SetTime::Now => std::time::SystemTime::now(),
            SetTime::At(t) => t.to_system(),
        };
        let mut times = std::fs::FileTimes::new();
        if let Some(t) = atime {
            times = times.set_accessed(resolve(t));
        }
        if let Some(t) = mtime {
            times = times.set_modified(resolve(t));
        }
        let file = match l.current_file() {
            Some(f) => f,
            None => Arc::new(
                OpenOptions::new()
                    .write(true)
                    .open(self.disk.path(ino, l.version()))?,
            ),
        };
        file.set_times(times)?;
        Ok(true)
    }
}
