//! Reaping connections that stop moving, as Go's `net/http` does: a connection between
//! requests waits at most `idle_timeout` for the first byte of the next one, and then at
//! most `header_timeout` for the rest of its head; a request body may go at most
//! `body_timeout` without a byte (an idle-between-bytes timeout, never a total: a large
//! store streams for as long as its bytes keep coming), and so may an answer waiting for
//! the client to take a byte of it. Nothing times out while a request is being handled
//! and not reading its body: a lock wait (up to `--lock-max-wait-secs`) or a slow commit
//! moves no byte, and the callback channel is one request whose answer streams for as
//! long as the mount lives (a heartbeat every few seconds).
//!
//! The pieces: `Activity` is a connection's clock (requests in flight, when it went idle,
//! when the next head began), fed by `TimedIo` (bytes read) and `InFlight` (a request's
//! life: from its head to the end of its answer, held by the answer's body,
//! `GuardedBody`); `Activity::deadline` tells `super::serve` when to close it and why.
//! `TimedIo` also fails writes that wait too long, and `TimedBody` request bodies that
//! stall.
//!
//! Owns: those timers and wrappers. Must not know what requests mean.

use super::body::ResBody;
use super::limits::{ConnLimits, Reaped, Tally};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// One connection's clock.
pub struct Activity {
    born: Instant,
    in_flight: AtomicU32,
    /// Milliseconds after `born` when the last request ended (or the connection began).
    idle_since: AtomicU64,
    /// Milliseconds after `born`, plus one, when the first byte of the next request came
    /// while none was in flight; 0 if none has come.
    head_began: AtomicU64,
    /// Told when the deadline may have moved.
    pub changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            born: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_began: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }

    /// A request's head has been read; it is in flight until the guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_began.load(Ordering::Acquire) == 0
        {
            self.head_began.store(self.now_ms() + 1, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// When the connection is to be closed if nothing happens before, and why; `None`
    /// while a request is in flight.
    pub fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, Reaped)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_began.load(Ordering::Acquire) {
            0 => {
                let idle = self.at(self.idle_since.load(Ordering::Acquire));
                Some((idle + limits.idle_timeout, Reaped::Idle))
            }
            began => Some((self.at(began - 1) + limits.header_timeout, Reaped::SlowHead)),
        }
    }
}

/// A request in flight, from its head to the end of its answer.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let act = &self.0;
        if act.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            act.idle_since.store(act.now_ms(), Ordering::Release);
            act.head_began.store(0, Ordering::Release);
            act.changed.notify_one();
        }
    }
}

/// An answer's body that keeps its request in flight until it is sent (or dropped).
struct GuardedBody {
    inner: ResBody,
    _in_flight: InFlight,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, holding `in_flight` until it is done.
pub fn guarded(body: ResBody, in_flight: InFlight) -> ResBody {
    GuardedBody {
        inner: body,
        _in_flight: in_flight,
    }
    .boxed()
}

/// A timer armed while something waits, disarmed when it moves; its sleep is allocated
/// once.
struct Stall {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Stall {
    fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            sleep: None,
            armed: false,
        }
    }

    fn moved(&mut self) {
        self.armed = false;
    }

    /// Something waits: whether it has waited `limit` (registers for the wake-up if not).
    fn waited_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            sleep.as_mut().reset(deadline);
            self.armed = true;
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// A connection's socket, telling its `Activity` of bytes read and failing a write that
/// waits longer than `body_timeout` for the client to take bytes.
pub struct TimedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    write_stall: Stall,
    tally: Arc<Tally>,
}

impl TimedIo {
    pub fn new(
        inner: TcpStream,
        activity: Arc<Activity>,
        limits: &ConnLimits,
        tally: Arc<Tally>,
    ) -> TimedIo {
        TimedIo {
            inner,
            activity,
            write_stall: Stall::new(limits.body_timeout),
            tally,
        }
    }

    fn written(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                self.write_stall.moved();
                Poll::Ready(r)
            }
            Poll::Pending if self.write_stall.waited_too_long(cx) => {
                self.tally.reaped(Reaped::StalledReader);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took no byte of the answer in time",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        r
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails once it has gone `body_timeout` without a byte while its
/// handler waits for one.
pub struct TimedBody<B> {
    inner: B,
    stall: Stall,
    tally: Arc<Tally>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limits: &ConnLimits, tally: Arc<Tally>) -> TimedBody<B> {
        TimedBody {
            inner,
            stall: Stall::new(limits.body_timeout),
            tally,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.stall.moved();
                Poll::Ready(frame.map(|f| f.map_err(io::Error::other)))
            }
            Poll::Pending if self.stall.waited_too_long(cx) => {
                self.tally.reaped(Reaped::StalledBody);
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no byte of the request body for {} s",
                        self.stall.limit.as_secs_f64()
                    ),
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
