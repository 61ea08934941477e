//! Writing a received body into its temp file off the async threads, while it arrives.
//!
//! Owns: one blocking task per large store that writes 1 MiB chunks handed over through a
//! small channel, starts the kernel's writeback of every 8 MiB as soon as it is written
//! (`sync_file_range`), and fsyncs once at the end. So the disk writes while the network
//! still sends, and the final fsync waits for the tail only, not for the whole file.

use dfs_common::FsError;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes gathered before one write.
pub(super) const CHUNK: usize = 1 << 20;
/// Writeback is started every this many bytes.
const WRITEBACK_EVERY: u64 = 8 << 20;

pub(super) struct Writer {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    task: Option<JoinHandle<io::Result<()>>>,
    failed: Arc<AtomicBool>,
    pending: Vec<u8>,
}

impl Writer {
    pub(super) fn start(file: File) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        let failed = Arc::new(AtomicBool::new(false));
        let give_up = failed.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let (mut written, mut started) = (0u64, 0u64);
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
                if written - started >= WRITEBACK_EVERY {
                    start_writeback(&file, started, written - started);
                    started = written;
                }
            }
            if give_up.load(Ordering::SeqCst) {
                return Ok(());
            }
            file.sync_all()
        });
        Writer {
            tx: Some(tx),
            task: Some(task),
            failed,
            pending: Vec::with_capacity(CHUNK),
        }
    }

    /// Queues `data`; waits when the writer is 4 chunks behind.
    pub(super) async fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= CHUNK {
            let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
            self.send(chunk).await?;
        }
        Ok(())
    }

    async fn send(&mut self, chunk: Vec<u8>) -> Result<(), FsError> {
        let tx = self.tx.as_ref().expect("writer used after it stopped");
        if tx.send(chunk).await.is_err() {
            // The writer stopped on an error: report it now, not after the whole body.
            self.tx = None;
            self.join().await?;
            return Err(FsError::Io("blob writer stopped".into()));
        }
        Ok(())
    }

    async fn join(&mut self) -> Result<(), FsError> {
        match self.task.take() {
            None => Ok(()),
            Some(task) => match task.await {
                Ok(r) => Ok(r?),
                Err(e) => Err(FsError::Io(format!("blob writer failed: {e}"))),
            },
        }
    }

    /// Writes what is left and returns once the file is fsynced.
    pub(super) async fn finish(mut self) -> Result<(), FsError> {
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            self.send(chunk).await?;
        }
        self.tx = None;
        self.join().await
    }

    /// Stops without the fsync (the body failed; the temp file is about to go).
    pub(super) async fn abandon(mut self) {
        self.failed.store(true, Ordering::SeqCst);
        self.tx = None;
        let _ = self.join().await;
    }
}

/// Asks the kernel to start writing `len` bytes from `offset` back to disk, without
/// waiting for it. Only a hint: the final fsync is what makes the file durable.
fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: a valid descriptor; the call only schedules writeback of its pages.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}
