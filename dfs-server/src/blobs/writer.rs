//! Writing a received body into its temp file off the async threads, while it arrives.
//!
//! Owns: one blocking task per large store that writes 1 MiB chunks handed over through a
//! small channel (each a list of the body's own frames, written with one `writev`, so
//! the bytes are not copied on the way; only small frames are gathered), starts the kernel's writeback of every 8 MiB as soon as it is written
//! (`sync_file_range`), waits for the 8 MiB before that to reach the disk and drops their
//! pages (`posix_fadvise`), and fsyncs once at the end. So the disk writes while the
//! network still sends, the final fsync waits for the tail only, not for the whole file,
//! and a large store holds a few MiB of the server's page cache, not all of its bytes.

use bytes::{Bytes, BytesMut};
use dfs_common::FsError;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes gathered before one write.
pub(super) const CHUNK: usize = 1 << 20;
/// Writeback is started every this many bytes.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// Frames smaller than this are copied together rather than kept as they are, so that a
/// chunk is at most `2 * CHUNK / SMALL_FRAME` slices (well under `IOV_MAX`).
const SMALL_FRAME: usize = 16 << 10;

/// The frames of one chunk, in order.
type Chunk = Vec<Bytes>;

pub(super) struct Writer {
    tx: Option<mpsc::Sender<Chunk>>,
    task: Option<JoinHandle<io::Result<()>>>,
    failed: Arc<AtomicBool>,
    pending: Chunk,
    pending_len: usize,
    /// Small frames, gathered until a large one or the end of the chunk.
    small: BytesMut,
}

impl Writer {
    pub(super) fn start(file: File) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Chunk>(4);
        let failed = Arc::new(AtomicBool::new(false));
        let give_up = failed.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let (mut written, mut started) = (0u64, 0u64);
            let mut in_flight: Option<(u64, u64)> = None;
            while let Some(chunk) = rx.blocking_recv() {
                written += write_all_frames(&mut file, &chunk)?;
                if written - started >= WRITEBACK_EVERY {
                    start_writeback(&file, started, written - started);
                    if let Some((offset, len)) = in_flight {
                        drop_written_pages(&file, offset, len)?;
                    }
                    in_flight = Some((started, written - started));
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
            pending: Vec::new(),
            pending_len: 0,
            small: BytesMut::new(),
        }
    }

    /// Queues `data`; waits when the writer is 4 chunks behind.
    pub(super) async fn write(&mut self, data: Bytes) -> Result<(), FsError> {
        self.pending_len += data.len();
        if data.len() < SMALL_FRAME {
            self.small.extend_from_slice(&data);
        } else {
            self.take_small();
            self.pending.push(data);
        }
        if self.pending_len >= CHUNK {
            let chunk = self.take_chunk();
            self.send(chunk).await?;
        }
        Ok(())
    }

    fn take_small(&mut self) {
        if !self.small.is_empty() {
            self.pending.push(self.small.split().freeze());
        }
    }

    fn take_chunk(&mut self) -> Chunk {
        self.take_small();
        self.pending_len = 0;
        std::mem::take(&mut self.pending)
    }

    async fn send(&mut self, chunk: Chunk) -> Result<(), FsError> {
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
        if self.pending_len > 0 {
            let chunk = self.take_chunk();
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

/// Writes `frames` one after the other, with as few `writev` calls as the kernel allows;
/// returns the bytes written.
fn write_all_frames(file: &mut File, frames: &[Bytes]) -> io::Result<u64> {
    let mut slices: Vec<IoSlice> = frames.iter().map(|f| IoSlice::new(f)).collect();
    let mut rest = &mut slices[..];
    let mut total = 0;
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                total += n as u64;
                IoSlice::advance_slices(&mut rest, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Waits until `len` bytes from `offset` (whose writeback was started one step before)
/// are on disk, then lets the kernel drop their pages. A large store then cycles through
/// a few MiB of page cache instead of filling a fresh page per 4 KiB: on a VM, a page the
/// guest has not touched lately costs far more to fill than to copy, and the blob is the
/// clients' to cache, not the server's. The wait's error is returned: the kernel reports a
/// writeback error to one waiter per descriptor, so the final fsync would not see it.
fn drop_written_pages(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: a valid descriptor; the call only writes back and waits for these pages.
    let waited = unsafe {
        libc::sync_file_range(
            fd,
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    };
    if waited != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; dropping clean pages of a file loses nothing. Only a hint.
    unsafe {
        libc::posix_fadvise(
            fd,
            offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
    Ok(())
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
