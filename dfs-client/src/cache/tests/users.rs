//! Users: two local users on one cache act as themselves. In a realm cell every call is
//! checked against the rights of the user it names (`Who`), so a call that carried the
//! wrong user would be refused (or let through) where these tests say otherwise: a store
//! runs for the user who asks for it, a fetch for the reader, a lock for its taker, the
//! retry of an unstored file for its writer whoever runs the retry, and the work no user
//! asked for (revalidation after a server restart) gets what nobody gets. A write-behind
//! upload (which a realm's signed users do not get) is seen acting for its writer through
//! the fault port's record of whom each call acted for.

use super::*;
use crate::port::Who;
use crate::testing::Calls;
use dfs_common::locks::{LockClass, LockMode, LockRange, LockRequest};
use dfs_common::FsError;

const ALICE: Who = Who::user(1000);
const BOB: Who = Who::user(2000);

/// A client of realm `cell` on which alice (uid 1000) and bob (uid 2000) have logged in.
async fn client_of(cell: &Arc<TestCell>) -> Harness {
    let h = Harness::new(cell).await;
    h.port.inner().log_in(1000, 1000);
    h.port.inner().log_in(2000, 2000);
    h
}

/// A realm and one client of it.
async fn realm() -> (Arc<TestCell>, Harness) {
    let cell = TestCell::realm(Duration::from_secs(30));
    let h = client_of(&cell).await;
    (cell, h)
}

/// Local user `uid`'s creator of an inode with permission bits `mode`.
fn by(uid: u32, mode: u32) -> Creator {
    Creator::with_mode(mode, uid, uid)
}

/// `who` (uid `uid`) creates `name` in `dir` with permission bits `mode` and `data`, and
/// closes it (which stores it, as them).
async fn create_as(
    h: &Harness,
    who: &Who,
    uid: u32,
    dir: Ino,
    name: &str,
    mode: u32,
    data: &[u8],
) -> Attr {
    let (attr, open) = h
        .mgr
        .create(who, dir, name.as_bytes(), by(uid, mode), libc::O_WRONLY)
        .await
        .expect("create");
    h.mgr.write(open.fh, 0, data).expect("write");
    h.mgr.flush(who, open.fh).await.expect("flush");
    h.mgr.release(open.fh);
    attr
}

/// The whole contents of `ino` as `who` reads them on `h`.
async fn read_as(h: &Harness, who: &Who, ino: Ino) -> Result<Vec<u8>, CacheError> {
    let open = h.mgr.open(who, ino, libc::O_RDONLY).await?;
    let data = read_all(h, open.fh);
    h.mgr.release(open.fh);
    Ok(data)
}

/// Whether `r` is the server's refusal (EACCES).
fn denied<T>(r: &Result<T, CacheError>) -> bool {
    matches!(r, Err(CacheError::Fs(FsError::PermissionDenied(_))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_runs_for_the_user_who_asks_for_it() {
    let (cell, h) = realm().await;
    let (attr, open) = h
        .mgr
        .create(&BOB, ROOT, b"bobs", by(2000, 0o600), libc::O_WRONLY)
        .await
        .expect("bob creates his file");
    h.mgr.write(open.fh, 0, b"bob's words").unwrap();
    // Alice closes bob's descriptor (handed to her process): her store of his 0600 file
    // is refused, and his changes stay here, unstored.
    let refused = h.mgr.flush(&ALICE, open.fh).await;
    assert!(denied(&refused), "{refused:?}");
    assert_eq!(h.mgr.dirty_count(), 1);
    // Bob's close stores them, as bob.
    h.mgr.flush(&BOB, open.fh).await.expect("bob's store");
    h.mgr.release(open.fh);
    assert_eq!(h.mgr.dirty_count(), 0);
    let other = client_of(&cell).await;
    assert_eq!(
        read_as(&other, &BOB, attr.ino).await.unwrap(),
        b"bob's words"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_runs_for_the_reader() {
    let (cell, h) = realm().await;
    let f = create_as(&h, &BOB, 2000, ROOT, "bobs", 0o600, b"secret").await;
    // A cold client: each open fetches, as the user who opens.
    let other = client_of(&cell).await;
    assert!(denied(&read_as(&other, &ALICE, f.ino).await));
    assert!(denied(&read_as(&other, &Who::ANONYMOUS, f.ino).await));
    assert_eq!(other.port.counts()[FETCHES], 2, "both asked the server");
    assert_eq!(read_as(&other, &BOB, f.ino).await.unwrap(), b"secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_taken_for_the_user_who_asks() {
    let (_cell, h) = realm().await;
    let f = create_as(&h, &BOB, 2000, ROOT, "bobs", 0o600, b"x").await;
    let req = |owner: u64| LockRequest {
        ino: f.ino,
        class: LockClass::Advisory,
        mode: LockMode::Shared,
        range: LockRange::WHOLE,
        owner,
        pid: 0,
        label: String::new(),
        wait_ms: 0,
    };
    let none = std::time::Duration::ZERO;
    // Locking takes the right to read the file, and a user.
    assert!(denied(&h.mgr.lock_acquire(&ALICE, req(1), none).await));
    assert!(denied(
        &h.mgr.lock_acquire(&Who::ANONYMOUS, req(2), none).await
    ));
    h.mgr
        .lock_acquire(&BOB, req(3), none)
        .await
        .expect("bob locks his file");
    assert!(h.mgr.holds_advisory(f.ino, 3) && !h.mgr.holds_advisory(f.ino, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_of_unstored_files_stores_each_as_its_writer() {
    let (cell, h) = realm().await;
    // Both stores fail (the server is out of reach): each file stays here, unstored.
    h.port
        .fail_next(Calls::Store, 2, FsError::Unavailable("injected".into()));
    let mut made = Vec::new();
    for (who, uid, name, data) in [(ALICE, 1000, "alices", b"A"), (BOB, 2000, "bobs", b"B")] {
        let (attr, open) = h
            .mgr
            .create(&who, ROOT, name.as_bytes(), by(uid, 0o600), libc::O_WRONLY)
            .await
            .expect("create");
        h.mgr.write(open.fh, 0, data).unwrap();
        assert!(h.mgr.flush(&who, open.fh).await.is_err());
        h.mgr.release(open.fh);
        made.push((who, attr.ino, data));
    }
    assert_eq!(h.mgr.dirty_count(), 2);
    // The retry (which no user runs) stores each file as the user who wrote it: no one
    // user could store both 0600 files, nor could nobody.
    assert_eq!(h.mgr.store_dirty().await, 0, "a file was left unstored");
    let other = client_of(&cell).await;
    for (who, ino, data) in made {
        assert_eq!(read_as(&other, &who, ino).await.unwrap(), data);
    }
}

// One thread: the revalidation's answer is applied in one step, so once the public copy
// is trusted again the hidden one has been judged too.
#[tokio::test(flavor = "current_thread")]
async fn revalidation_after_a_restart_acts_for_nobody() {
    let (cell, h) = realm().await;
    let dir = h
        .mgr
        .mkdir(&BOB, ROOT, b"bobs", by(2000, 0o700))
        .await
        .expect("bob's directory");
    let hidden = create_as(&h, &BOB, 2000, dir.ino, "f", 0o644, b"behind 0700").await;
    let public = create_as(&h, &BOB, 2000, ROOT, "pub", 0o644, b"for all").await;
    // Revalidated for bob, both copies stay trusted: he may reach both.
    h.mgr.revalidate_cached(&BOB).await.unwrap();
    assert!(h.mgr.holds_promise(hidden.ino) && h.mgr.holds_promise(public.ino));
    // After a restart the client revalidates on its own, for no user: nobody cannot reach
    // a file in bob's 0700 directory, so to nobody it is gone and the client forgets what
    // it knew of it; the public copy is trusted again.
    cell.restart();
    h.until("the promises are void", |h| {
        !h.mgr.holds_promise(public.ino)
    })
    .await;
    h.until("the public copy is trusted again", |h| {
        h.mgr.holds_promise(public.ino)
    })
    .await;
    assert!(!h.mgr.holds_promise(hidden.ino), "revalidated for someone");
    let fetches = calls(&h)[FETCHES];
    assert_eq!(read_as(&h, &BOB, public.ino).await.unwrap(), b"for all");
    assert_eq!(
        calls(&h)[FETCHES],
        fetches,
        "the public copy was asked for again"
    );
    assert_eq!(read_as(&h, &BOB, hidden.ino).await.unwrap(), b"behind 0700");
    assert_eq!(calls(&h)[FETCHES], fetches + 1, "bob's open did not ask");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_upload_acts_for_the_writer_not_for_whoever_closes() {
    let carol = Who::user(3000);
    let (_cell, h, other) = two().await;
    let (attr, open) = h
        .mgr
        .create(&carol, ROOT, b"big", by(3000, 0o644), libc::O_WRONLY)
        .await
        .unwrap();
    assert!(open.direct, "a new file is not written behind");
    let mib = 1 << 20;
    let data: Vec<u8> = (0..9 * mib).map(|i| (i % 251) as u8).collect();
    for (i, chunk) in data.chunks(mib).enumerate() {
        h.mgr.write(open.fh, (i * mib) as u64, chunk).unwrap();
    }
    h.until("the upload has started", |h| calls(h)[STORES] == 1)
        .await;
    // Alice closes carol's descriptor: the store takes the upload's answer.
    h.mgr.flush(&ALICE, open.fh).await.unwrap();
    h.mgr.release(open.fh);
    assert_eq!(
        h.port.callers(Calls::Store),
        [carol],
        "stored for someone else"
    );
    assert!(get(&other, attr.ino).await == data, "contents differ");
}
