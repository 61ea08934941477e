//! Crash tests in process, through the server's named fail points (`fail_point!`, compiled
//! in for test builds only): a store that stops between its blob write and its commit,
//! between its commit and its breaks, and a log fsync that fails. At a crash point the data
//! dir is copied as it is on disk at that instant (the copy is what a restarted server
//! finds after `kill -9`), then opened the way `dfs-server` opens it at start: namespace,
//! blob store, the blob journal's replay, the orphan scan.
//!
//! The fail points are process-wide, so every test here runs under one `FailScenario`
//! (which serialises them); no other test binary configures them.

use bytes::Bytes;
use dfs_common::{Attr, BlobId, FileKind, FsError, Ino, Timestamp, ROOT_INO};
use dfs_server::api::files;
use dfs_server::blobs::journal::JOURNAL_MAX;
use dfs_server::blobs::{gc, journal, BlobStore};
use dfs_server::namespace::{Namespace, NsCommand};
use dfs_server::net::body::ReqBody;
use dfs_server::services::{Caller, Services};
use dfs_server::testing::{open_services, TestOptions};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A server's services on a data dir of their own, without HTTP.
struct Node {
    dir: tempfile::TempDir,
    svc: Arc<Services>,
}

fn open_node(dir: tempfile::TempDir) -> Node {
    let opts = TestOptions {
        gc_grace_secs: 0,
        replay_journal: true,
        ..TestOptions::default()
    };
    let svc = open_services(dir.path(), &opts);
    Node { dir, svc }
}

fn node() -> Node {
    open_node(tempfile::tempdir().unwrap())
}

/// What a server restarted on a copy of a data dir finds there (after its start-up
/// replay of the blob journal and its scan for orphans, which deletes at once any blob
/// file nothing references).
struct Restarted {
    ns: Namespace,
    blobs: Arc<BlobStore>,
    _dir: tempfile::TempDir,
}

fn restart_from(copy: tempfile::TempDir) -> Restarted {
    let ns = Namespace::open(&copy.path().join("meta.redb"), 0o1777, Timestamp::now()).unwrap();
    let blobs = Arc::new(BlobStore::open(copy.path()).unwrap());
    journal::replay(&blobs, &ns).unwrap();
    gc::adopt_orphans(&blobs, &ns, 0, u64::MAX / 2).unwrap();
    Restarted {
        ns,
        blobs,
        _dir: copy,
    }
}

impl Restarted {
    fn contents(&self, attr: &Attr) -> Vec<u8> {
        match attr.blob {
            None => Vec::new(),
            Some(id) => self.blobs.read_verified(&id, attr.size).unwrap().to_vec(),
        }
    }
}

/// Copies `from` to a new temp dir, file by file, as the disk holds it now.
fn snapshot(from: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else if let Err(e) = std::fs::copy(entry.path(), &target) {
                // A temp file renamed or removed while we copy was not there to find.
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
            }
        }
    }
    let to = tempfile::tempdir().unwrap();
    copy(from, to.path());
    to
}

/// Runs `body` with fail point `name` set to take a snapshot of `dir` when reached;
/// returns what `body` returned and the snapshot.
async fn crash_at<T>(
    name: &'static str,
    dir: &Path,
    body: impl std::future::Future<Output = T>,
) -> (T, tempfile::TempDir) {
    let taken: Arc<Mutex<Option<tempfile::TempDir>>> = Arc::default();
    let (slot, dir_path) = (taken.clone(), dir.to_path_buf());
    fail::cfg_callback(name, move || {
        let mut slot = slot.lock().unwrap();
        if slot.is_none() {
            *slot = Some(snapshot(&dir_path));
        }
    })
    .unwrap();
    let out = body.await;
    fail::remove(name);
    let copy = taken.lock().unwrap().take();
    (
        out,
        copy.unwrap_or_else(|| panic!("fail point {name} was not reached")),
    )
}

fn body(data: &[u8]) -> ReqBody {
    Full::new(Bytes::copy_from_slice(data))
        .map_err(|never| match never {})
        .boxed()
}

async fn store(node: &Node, ino: Ino, data: &[u8]) -> Result<Attr, FsError> {
    let req = Request::put(format!("/v1/files/{ino}"))
        .header("content-length", data.len())
        .body(body(data))
        .unwrap();
    let res = files::store(&node.svc, Caller::open(7), ino, req).await?;
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Ok(dfs_common::codec::decode::<Attr>(&bytes).unwrap())
}

async fn create(node: &Node, name: &str) -> Attr {
    let cmd = NsCommand::Create {
        parent: ROOT_INO,
        name: name.into(),
        mode: 0o644,
        umask: 0,
        uid: 0,
        gid: 0,
        exclusive: true,
        now: Timestamp::now(),
    };
    let out = node
        .svc
        .coherence
        .mutate(Caller::open(7), cmd, Vec::new(), None)
        .await
        .unwrap();
    let attr = out.attr.unwrap();
    assert_eq!(attr.kind, FileKind::File);
    attr
}

fn blob_of(data: &[u8]) -> BlobId {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    BlobId(d.as_ref().try_into().unwrap())
}

/// Sizes on both paths of a store: journalled with its commit, and a blob fsynced alone.
fn sizes() -> [(&'static str, usize); 2] {
    [("small", 4096), ("large", JOURNAL_MAX as usize + 4096)]
}

fn data(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag ^ (i % 251) as u8).collect()
}

fn blob_file(dir: &Path, id: &BlobId) -> PathBuf {
    BlobStore::open(dir).unwrap().path(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_blob_write_and_commit_keeps_the_old_contents_and_leaves_no_blob() {
    let _scenario = fail::FailScenario::setup();
    for (what, len) in sizes() {
        let node = node();
        let file = create(&node, "f").await;
        let (old, new) = (data(1, len), data(2, len));
        let before = store(&node, file.ino, &old).await.unwrap();
        let (stored, copy) = crash_at("commit::before_apply", node.dir.path(), async {
            store(&node, file.ino, &new).await
        })
        .await;
        stored.unwrap();
        let after = restart_from(copy);
        let attr = after.ns.getattr(file.ino).unwrap();
        assert_eq!(
            attr.version, before.version,
            "{what}: the version of the crash"
        );
        assert_eq!(
            after.contents(&attr),
            old,
            "{what}: contents after the crash"
        );
        assert!(
            !after.blobs.path(&blob_of(&new)).exists(),
            "{what}: the uncommitted blob is deleted at start"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_commit_before_the_breaks_keeps_the_new_contents() {
    let _scenario = fail::FailScenario::setup();
    for (what, len) in sizes() {
        let node = node();
        let file = create(&node, "f").await;
        let new = data(3, len);
        let (stored, copy) = crash_at("commit::before_breaks", node.dir.path(), async {
            store(&node, file.ino, &new).await
        })
        .await;
        let stored = stored.unwrap();
        // Nobody was told of the change yet, and it is on the disk already.
        let after = restart_from(copy);
        let attr = after.ns.getattr(file.ino).unwrap();
        assert_eq!(
            attr.version, stored.version,
            "{what}: the committed version"
        );
        assert_eq!(after.contents(&attr), new, "{what}: the committed contents");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_returns_an_error_and_deletes_its_blob() {
    let _scenario = fail::FailScenario::setup();
    for (what, len) in sizes() {
        let node = node();
        let file = create(&node, "f").await;
        let (old, new) = (data(4, len), data(5, len));
        let before = store(&node, file.ino, &old).await.unwrap();
        fail::cfg("commit::before_apply", "return").unwrap();
        let refused = store(&node, file.ino, &new).await;
        fail::remove("commit::before_apply");
        assert!(
            matches!(refused, Err(FsError::Io(_))),
            "{what}: {refused:?}"
        );
        let attr = node.svc.ns.getattr(file.ino).unwrap();
        assert_eq!(attr.version, before.version, "{what}: nothing committed");
        assert!(
            !blob_file(node.dir.path(), &blob_of(&new)).exists(),
            "{what}: the refused store's blob is deleted"
        );
        // The next store goes through.
        let again = store(&node, file.ino, &new).await.unwrap();
        assert!(again.version > before.version, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_fsync_fails_the_store_and_a_restart_loses_nothing_acknowledged() {
    let _scenario = fail::FailScenario::setup();
    for (what, len) in sizes() {
        let node = node();
        let file = create(&node, "f").await;
        let other = create(&node, "g").await;
        let (old, new) = (data(6, len), data(7, len));
        let acked = store(&node, file.ino, &old).await.unwrap();
        fail::cfg("wal::fsync", "return").unwrap();
        let refused = store(&node, other.ino, &new).await;
        fail::remove("wal::fsync");
        assert!(
            refused.is_err(),
            "{what}: a store not durable must fail: {refused:?}"
        );
        // The database takes no more commits (redb latches an I/O failure); the server
        // is told to stop, so that its restart recovers from the log.
        assert!(
            dfs_server::storage_failure::failed().is_some(),
            "{what}: the storage failure is recorded"
        );
        // A restart from what the disk holds keeps every acknowledged store.
        let after = restart_from(snapshot(node.dir.path()));
        let attr = after.ns.getattr(file.ino).unwrap();
        assert_eq!(attr.version, acked.version, "{what}");
        assert_eq!(after.contents(&attr), old, "{what}");
    }
}
