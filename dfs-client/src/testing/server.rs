//! An in-memory server for the cache's unit tests: the real server's services
//! (`dfs_server::services::Services`: its namespace state machine, blob store, lock service
//! and callback registry, in a temp dir), reached by direct calls instead of HTTP. Every
//! answer is the one the server's own handlers give (`api::dir::dispatch`,
//! `api::files::fetch` / `store`, `LockService`, `callbacks::channel`), so a rule tested here is
//! the server's rule, not a second model of it. What it leaves out: the HTTP edge (client
//! proofs, realms, permission checks: an open cell), and timeouts.
//!
//! Owns: `TestCell` (one server, restartable with a new epoch) and `CellPort` (the port of
//! one client of it). Must not hold cache policy.

use crate::port::{Body, BoxFuture, CallbackStream, FetchProgress, Fetched, PortError, Server};
use bytes::Bytes;
use dfs_common::locks::{
    ListRequest, LockInfo, LockReply, LockRequest, ReleaseReply, ReleaseRequest, RenewReply,
    RenewRequest, TestReply,
};
use dfs_common::proto::{self, DirReply, DirRequest};
use dfs_common::{codec, Attr, FsError, Ino, Timestamp};
use dfs_server::callbacks::Registry;
use dfs_server::services::{Caller, Services};
use dfs_server::testing::{open_services, TestOptions};
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// One server: its data in a temp dir, its services, and its current epoch.
pub struct TestCell {
    _dir: tempfile::TempDir,
    services: RwLock<Arc<Services>>,
    next_client: AtomicU64,
}

impl TestCell {
    /// A fresh server with an empty root (mode 1777) and leases of `lease`. Call inside
    /// a tokio runtime.
    pub fn new(lease: Duration) -> Arc<TestCell> {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = TestOptions {
            lease,
            gc_grace_secs: 3600,
            epoch: Registry::random_epoch(),
            replay_journal: false,
        };
        let services = open_services(dir.path(), &opts);
        Arc::new(TestCell {
            _dir: dir,
            services: RwLock::new(services),
            next_client: AtomicU64::new(1),
        })
    }

    /// The services as they are now (a restart replaces them).
    pub fn services(&self) -> Arc<Services> {
        self.services.read().unwrap().clone()
    }

    /// The port of a new client of this server.
    pub fn client(self: &Arc<Self>) -> Arc<CellPort> {
        Arc::new(CellPort {
            cell: self.clone(),
            client: self.next_client.fetch_add(1, Ordering::SeqCst),
        })
    }

    /// The server restarts: a new epoch, every promise and callback channel forgotten;
    /// the namespace, blobs and locks are what was durable (here: everything committed).
    pub fn restart(&self) {
        let mut services = self.services.write().unwrap();
        let old = services.clone();
        old.callbacks.stop();
        let registry = Arc::new(Registry::new(Registry::random_epoch()));
        *services = Services::new(
            old.ns.clone(),
            old.blobs.clone(),
            registry,
            old.locks.clone(),
            old.settings.clone(),
        )
        .expect("services");
    }

    /// The server's epoch now.
    pub fn epoch(&self) -> u64 {
        self.services().callbacks.epoch()
    }
}

/// The port of one client of a `TestCell`.
pub struct CellPort {
    cell: Arc<TestCell>,
    client: u64,
}

impl CellPort {
    fn caller(&self) -> Caller {
        Caller::open(self.client)
    }

    /// The server this client talks to.
    pub fn cell(&self) -> &Arc<TestCell> {
        &self.cell
    }
}

fn empty() -> dfs_server::net::body::ReqBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

fn attr_header(headers: &hyper::HeaderMap) -> Result<Attr, PortError> {
    let v = headers
        .get(proto::HDR_ATTR)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| FsError::Io("fetch answer without attributes".into()))?;
    Ok(codec::from_header(v)?)
}

impl Server for CellPort {
    fn client_id(&self) -> u64 {
        self.client
    }

    fn signs(&self) -> bool {
        false
    }

    fn dir<'a>(&'a self, req: &'a DirRequest) -> BoxFuture<'a, Result<DirReply, PortError>> {
        Box::pin(async move {
            let svc = self.cell.services();
            Ok(dfs_server::api::dir::dispatch(&svc, self.caller(), req.clone()).await?)
        })
    }

    fn fetch<'a>(
        &'a self,
        ino: Ino,
        have_version: Option<u64>,
        dest: &'a Path,
        progress: Option<Arc<dyn FetchProgress>>,
    ) -> BoxFuture<'a, Result<Fetched, PortError>> {
        Box::pin(async move {
            let svc = self.cell.services();
            let mut req = Request::builder()
                .method("GET")
                .uri(format!("/v1/files/{ino}"));
            if let Some(v) = have_version {
                req = req.header(proto::HDR_HAVE_VERSION, v.to_string());
            }
            let req = req.body(empty()).expect("request");
            let resp = dfs_server::api::files::fetch(&svc, self.caller(), ino, req).await?;
            let attr = attr_header(resp.headers())?;
            match resp.status() {
                StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified(attr)),
                StatusCode::OK => {
                    let body = resp.into_body();
                    let idle = Duration::from_secs(10);
                    crate::replica_read::receive(body, &attr, dest, false, idle, progress).await?;
                    Ok(Fetched::Fetched(attr))
                }
                other => Err(FsError::Io(format!("fetch answered {other}")).into()),
            }
        })
    }

    fn store<'a>(
        &'a self,
        ino: Ino,
        src: &'a Path,
        fence: Option<u64>,
        mode: Option<u32>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>> {
        Box::pin(async move {
            let bytes = std::fs::read(src)?;
            let mtime = std::fs::metadata(src)?
                .modified()
                .ok()
                .map(Timestamp::from_system);
            let mut req = store_request(ino, fence, kill_suid)
                .header(hyper::header::CONTENT_LENGTH, bytes.len().to_string());
            if let Some(mtime) = mtime {
                req = req.header(proto::HDR_MTIME, codec::to_header(&mtime));
            }
            if let Some(mode) = mode {
                req = req.header(proto::HDR_MODE, mode.to_string());
            }
            let body = http_body_util::Full::new(Bytes::from(bytes))
                .map_err(|never| match never {})
                .boxed();
            self.send_store(ino, req.body(body).expect("request")).await
        })
    }

    fn store_streamed(
        &self,
        ino: Ino,
        body: Body,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> BoxFuture<'_, Result<Attr, PortError>> {
        Box::pin(async move {
            let req = store_request(ino, fence, kill_suid)
                .body(body)
                .expect("request");
            self.send_store(ino, req).await
        })
    }

    fn lock_acquire<'a>(
        &'a self,
        req: &'a LockRequest,
        _extra: Duration,
    ) -> BoxFuture<'a, Result<LockReply, PortError>> {
        Box::pin(async move {
            let locks = self.cell.services().locks.clone();
            Ok(locks.acquire(self.client, req.clone()).await?)
        })
    }

    fn lock_release<'a>(
        &'a self,
        req: &'a ReleaseRequest,
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        Box::pin(async move {
            let locks = self.cell.services().locks.clone();
            Ok(locks.release(self.client, req.clone()).await?)
        })
    }

    fn lock_release_many<'a>(
        &'a self,
        reqs: &'a [ReleaseRequest],
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        Box::pin(async move {
            let locks = self.cell.services().locks.clone();
            Ok(locks.release_many(self.client, reqs.to_vec()).await?)
        })
    }

    fn lock_test<'a>(
        &'a self,
        req: &'a LockRequest,
    ) -> BoxFuture<'a, Result<TestReply, PortError>> {
        Box::pin(async move {
            let locks = self.cell.services().locks.clone();
            Ok(locks.test(self.client, req.clone()).await?)
        })
    }

    fn lock_list<'a>(
        &'a self,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, PortError>> {
        Box::pin(async move {
            let locks = self.cell.services().locks.clone();
            Ok(locks.list(req.ino, req.after, req.limit).await?)
        })
    }

    fn lock_renew<'a>(
        &'a self,
        req: &'a RenewRequest,
    ) -> BoxFuture<'a, Result<RenewReply, PortError>> {
        Box::pin(async move {
            let locks = self.cell.services().locks.clone();
            Ok(locks.renew(self.client, req.clone()).await?)
        })
    }

    fn callbacks(&self) -> BoxFuture<'_, Result<CallbackStream, PortError>> {
        Box::pin(async move {
            let registry = self.cell.services().callbacks.clone();
            let rx = dfs_server::callbacks::channel::open(registry, self.client);
            let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|item| (item.map(hyper::body::Frame::data), rx))
            });
            let body: Body = BodyExt::boxed(http_body_util::StreamBody::new(chunks));
            Ok(crate::remote::frames_of(body))
        })
    }
}

/// A store request's head, as `remote` sends it.
fn store_request(ino: Ino, fence: Option<u64>, kill_suid: bool) -> hyper::http::request::Builder {
    let mut req = Request::builder()
        .method("PUT")
        .uri(format!("/v1/files/{ino}"));
    if let Some(token) = fence {
        req = req.header(dfs_common::locks::HDR_FENCE, token.to_string());
    }
    if kill_suid {
        req = req.header(proto::HDR_KILL_SUID, "1");
    }
    req
}

impl CellPort {
    async fn send_store(
        &self,
        ino: Ino,
        req: Request<dfs_server::net::body::ReqBody>,
    ) -> Result<Attr, PortError> {
        let svc = self.cell.services();
        let resp = dfs_server::api::files::store(&svc, self.caller(), ino, req).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| FsError::Io(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(FsError::Io(format!("store answered {status}")).into());
        }
        Ok(codec::decode::<Attr>(&body)?)
    }
}
