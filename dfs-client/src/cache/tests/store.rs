//! Storing: a close stores a changed copy, a failed store fails the close and keeps the
//! data for a later store, and the writers' lock fences stores.

use super::*;
use crate::testing::Calls;
use dfs_common::locks::{LockClass, ReleaseRequest, OPEN_OWNER};
use dfs_common::FsError;

/// The server forgets `h`'s writers' lock on `ino`, as when its lease ran out and
/// another client took it.
async fn lapse_lock(h: &Harness, ino: Ino) {
    let locks = h.port.inner().cell().services().locks.clone();
    let req = ReleaseRequest {
        ino,
        class: LockClass::Open,
        owner: OPEN_OWNER,
        range: None,
    };
    locks.release(h.mgr.client_id(), req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_stores_the_contents_for_every_client() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"hello").await;
    let seen = b.mgr.lookup(&ME, ROOT, b"f").await.unwrap();
    assert_eq!((seen.ino, seen.size), (f.ino, 5));
    assert_eq!(get(&b, f.ino).await, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_store_makes_a_new_version() {
    let (_cell, a, _b) = two().await;
    let f = put(&a, "f", b"1").await;
    let v1 = a.mgr.getattr(&ME, f.ino).await.unwrap().version;
    rewrite(&a, f.ino, b"22").await;
    let v2 = a.mgr.getattr(&ME, f.ino).await.unwrap().version;
    assert!(v2 > v1, "version {v1} -> {v2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_read_only_handle_stores_nothing() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    let open = b.mgr.open(&ME, f.ino, libc::O_RDONLY).await.unwrap();
    b.mgr.flush(&ME, open.fh).await.unwrap();
    b.mgr.release(open.fh);
    assert_eq!(calls(&b)[STORES], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_copy_opened_for_writing_stores_nothing() {
    let (_cell, a, _b) = two().await;
    let f = put(&a, "f", b"x").await;
    let stores = calls(&a)[STORES];
    let open = a.mgr.open(&ME, f.ino, libc::O_RDWR).await.unwrap();
    a.mgr.flush(&ME, open.fh).await.unwrap();
    a.mgr.release(open.fh);
    assert_eq!(calls(&a)[STORES], stores);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_fails_the_close_and_keeps_the_data() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"old").await;
    a.port
        .fail_next(Calls::Store, 1, FsError::Unavailable("injected".into()));
    let open = a
        .mgr
        .open(&ME, f.ino, libc::O_WRONLY | libc::O_TRUNC)
        .await
        .unwrap();
    a.mgr.write(open.fh, 0, b"precious").unwrap();
    let e = a.mgr.flush(&ME, open.fh).await.unwrap_err();
    assert_eq!(errno(e), libc::EIO);
    a.mgr.release(open.fh);
    assert_eq!(a.mgr.dirty_count(), 1);
    // This client sees its own unstored changes; the server still has the old ones.
    assert_eq!(get(&a, f.ino).await, b"precious");
    assert_eq!(get(&b, f.ino).await, b"old");
    assert_eq!(a.mgr.store_dirty().await, 0);
    assert_eq!(a.mgr.dirty_count(), 0);
    b.until("b's promise on f is broken", |b| {
        !b.mgr.holds_promise(f.ino)
    })
    .await;
    assert_eq!(get(&b, f.ino).await, b"precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_server_still_fails_leaves_the_file_dirty() {
    let (_cell, a, _b) = two().await;
    let f = put(&a, "f", b"x").await;
    a.port
        .fail_next(Calls::Store, 2, FsError::Unavailable("injected".into()));
    let open = a.mgr.open(&ME, f.ino, libc::O_WRONLY).await.unwrap();
    a.mgr.write(open.fh, 0, b"y").unwrap();
    assert!(a.mgr.flush(&ME, open.fh).await.is_err());
    a.mgr.release(open.fh);
    assert_eq!(a.mgr.store_dirty().await, 1);
    assert_eq!(a.mgr.store_dirty().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_is_durably_marked_in_the_cache_index() {
    let (_cell, a, _b) = two().await;
    let f = put(&a, "f", b"x").await;
    a.port
        .fail_next(Calls::Store, 1, FsError::Unavailable("injected".into()));
    let open = a.mgr.open(&ME, f.ino, libc::O_WRONLY).await.unwrap();
    a.mgr.write(open.fh, 0, b"z").unwrap();
    assert!(a.mgr.flush(&ME, open.fh).await.is_err());
    assert_eq!(a.mgr.status("").unstored_files, 1);
    let dirty: Vec<_> = a
        .mgr
        .disk
        .all()
        .into_iter()
        .filter(|(_, e)| e.dirty)
        .collect();
    assert_eq!(dirty.len(), 1);
    assert_eq!(dirty[0].0, f.ino);
    a.mgr.release(open.fh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_new_file_is_stored_at_its_close() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "empty", b"").await;
    let seen = b.mgr.lookup(&ME, ROOT, b"empty").await.unwrap();
    assert_eq!((seen.ino, seen.size), (f.ino, 0));
    assert!(
        calls(&a)[STORES] >= 1,
        "the create was never made durable by a store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chmod_before_the_first_close_goes_with_the_store() {
    let (_cell, a, b) = two().await;
    let (attr, open) = a
        .mgr
        .create(
            &ME,
            ROOT,
            b"f",
            Creator::with_mode(0o644, 0, 0),
            libc::O_WRONLY,
        )
        .await
        .unwrap();
    a.mgr.write(open.fh, 0, b"data").unwrap();
    let dirs = calls(&a)[0];
    let shown = a
        .mgr
        .setattr(&ME, attr.ino, Some(0o600), None, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(shown.mode & 0o777, 0o600);
    assert_eq!(calls(&a)[0], dirs, "the chmod went on its own");
    a.mgr.flush(&ME, open.fh).await.unwrap();
    a.mgr.release(open.fh);
    assert_eq!(
        b.mgr.getattr(&ME, attr.ino).await.unwrap().mode & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_elsewhere_makes_an_open_for_writing_wait_and_fail_with_eagain() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    let open = a.mgr.open(&ME, f.ino, libc::O_WRONLY).await.unwrap();
    let e = b.mgr.open(&ME, f.ino, libc::O_WRONLY).await.unwrap_err();
    let what = format!("{e:?}");
    assert_eq!(errno(e), libc::EAGAIN, "{what}");
    a.mgr.release(open.fh);
    // The release goes in the next batch; then b gets its turn.
    let open = b.mgr.open(&ME, f.ino, libc::O_WRONLY).await.unwrap();
    b.mgr.release(open.fh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lock_is_won_back_when_nobody_stored_meanwhile() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"base").await;
    let open = a
        .mgr
        .open(&ME, f.ino, libc::O_WRONLY | libc::O_TRUNC)
        .await
        .unwrap();
    lapse_lock(&a, f.ino).await;
    a.mgr.write(open.fh, 0, b"mine").unwrap();
    a.mgr.flush(&ME, open.fh).await.unwrap();
    a.mgr.release(open.fh);
    assert_eq!(get(&b, f.ino).await, b"mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lock_after_another_store_keeps_the_copy_aside_and_fails_estale() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"base").await;
    let open = a
        .mgr
        .open(&ME, f.ino, libc::O_WRONLY | libc::O_TRUNC)
        .await
        .unwrap();
    lapse_lock(&a, f.ino).await;
    rewrite(&b, f.ino, b"theirs").await;
    a.mgr.write(open.fh, 0, b"mine").unwrap();
    let e = a.mgr.flush(&ME, open.fh).await.unwrap_err();
    let what = format!("{e:?}");
    assert_eq!(errno(e), libc::ESTALE, "{what}");
    a.mgr.release(open.fh);
    let kept: Vec<_> = std::fs::read_dir(a.mgr.cache_dir.join("lost+found"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(kept, vec![b"mine".to_vec()]);
    assert_eq!(a.mgr.dirty_count(), 0);
    assert_eq!(get(&b, f.ino).await, b"theirs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_removed_elsewhere_while_open_lives_on_in_its_descriptor() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    let open = a
        .mgr
        .open(&ME, f.ino, libc::O_RDWR | libc::O_TRUNC)
        .await
        .unwrap();
    b.mgr.unlink(&ME, ROOT, b"f").await.unwrap();
    a.mgr.write(open.fh, 0, b"still here").unwrap();
    a.mgr.flush(&ME, open.fh).await.unwrap();
    assert_eq!(read_all(&a, open.fh), b"still here");
    a.mgr.release(open.fh);
    assert_eq!(a.mgr.dirty_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_o_trunc_open_of_an_uncached_file_fetches_nothing() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", &[7u8; 4096]).await;
    rewrite(&b, f.ino, b"short").await;
    assert_eq!(calls(&b)[FETCHES], 0);
    a.until("a's promise on f is broken", |a| {
        !a.mgr.holds_promise(f.ino)
    })
    .await;
    assert_eq!(get(&a, f.ino).await, b"short");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_for_writing_share_one_copy_and_one_store() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"").await;
    let one = a.mgr.open(&ME, f.ino, libc::O_WRONLY).await.unwrap();
    let two = a.mgr.open(&ME, f.ino, libc::O_WRONLY).await.unwrap();
    a.mgr.write(one.fh, 0, b"ab").unwrap();
    a.mgr.write(two.fh, 2, b"cd").unwrap();
    a.mgr.flush(&ME, one.fh).await.unwrap();
    a.mgr.release(one.fh);
    a.mgr.flush(&ME, two.fh).await.unwrap();
    a.mgr.release(two.fh);
    assert_eq!(get(&b, f.ino).await, b"abcd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_by_setattr_reaches_the_server() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"0123456789").await;
    a.mgr
        .setattr(&ME, f.ino, None, None, None, Some(3), None, None)
        .await
        .unwrap();
    assert_eq!(b.mgr.getattr(&ME, f.ino).await.unwrap().size, 3);
    assert_eq!(get(&b, f.ino).await, b"012");
}
