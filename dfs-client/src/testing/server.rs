//! An in-memory server for the cache's unit tests: the real server's services
//! (`dfs_server::services::Services`: its namespace state machine, blob store, lock service
//! and callback registry, in a temp dir), reached by direct calls instead of HTTP. Every
//! answer is the one the server's own handlers give (`api::dir::handle`,
//! `api::files::fetch` / `store`, `api::locks::handle`, `callbacks::channel`), so a rule tested
//! here is the server's rule, not a second model of it.
//!
//! A cell is open (nothing checked: `TestCell::new`) or a realm (`TestCell::realm`): there
//! each call is checked, by those handlers, against the rights of the user it names
//! (`Who`) — the principal that user logged in as on this client (`CellPort::log_in`,
//! what `dfs login` is to a mount), or `nobody` for a user who did not and for
//! `Who::ANONYMOUS`. What it leaves out: the rest of the HTTP edge (client proofs,
//! tickets and signatures, which anonymous requests a realm admits: here all that the
//! modes let `nobody` do), and timeouts.
//!
//! Owns: `TestCell` (one server, restartable with a new epoch) and `CellPort` (the port of
//! one client of it, and the logins of its users). Must not hold cache policy.

use crate::port::{
    Body, BoxFuture, CallbackStream, FetchProgress, Fetched, PortError, Server, Who,
};
use bytes::Bytes;
use dfs_common::auth::Identity;
use dfs_common::locks::{
    ListRequest, LockInfo, LockReply, LockRequest, ReleaseReply, ReleaseRequest, RenewReply,
    RenewRequest, TestReply,
};
use dfs_common::proto::{self, DirReply, DirRequest};
use dfs_common::{codec, Attr, FsError, Ino, Timestamp};
use dfs_server::api::Call;
use dfs_server::callbacks::Registry;
use dfs_server::net::body::{ReqBody, ResBody};
use dfs_server::services::{Caller, Services};
use dfs_server::testing::{open_services, TestOptions};
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// One server: its data in a temp dir, its services, and its current epoch.
pub struct TestCell {
    _dir: tempfile::TempDir,
    services: RwLock<Arc<Services>>,
    next_client: AtomicU64,
    /// Calls are checked against their user's rights.
    realm: bool,
}

impl TestCell {
    /// A fresh open cell (nothing checked) with an empty root (mode 1777) and leases of
    /// `lease`. Call inside a tokio runtime.
    pub fn new(lease: Duration) -> Arc<TestCell> {
        TestCell::with(lease, false)
    }

    /// A fresh realm: as `new`, but every call is checked against the rights of the user
    /// it acts for.
    pub fn realm(lease: Duration) -> Arc<TestCell> {
        TestCell::with(lease, true)
    }

    fn with(lease: Duration, realm: bool) -> Arc<TestCell> {
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
            realm,
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
            logins: Mutex::new(HashMap::new()),
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
    /// Who each local user is to a realm, once they logged in on this client.
    logins: Mutex<HashMap<u32, Identity>>,
}

impl CellPort {
    /// Local user `uid` logs in on this client as a principal of the realm with uid `uid`
    /// and group `gid` (what `dfs login` does on a mount): their calls act as that
    /// principal from now on.
    pub fn log_in(&self, uid: u32, gid: u32) {
        let identity = Identity {
            principal: format!("user{uid}"),
            realm: "TEST".into(),
            uid,
            gid,
            groups: vec![],
            admin: false,
        };
        self.logins.lock().unwrap().insert(uid, identity);
    }

    /// Who a call for `who` is to the server: anyone in an open cell; in a realm the
    /// principal `who` logged in as, or `nobody`.
    fn caller(&self, who: &Who) -> Caller {
        if !self.cell.realm {
            return Caller::open(self.client);
        }
        let login = who
            .uid()
            .and_then(|uid| self.logins.lock().unwrap().get(&uid).cloned());
        match login {
            Some(id) => Caller::of(self.client, &id),
            None => Caller::anonymous(self.client),
        }
    }

    /// One bincode `POST` to `path` through `handle`, one of the server's handlers, as
    /// the server's router would send it.
    async fn post<Req, Resp, H, Fut>(
        &self,
        path: &str,
        req: &Req,
        handle: H,
    ) -> Result<Resp, PortError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
        H: FnOnce(Arc<Services>, Request<ReqBody>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<ResBody>, FsError>>,
    {
        let bytes = codec::encode(&req);
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header(hyper::header::CONTENT_LENGTH, bytes.len().to_string())
            .body(dfs_server::net::body::full(bytes))
            .expect("request");
        let resp = handle(self.cell.services(), request).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| FsError::Io(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(FsError::Io(format!("{path} answered {status}")).into());
        }
        Ok(codec::decode(&body)?)
    }

    /// One call of the lock service (`/v1/locks/{name}`) for `who`.
    async fn lock_call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        who: &Who,
        name: &str,
        req: &Req,
    ) -> Result<Resp, PortError> {
        let caller = self.caller(who);
        let path = format!("{}{name}", dfs_server::api::locks::PREFIX);
        self.post(&path, req, |svc, request| async move {
            dfs_server::api::locks::handle(
                &svc,
                &Call {
                    caller,
                    session: None,
                },
                request,
            )
            .await
        })
        .await
    }

    /// The server this client talks to.
    pub fn cell(&self) -> &Arc<TestCell> {
        &self.cell
    }
}

fn empty() -> ReqBody {
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

    /// Users who logged in on a realm's client are signed for (as the HTTP port signs for
    /// those whose credentials it holds): their stores carry their hash, so they get no
    /// write-behind.
    fn signs(&self, who: &Who) -> bool {
        self.cell.realm
            && who
                .uid()
                .is_some_and(|uid| self.logins.lock().unwrap().contains_key(&uid))
    }

    fn dir<'a>(
        &'a self,
        who: &'a Who,
        req: &'a DirRequest,
    ) -> BoxFuture<'a, Result<DirReply, PortError>> {
        Box::pin(async move {
            let caller = self.caller(who);
            self.post("/v1/dir", req, |svc, request| async move {
                dfs_server::api::dir::handle(
                    &svc,
                    &Call {
                        caller,
                        session: None,
                    },
                    request,
                )
                .await
            })
            .await
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
            let svc = self.cell.services();
            let mut req = Request::builder()
                .method("GET")
                .uri(format!("/v1/files/{ino}"));
            if let Some(v) = have_version {
                req = req.header(proto::HDR_HAVE_VERSION, v.to_string());
            }
            let req = req.body(empty()).expect("request");
            let resp = dfs_server::api::files::fetch(&svc, self.caller(who), ino, req).await?;
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
        who: &'a Who,
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
            self.send_store(who, ino, req.body(body).expect("request"))
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
            let req = store_request(ino, fence, kill_suid)
                .body(body)
                .expect("request");
            self.send_store(who, ino, req).await
        })
    }

    fn lock_acquire<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
        _extra: Duration,
    ) -> BoxFuture<'a, Result<LockReply, PortError>> {
        Box::pin(self.lock_call(who, "acquire", req))
    }

    fn lock_release<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ReleaseRequest,
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        Box::pin(self.lock_call(who, "release", req))
    }

    fn lock_release_many<'a>(
        &'a self,
        who: &'a Who,
        reqs: &'a [ReleaseRequest],
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        Box::pin(self.lock_call(who, "release-many", reqs))
    }

    fn lock_test<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
    ) -> BoxFuture<'a, Result<TestReply, PortError>> {
        Box::pin(self.lock_call(who, "test", req))
    }

    fn lock_list<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, PortError>> {
        Box::pin(self.lock_call(who, "list", req))
    }

    fn lock_renew<'a>(
        &'a self,
        who: &'a Who,
        req: &'a RenewRequest,
    ) -> BoxFuture<'a, Result<RenewReply, PortError>> {
        Box::pin(self.lock_call(who, "renew", req))
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
        who: &Who,
        ino: Ino,
        req: Request<ReqBody>,
    ) -> Result<Attr, PortError> {
        let svc = self.cell.services();
        let resp = dfs_server::api::files::store(&svc, self.caller(who), ino, req).await?;
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
