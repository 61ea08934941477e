//! A port that injects faults into another (`Faulty<S>`): fail the next N calls, delay
//! every call, cut the next fetch's body short, drop callback breaks. What a test arms is
//! used up in order; everything else passes through unchanged. It counts the calls that
//! reach the server, and remembers whom each acted for.
//!
//! Owns: the fault switches. Must not hold cache policy or server rules.

use crate::port::{
    Body, BoxFuture, CallbackStream, FetchProgress, Fetched, PortError, Server, Who,
};
use dfs_common::locks::{
    ListRequest, LockInfo, LockReply, LockRequest, ReleaseReply, ReleaseRequest, RenewReply,
    RenewRequest, TestReply,
};
use dfs_common::proto::{CallbackFrame, DirReply, DirRequest};
use dfs_common::{Attr, FsError, Ino};
use futures_util::StreamExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which calls a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    Any,
    Dir,
    Fetch,
    Store,
    Locks,
}

/// `inner`, with faults armed by the test.
pub struct Faulty<S> {
    inner: S,
    /// Calls of a kind that fail next, and with what.
    failing: Mutex<Vec<(Calls, u32, FsError)>>,
    delay_ms: AtomicU64,
    cut_fetches: AtomicU32,
    dropped_breaks: Arc<AtomicU32>,
    /// Calls that reached `inner`, by kind: (dir, fetch, store, locks).
    counts: [AtomicU64; 4],
    /// Whom each call that reached `inner` acted for, in order.
    callers: Mutex<Vec<(Calls, Who)>>,
}

impl<S: Server> Faulty<S> {
    pub fn new(inner: S) -> Faulty<S> {
        Faulty {
            inner,
            failing: Mutex::new(Vec::new()),
            delay_ms: AtomicU64::new(0),
            cut_fetches: AtomicU32::new(0),
            dropped_breaks: Arc::new(AtomicU32::new(0)),
            counts: Default::default(),
            callers: Mutex::new(Vec::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The next `n` calls of kind `calls` fail with `error` without reaching the server.
    pub fn fail_next(&self, calls: Calls, n: u32, error: FsError) {
        self.failing.lock().unwrap().push((calls, n, error));
    }

    /// Every call waits `delay` before it goes on.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The bodies of the next `n` fetches that carry contents break off halfway.
    pub fn cut_fetches(&self, n: u32) {
        self.cut_fetches.store(n, Ordering::SeqCst);
    }

    /// The next `n` breaks (`Break`, `EntryBreak`) on the callback channel are lost.
    pub fn drop_breaks(&self, n: u32) {
        self.dropped_breaks.store(n, Ordering::SeqCst);
    }

    /// Calls that reached the server: (dir, fetch, store, locks).
    pub fn counts(&self) -> [u64; 4] {
        [0, 1, 2, 3].map(|i| self.counts[i].load(Ordering::SeqCst))
    }

    /// Whom the calls of kind `calls` that reached the server acted for, in order.
    pub fn callers(&self, calls: Calls) -> Vec<Who> {
        let callers = self.callers.lock().unwrap();
        let of_kind = callers
            .iter()
            .filter(|(c, _)| calls == Calls::Any || *c == calls);
        of_kind.map(|(_, who)| *who).collect()
    }

    /// Waits the armed delay, then fails if a fault for `kind` is armed; counts the call
    /// of `who` otherwise.
    async fn enter(&self, kind: Calls, who: &Who) -> Result<(), PortError> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        {
            let mut failing = self.failing.lock().unwrap();
            if let Some(i) = failing
                .iter()
                .position(|(c, n, _)| (*c == Calls::Any || *c == kind) && *n > 0)
            {
                failing[i].1 -= 1;
                let e = failing[i].2.clone();
                failing.retain(|(_, n, _)| *n > 0);
                return Err(e.into());
            }
        }
        let slot = match kind {
            Calls::Dir => 0,
            Calls::Fetch => 1,
            Calls::Store => 2,
            _ => 3,
        };
        self.counts[slot].fetch_add(1, Ordering::SeqCst);
        self.callers.lock().unwrap().push((kind, *who));
        Ok(())
    }
}

/// Takes one from `n` if it is above zero.
fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl<S: Server> Server for Faulty<S> {
    fn client_id(&self) -> u64 {
        self.inner.client_id()
    }

    fn signs(&self, who: &Who) -> bool {
        self.inner.signs(who)
    }

    fn dir<'a>(
        &'a self,
        who: &'a Who,
        req: &'a DirRequest,
    ) -> BoxFuture<'a, Result<DirReply, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Dir, who).await?;
            self.inner.dir(who, req).await
        })
    }

    fn fetch<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        have_version: Option<u64>,
        dest: &'a Path,
        progress: Option<Arc<dyn FetchProgress>>,
    ) -> BoxFuture<'a, Result<Fetched, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Fetch, who).await?;
            let fetched = self
                .inner
                .fetch(who, ino, have_version, dest, progress)
                .await?;
            match fetched {
                Fetched::Fetched(attr) if attr.size > 0 && take_one(&self.cut_fetches) => {
                    // What a body that broke off leaves: the first half of the file.
                    let half = attr.size / 2;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(dest)?
                        .set_len(half)?;
                    Err(PortError::CutShort {
                        ino,
                        received: half,
                        expected: attr.size,
                        cause: Some(std::io::Error::other("connection reset (injected)")),
                    })
                }
                other => Ok(other),
            }
        })
    }

    fn store<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        src: &'a Path,
        fence: Option<u64>,
        mode: Option<u32>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Store, who).await?;
            self.inner
                .store(who, ino, src, fence, mode, kill_suid)
                .await
        })
    }

    fn store_streamed<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        body: Body,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Store, who).await?;
            self.inner
                .store_streamed(who, ino, body, fence, kill_suid)
                .await
        })
    }

    fn lock_acquire<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
        extra: Duration,
    ) -> BoxFuture<'a, Result<LockReply, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Locks, who).await?;
            self.inner.lock_acquire(who, req, extra).await
        })
    }

    fn lock_release<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ReleaseRequest,
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Locks, who).await?;
            self.inner.lock_release(who, req).await
        })
    }

    fn lock_release_many<'a>(
        &'a self,
        who: &'a Who,
        reqs: &'a [ReleaseRequest],
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Locks, who).await?;
            self.inner.lock_release_many(who, reqs).await
        })
    }

    fn lock_test<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
    ) -> BoxFuture<'a, Result<TestReply, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Locks, who).await?;
            self.inner.lock_test(who, req).await
        })
    }

    fn lock_list<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Locks, who).await?;
            self.inner.lock_list(who, req).await
        })
    }

    fn lock_renew<'a>(
        &'a self,
        who: &'a Who,
        req: &'a RenewRequest,
    ) -> BoxFuture<'a, Result<RenewReply, PortError>> {
        Box::pin(async move {
            self.enter(Calls::Locks, who).await?;
            self.inner.lock_renew(who, req).await
        })
    }

    fn callbacks(&self) -> BoxFuture<'_, Result<CallbackStream, PortError>> {
        Box::pin(async move {
            let frames = self.inner.callbacks().await?;
            let dropped = self.dropped_breaks.clone();
            let filtered = frames.filter(move |f| {
                let is_break = matches!(
                    f,
                    Ok(CallbackFrame::Break { .. } | CallbackFrame::EntryBreak { .. })
                );
                let keep = !(is_break && take_one(&dropped));
                std::future::ready(keep)
            });
            Ok(Box::pin(filtered) as CallbackStream)
        })
    }
}
