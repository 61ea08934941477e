//! The port: everything the cache manager asks of a server, as one trait (`Server`). The
//! cache reaches servers only through it; `remote::Remote` implements it over HTTP, and
//! `testing::MemoryServer` (feature `testing`) in memory over the server's own services.
//!
//! Every call that acts on files names who it acts for (`Who`): the port signs it with
//! that user's credentials if it holds any, and the server checks it against their rights.
//! Nothing about who acts is kept outside the call.
//!
//! Owns: the trait, its error type (`PortError`, which keeps what caused it) and the types
//! that cross it (`Who`, `Fetched`, `FetchProgress`, `Body`, `CallbackStream`). Must not
//! know the cache's state or any HTTP type beyond the body of a streamed store.

use bytes::Bytes;
use dfs_common::locks::{
    ListRequest, LockInfo, LockReply, LockRequest, ReleaseReply, ReleaseRequest, RenewReply,
    RenewRequest, TestReply,
};
use dfs_common::proto::{CallbackFrame, DirReply, DirRequest};
use dfs_common::{Attr, FsError, Ino};
use http_body_util::combinators::BoxBody;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Who a request acts for: a local user, whose credentials sign it if the port holds any
/// (else it is anonymous to a realm), or nobody: the client's own work that no user asked
/// for (the callback channel, lease renewal, lock releases, revalidation after a
/// reconnect), which gets what anonymous callers get.
///
/// The FUSE adapter makes one per request from the kernel's uid; the path API and the
/// `dfs` command from the uid of their process; work that outlives its request (the retry
/// of an unstored file, a write-behind upload, a fetch that goes on after its open was
/// answered) carries the one of the user it was started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Who {
    uid: Option<u32>,
}

impl Who {
    /// Nobody: no credentials, anonymous rights.
    pub const ANONYMOUS: Who = Who { uid: None };

    /// Local user `uid`.
    pub const fn user(uid: u32) -> Who {
        Who { uid: Some(uid) }
    }

    /// Local user `uid` if there is one, else nobody (a recorded writer, say).
    pub const fn of(uid: Option<u32>) -> Who {
        Who { uid }
    }

    /// The user who runs this process.
    pub fn process() -> Who {
        // SAFETY: getuid cannot fail.
        Who::user(unsafe { libc::getuid() })
    }

    /// The local user, `None` for nobody.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }
}

/// A boxed future, so that `Server` can be used as `dyn Server`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The body of a store sent while its file is still being written (`cache::behind`).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// The frames of a callback channel, in order; it ends (or fails) when the channel is lost.
pub type CallbackStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<CallbackFrame, PortError>> + Send>>;

/// What a fetch found.
#[derive(Debug)]
pub enum Fetched {
    /// The caller's version is current; nothing was transferred.
    NotModified(Attr),
    /// The contents were written to the destination file.
    Fetched(Attr),
}

/// Told, during a fetch, how far the destination file is written with bytes a reader may
/// see (never bytes that are checked only at the end). The cache's `Filling` is one.
pub trait FetchProgress: Send + Sync {
    fn advance(&self, upto: u64);
}

/// Why a call through the port failed. Each variant keeps its cause; the cache turns it
/// into an `FsError` (and the FUSE edge that into an errno) with `From`.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The server answered with a file-system error (or a transport failure it stands
    /// for: `FsError::Unavailable`).
    #[error(transparent)]
    Answer(#[from] FsError),
    /// A fetch's body broke off or ended before the file did: a server that finds its copy
    /// bad mid-stream drops it and serves a good one next time, so this is worth a retry.
    #[error("fetch of inode {ino} cut short after {received} of {expected} bytes")]
    CutShort {
        ino: Ino,
        received: u64,
        expected: u64,
        #[source]
        cause: Option<std::io::Error>,
    },
    /// A fetch's bytes failed their check (hash or length): worth a retry too.
    #[error("contents of inode {ino} failed their check: {why}")]
    Corrupt { ino: Ino, why: &'static str },
    /// A local file of the transfer (the destination, or the file sent).
    #[error("local file of the transfer")]
    Local(#[from] std::io::Error),
}

impl PortError {
    /// The server's answer, if this is one.
    pub fn answer(&self) -> Option<&FsError> {
        match self {
            PortError::Answer(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PortError> for FsError {
    fn from(e: PortError) -> FsError {
        match e {
            PortError::Answer(e) => e,
            e @ PortError::CutShort { .. } => FsError::Unavailable(e.to_string()),
            e @ PortError::Corrupt { .. } => FsError::Corrupt(e.to_string()),
            // A local ENOENT is no "not found on the server" (`FsError::from_io`).
            PortError::Local(e) => FsError::from_io(&e),
        }
    }
}

/// What the cache manager asks of a server, for the client it is (one identity per port:
/// a mount). Within that client each call acts for the `Who` it is given.
pub trait Server: Send + Sync + 'static {
    /// The id the server gave this client (0: anonymous, or not registered yet).
    fn client_id(&self) -> u64;

    /// Whether requests of `who` are signed (they carry their contents' hash before the
    /// body, so no store can start before the file is complete).
    fn signs(&self, who: &Who) -> bool;

    /// One directory-service call.
    fn dir<'a>(
        &'a self,
        who: &'a Who,
        req: &'a DirRequest,
    ) -> BoxFuture<'a, Result<DirReply, PortError>>;

    /// Fetches `ino` into `dest` unless the server still has `have_version`. On error
    /// `dest` may hold a partial file; the caller removes it.
    fn fetch<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        have_version: Option<u64>,
        dest: &'a Path,
        progress: Option<Arc<dyn FetchProgress>>,
    ) -> BoxFuture<'a, Result<Fetched, PortError>>;

    /// Stores the whole of local file `src` as the contents of `ino`, fenced by `fence`,
    /// with permission bits `mode` if given, clearing set-id bits if `kill_suid`. Returns
    /// the new attributes once they are durable.
    fn store<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        src: &'a Path,
        fence: Option<u64>,
        mode: Option<u32>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>>;

    /// Stores `body`, sent while its file is still written: no length, hash or mtime up
    /// front (so unsigned: the cache sends one only for a `who` it does not sign for).
    fn store_streamed<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        body: Body,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>>;

    /// Takes a lock, or says who holds it; the server may hold the call up to
    /// `req.wait_ms` (`extra` is that wait, for the call's timeout).
    fn lock_acquire<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
        extra: Duration,
    ) -> BoxFuture<'a, Result<LockReply, PortError>>;

    fn lock_release<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ReleaseRequest,
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>>;

    /// Several releases in one call.
    fn lock_release_many<'a>(
        &'a self,
        who: &'a Who,
        reqs: &'a [ReleaseRequest],
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>>;

    fn lock_test<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
    ) -> BoxFuture<'a, Result<TestReply, PortError>>;

    fn lock_list<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, PortError>>;

    /// Renews every lease of this client; says which locks it no longer holds.
    fn lock_renew<'a>(
        &'a self,
        who: &'a Who,
        req: &'a RenewRequest,
    ) -> BoxFuture<'a, Result<RenewReply, PortError>>;

    /// Opens this client's callback channel. It is the client's, not a user's: it carries
    /// only inode numbers, sealed with the client's key, so it names no `Who`.
    fn callbacks(&self) -> BoxFuture<'_, Result<CallbackStream, PortError>>;
}

/// A shared port is a port: the cache and a test (or a fault wrapper) may hold one server.
impl<S: Server + ?Sized> Server for Arc<S> {
    fn client_id(&self) -> u64 {
        (**self).client_id()
    }
    fn signs(&self, who: &Who) -> bool {
        (**self).signs(who)
    }
    fn dir<'a>(
        &'a self,
        who: &'a Who,
        req: &'a DirRequest,
    ) -> BoxFuture<'a, Result<DirReply, PortError>> {
        (**self).dir(who, req)
    }
    fn fetch<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        have: Option<u64>,
        dest: &'a Path,
        progress: Option<Arc<dyn FetchProgress>>,
    ) -> BoxFuture<'a, Result<Fetched, PortError>> {
        (**self).fetch(who, ino, have, dest, progress)
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
        (**self).store(who, ino, src, fence, mode, kill_suid)
    }
    fn store_streamed<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        body: Body,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>> {
        (**self).store_streamed(who, ino, body, fence, kill_suid)
    }
    fn lock_acquire<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
        extra: Duration,
    ) -> BoxFuture<'a, Result<LockReply, PortError>> {
        (**self).lock_acquire(who, req, extra)
    }
    fn lock_release<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ReleaseRequest,
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        (**self).lock_release(who, req)
    }
    fn lock_release_many<'a>(
        &'a self,
        who: &'a Who,
        reqs: &'a [ReleaseRequest],
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        (**self).lock_release_many(who, reqs)
    }
    fn lock_test<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
    ) -> BoxFuture<'a, Result<TestReply, PortError>> {
        (**self).lock_test(who, req)
    }
    fn lock_list<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, PortError>> {
        (**self).lock_list(who, req)
    }
    fn lock_renew<'a>(
        &'a self,
        who: &'a Who,
        req: &'a RenewRequest,
    ) -> BoxFuture<'a, Result<RenewReply, PortError>> {
        (**self).lock_renew(who, req)
    }
    fn callbacks(&self) -> BoxFuture<'_, Result<CallbackStream, PortError>> {
        (**self).callbacks()
    }
}
