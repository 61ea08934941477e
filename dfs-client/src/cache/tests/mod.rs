//! Unit tests of the cache's rules on the in-memory server (`crate::testing`): coherence
//! (`coherence`), storing (`store`), write-behind (`behind`), errors (`errors`) and who
//! acts (`users`, in a realm cell). They
//! need no mount and no root; run them with `cargo test -p dfs-client --features testing`.
//!
//! Owns: the tests and their small helpers. Must not reach into the server except to do
//! what another client or the server itself would (a lapsed lease, a restart).

mod behind;
mod coherence;
mod errors;
mod store;
mod users;

use crate::cache::{CacheError, Creator};
use crate::port::Who;
use crate::testing::{Harness, TestCell};
use dfs_common::{Attr, FsError, Ino, ROOT_INO};
use std::sync::Arc;
use std::time::Duration;

/// The errno a user of the path API (and the kernel, see `dfs-fuse`'s `attrs::errno`)
/// gets for `e`.
pub(super) fn errno(e: CacheError) -> i32 {
    FsError::from(e).errno()
}

/// Whether `e` is the server's answer that the inode does not exist.
pub(super) fn not_found(e: &CacheError) -> bool {
    matches!(e, CacheError::Fs(FsError::NotFound))
}

pub(super) fn cell() -> Arc<TestCell> {
    TestCell::new(Duration::from_secs(30))
}

pub(super) const ROOT: Ino = ROOT_INO;

/// Who the tests of an open cell act as (it checks nobody's rights).
pub(super) const ME: Who = Who::user(0);

fn creator() -> Creator {
    Creator::with_mode(0o644, 0, 0)
}

/// Creates `name` in the root with `data` and closes it (which stores it).
pub(super) async fn put(h: &Harness, name: &str, data: &[u8]) -> Attr {
    let (attr, open) = h
        .mgr
        .create(&ME, ROOT, name.as_bytes(), creator(), libc::O_WRONLY)
        .await
        .expect("create");
    if !data.is_empty() {
        h.mgr.write(open.fh, 0, data).expect("write");
    }
    h.mgr.flush(&ME, open.fh).await.expect("flush");
    h.mgr.release(open.fh);
    attr
}

/// Rewrites the whole of `ino` with `data` (an O_TRUNC open, write, close).
pub(super) async fn rewrite(h: &Harness, ino: Ino, data: &[u8]) {
    let open = h
        .mgr
        .open(&ME, ino, libc::O_WRONLY | libc::O_TRUNC)
        .await
        .expect("open for writing");
    h.mgr.write(open.fh, 0, data).expect("write");
    h.mgr.flush(&ME, open.fh).await.expect("flush");
    h.mgr.release(open.fh);
}

/// The whole contents of `ino` as this client reads them (open, read, close).
pub(super) async fn get(h: &Harness, ino: Ino) -> Vec<u8> {
    let open = h.mgr.open(&ME, ino, libc::O_RDONLY).await.expect("open");
    let data = read_all(h, open.fh);
    h.mgr.release(open.fh);
    data
}

pub(super) fn read_all(h: &Harness, fh: u64) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let chunk = h.mgr.read(fh, all.len() as u64, 1 << 20).expect("read");
        if chunk.is_empty() {
            return all;
        }
        all.extend_from_slice(&chunk);
    }
}

/// Waits (at most 5 s) until the server holds no lock on `ino` (a writers' lock goes
/// back in a batch shortly after the last close).
pub(super) async fn unlocked(h: &Harness, ino: Ino) {
    let locks = h.port.inner().cell().services().locks.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !locks.list(Some(ino), None, 10).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "inode {ino} stays locked"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Calls of each kind that reached the server so far: (dir, fetch, store, locks).
pub(super) fn calls(h: &Harness) -> [u64; 4] {
    h.port.counts()
}

pub(super) const FETCHES: usize = 1;
pub(super) const STORES: usize = 2;

/// Two clients of one fresh server.
pub(super) async fn two() -> (Arc<TestCell>, Harness, Harness) {
    let cell = cell();
    let a = Harness::new(&cell).await;
    let b = Harness::new(&cell).await;
    (cell, a, b)
}
