//! A copy still being fetched that its reader may already read ("first bytes fast"). A
//! cold read-only open of a large file is answered as soon as its fetch starts; each read
//! then waits only until the fetch has written the bytes it asks for, not for the whole
//! file. Bytes become readable only once they are as trustworthy as the finished copy: a
//! fetch checked against its blob id at the end (signed, or from a replica) shows nothing
//! before that check.
//!
//! Owns: which opens stream, answering them, the progress of their fetch and the waits
//! on it, and the grace an open gives plain handles to be released. Must not fetch
//! (`files::make_current` does) or touch the namespace.

use super::error::CacheError;
use super::files::{FileHandle, OpenResult};
use super::nodes::FileNode;
use super::CacheManager;
use crate::port::{FetchProgress, Who};
use dfs_common::{private_files, FsError, Ino};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// A cold read-only open of a file at least this big is answered once its fetch has
/// started; reads wait for their own bytes only. Smaller files arrive in a few ms whole.
const STREAM_FROM: u64 = 4 << 20;

/// How long an open waits for the release of plain handles before it answers plain too.
/// The kernel sends RELEASE after close(2) has returned, so a reader that closes and
/// reopens at once would otherwise lose passthrough for its second open.
const PLAIN_RELEASE_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

impl CacheManager {
    /// Whether an open of `ino` with no local changes should be answered before its fetch
    /// ends: a large file of which no copy of any version is here (a fetch that might only
    /// answer "not modified" is quick).
    pub(super) fn streams(&self, ino: Ino) -> bool {
        self.disk.get(ino).is_none()
            && self
                .trusted_attr(ino)
                .is_some_and(|a| a.kind == dfs_common::FileKind::File && a.size >= STREAM_FROM)
    }

    /// Answers a cold read-only open at once: the fetch goes on in a task of its own (which
    /// holds the inode's `op` to its end, so other opens wait for the whole copy), and the
    /// handle reads the part file as the fetch fills it. Reads through this daemon: the
    /// kernel must not read the file directly before the bytes are there.
    pub(super) fn open_filling(
        &self,
        who: &Who,
        node: &Arc<FileNode>,
        op: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<OpenResult, CacheError> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| FsError::Io("the cache is shutting down".into()))?;
        let ino = node.ino;
        // The fetch writes the same file (it reopens the path): this descriptor still reads
        // it once renamed into place.
        let part = self.disk.part_path(ino);
        let file = Arc::new(
            private_files::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&part)?,
        );
        let filling = Filling::new();
        let (task_node, task_filling) = (node.clone(), filling.clone());
        // The fetch goes on for the reader who opened.
        let who = *who;
        self.rt.spawn(async move {
            let outcome = me
                .make_current(&who, &task_node, Some((&task_filling, &part)))
                .await;
            if let Err(e) = &outcome {
                log::warn!("inode {ino}: fetch for an open reader failed: {e}");
            }
            task_filling.finish(outcome);
            drop(op);
            me.maybe_drop_node(&task_node);
        });
        node.state().opened_filling();
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(FileHandle {
            ino,
            writable: false,
            append: false,
            node: node.clone(),
            file,
            // Not known until the fetch answers; only `small_file` reads it, and it skips
            // handles that are filling.
            version: 0,
            filling: Some(filling),
            plain: true,
        });
        self.handles.lock().unwrap().insert(fh, handle);
        Ok(OpenResult {
            fh,
            backing: None,
            noflush: self.closes_quietly(ino, libc::O_RDONLY),
            keep_cache: false,
            plain: true,
            direct: true,
        })
    }

    /// Whether a read of `size` bytes at `offset` through `fh` can be answered without
    /// waiting for a fetch.
    pub fn read_ready(&self, fh: u64, offset: u64, size: u32) -> bool {
        let filling = self
            .handles
            .lock()
            .unwrap()
            .get(&fh)
            .and_then(|h| h.filling.clone());
        filling.is_none_or(|f| f.covers(offset.saturating_add(size as u64)))
    }

    /// Waits until the fetch filling `fh`'s copy (if any) has the bytes a read of `size`
    /// at `offset` needs, or fails with the fetch's error.
    pub async fn wait_readable(&self, fh: u64, offset: u64, size: u32) -> Result<(), CacheError> {
        let filling = self.handle(fh)?.filling.clone();
        match filling {
            Some(f) => f.wait_for(offset.saturating_add(size as u64)).await,
            None => Ok(()),
        }
    }
}

/// Waits (a little) for the plain handles of `node` to be released; see
/// `PLAIN_RELEASE_GRACE`.
pub(super) async fn wait_for_plain_release(node: &FileNode) {
    let deadline = tokio::time::Instant::now() + PLAIN_RELEASE_GRACE;
    loop {
        let gone = node.plain_gone.notified();
        if node.state().opens().plain == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, gone).await.is_err() {
            return;
        }
    }
}

/// How far a fetch has come.
#[derive(Clone, Debug)]
enum Fill {
    /// The first this many bytes are written and may be read.
    Upto(u64),
    /// The copy is complete (and checked, when the fetch checks).
    Whole,
    /// The fetch failed: every read of this copy fails with this error (as the fetch's
    /// caller would have reported it; the fetch logs its cause).
    Failed(FsError),
}

/// The progress of one fetch, shared by the fetch and the handles reading its copy.
pub(crate) struct Filling {
    state: watch::Sender<Fill>,
}

impl FetchProgress for Filling {
    /// The first `upto` bytes are in the copy's file and may be read.
    fn advance(&self, upto: u64) {
        self.state.send_if_modified(|s| match s {
            Fill::Upto(n) if *n < upto => {
                *n = upto;
                true
            }
            _ => false,
        });
    }
}

impl Filling {
    pub(crate) fn new() -> Arc<Filling> {
        Arc::new(Filling {
            state: watch::Sender::new(Fill::Upto(0)),
        })
    }

    /// Bytes readable so far (0 once the fetch has failed).
    pub(crate) fn readable(&self) -> u64 {
        match &*self.state.borrow() {
            Fill::Upto(n) => *n,
            Fill::Whole => u64::MAX,
            Fill::Failed(_) => 0,
        }
    }

    /// The fetch is over: the copy is whole, or every waiting and later read fails. A
    /// file gone from the server by then fails its reads with ESTALE, as NFS does: the
    /// descriptor was opened while it existed.
    pub(crate) fn finish(&self, outcome: Result<(), CacheError>) {
        self.state.send_replace(match outcome {
            Ok(()) => Fill::Whole,
            Err(e) if e.is_not_found() => {
                Fill::Failed(FsError::Stale("the file was removed on the server".into()))
            }
            Err(e) => Fill::Failed(e.into()),
        });
    }

    /// Whether a read of bytes up to `end` can be answered now (or fails now).
    pub(crate) fn covers(&self, end: u64) -> bool {
        match &*self.state.borrow() {
            Fill::Upto(n) => *n >= end,
            Fill::Whole | Fill::Failed(_) => true,
        }
    }

    /// Waits until the bytes up to `end` (or the end of the file, if shorter) are
    /// readable. The fetch bounds the wait: a stalled body fails it after its idle timeout.
    pub(crate) async fn wait_for(&self, end: u64) -> Result<(), CacheError> {
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, Fill::Upto(n) if *n < end))
            .await
            .map_err(|_| FsError::Io("the fetch of this file was abandoned".into()))?;
        match &*state {
            Fill::Failed(e) => Err(CacheError::Fetch(e.clone())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_waits_for_its_bytes_and_a_failure_reaches_every_reader() {
        let f = Filling::new();
        assert!(!f.covers(10));
        f.advance(8);
        assert!(f.covers(8) && !f.covers(9));
        f.advance(4); // never backwards
        assert_eq!(f.readable(), 8);

        let waiter = {
            let f = f.clone();
            tokio::spawn(async move { f.wait_for(100).await })
        };
        f.advance(50);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "50 of 100 bytes must not answer the read"
        );
        f.advance(100);
        assert!(waiter.await.unwrap().is_ok());

        let late = {
            let f = f.clone();
            tokio::spawn(async move { f.wait_for(1000).await })
        };
        let cut = || FsError::Unavailable("cut".into());
        f.finish(Err(cut().into()));
        assert!(matches!(late.await.unwrap(), Err(CacheError::Fetch(e)) if e == cut()));
        assert!(matches!(f.wait_for(1).await, Err(CacheError::Fetch(e)) if e == cut()));
        assert_eq!(f.readable(), 0);
    }

    #[tokio::test]
    async fn a_file_removed_before_its_fetch_fails_reads_as_stale() {
        let f = Filling::new();
        f.finish(Err(FsError::NotFound.into()));
        let e = f.wait_for(1).await.unwrap_err();
        assert!(matches!(e, CacheError::Fetch(FsError::Stale(_))), "{e:?}");
    }

    #[tokio::test]
    async fn a_whole_copy_answers_reads_past_its_end() {
        let f = Filling::new();
        f.advance(10);
        f.finish(Ok(()));
        assert!(f.covers(u64::MAX));
        assert!(f.wait_for(1 << 40).await.is_ok());
    }
}
