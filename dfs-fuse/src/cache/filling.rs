//! A copy still being fetched that its reader may already read ("first bytes fast"). A
//! cold read-only open of a large file is answered as soon as its fetch starts; each read
//! then waits only until the fetch has written the bytes it asks for, not for the whole
//! file. Bytes become readable only once they are as trustworthy as the finished copy: a
//! fetch checked against its blob id at the end (signed, or from a replica) shows nothing
//! before that check.
//!
//! Owns: the progress of one such fetch and the waits on it. Must not fetch or decide
//! which opens stream (`files`).

use dfs_common::FsError;
use std::sync::Arc;
use tokio::sync::watch;

/// How far a fetch has come.
#[derive(Clone, Debug)]
enum Fill {
    /// The first this many bytes are written and may be read.
    Upto(u64),
    /// The copy is complete (and checked, when the fetch checks).
    Whole,
    /// The fetch failed: every read of this copy fails with this error.
    Failed(FsError),
}

/// The progress of one fetch, shared by the fetch and the handles reading its copy.
pub(crate) struct Filling {
    state: watch::Sender<Fill>,
}

impl Filling {
    pub(crate) fn new() -> Arc<Filling> {
        Arc::new(Filling {
            state: watch::Sender::new(Fill::Upto(0)),
        })
    }

    /// The first `upto` bytes are in the copy's file and may be read.
    pub(crate) fn advance(&self, upto: u64) {
        self.state.send_if_modified(|s| match s {
            Fill::Upto(n) if *n < upto => {
                *n = upto;
                true
            }
            _ => false,
        });
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
    pub(crate) fn finish(&self, outcome: &Result<(), FsError>) {
        self.state.send_replace(match outcome {
            Ok(()) => Fill::Whole,
            Err(FsError::NotFound) => {
                Fill::Failed(FsError::Stale("the file was removed on the server".into()))
            }
            Err(e) => Fill::Failed(e.clone()),
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
    pub(crate) async fn wait_for(&self, end: u64) -> Result<(), FsError> {
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, Fill::Upto(n) if *n < end))
            .await
            .map_err(|_| FsError::Io("the fetch of this file was abandoned".into()))?;
        match &*state {
            Fill::Failed(e) => Err(e.clone()),
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
        assert_eq!(waiter.await.unwrap(), Ok(()));

        let late = {
            let f = f.clone();
            tokio::spawn(async move { f.wait_for(1000).await })
        };
        f.finish(&Err(FsError::Unavailable("cut".into())));
        assert_eq!(late.await.unwrap(), Err(FsError::Unavailable("cut".into())));
        assert_eq!(f.wait_for(1).await, Err(FsError::Unavailable("cut".into())));
        assert_eq!(f.readable(), 0);
    }

    #[tokio::test]
    async fn a_file_removed_before_its_fetch_fails_reads_as_stale() {
        let f = Filling::new();
        f.finish(&Err(FsError::NotFound));
        assert!(matches!(f.wait_for(1).await, Err(FsError::Stale(_))));
    }

    #[tokio::test]
    async fn a_whole_copy_answers_reads_past_its_end() {
        let f = Filling::new();
        f.advance(10);
        f.finish(&Ok(()));
        assert!(f.covers(u64::MAX));
        assert_eq!(f.wait_for(1 << 40).await, Ok(()));
    }
}
