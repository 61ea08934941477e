//! Write-behind: a file written in order from its start is uploaded while it is written;
//! anything else (a write out of order, a failed upload) falls back to the whole store.

use super::*;
use crate::testing::Calls;
use dfs_common::FsError;

const MIB: usize = 1 << 20;

/// 9 MiB of a pattern: past the 8 MiB at which an upload starts.
fn big() -> Vec<u8> {
    (0..9 * MIB).map(|i| (i % 251) as u8).collect()
}

/// Creates `name` and writes `data` in order, 1 MiB at a time; returns the open handle.
async fn write_in_order(h: &Harness, name: &str, data: &[u8]) -> (Ino, u64) {
    let (attr, open) = h
        .mgr
        .create(
            &ME,
            ROOT,
            name.as_bytes(),
            Creator::with_mode(0o644, 0, 0),
            libc::O_WRONLY,
        )
        .await
        .unwrap();
    assert!(open.direct, "a new file is not written behind");
    for (i, chunk) in data.chunks(MIB).enumerate() {
        h.mgr.write(open.fh, (i * MIB) as u64, chunk).unwrap();
    }
    (attr.ino, open.fh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_starts_before_the_close_and_the_close_takes_its_answer() {
    let (_cell, a, b) = two().await;
    let data = big();
    let (ino, fh) = write_in_order(&a, "big", &data).await;
    a.until("the upload has started", |a| calls(a)[STORES] == 1)
        .await;
    a.mgr.flush(&ME, fh).await.unwrap();
    a.mgr.release(fh);
    assert_eq!(calls(&a)[STORES], 1, "the close sent the file again");
    assert!(get(&b, ino).await == data, "contents differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_is_not_uploaded_before_its_close() {
    let (_cell, a, b) = two().await;
    let data = vec![3u8; 2 * MIB];
    let (ino, fh) = write_in_order(&a, "small", &data).await;
    assert_eq!(calls(&a)[STORES], 0);
    a.mgr.flush(&ME, fh).await.unwrap();
    a.mgr.release(fh);
    assert_eq!(calls(&a)[STORES], 1);
    assert!(get(&b, ino).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_out_of_order_abandons_the_upload_and_the_close_sends_it_whole() {
    let (_cell, a, b) = two().await;
    let mut data = big();
    let (ino, fh) = write_in_order(&a, "big", &data).await;
    a.until("the upload has started", |a| calls(a)[STORES] == 1)
        .await;
    a.mgr.write(fh, 0, b"REWRITTEN").unwrap();
    data[..9].copy_from_slice(b"REWRITTEN");
    a.mgr.flush(&ME, fh).await.unwrap();
    a.mgr.release(fh);
    assert_eq!(calls(&a)[STORES], 2);
    assert!(
        get(&b, ino).await == data,
        "the abandoned upload's bytes were kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_is_retried_whole_at_the_close() {
    let (_cell, a, b) = two().await;
    let data = big();
    a.port
        .fail_next(Calls::Store, 1, FsError::Unavailable("injected".into()));
    let (ino, fh) = write_in_order(&a, "big", &data).await;
    a.mgr.flush(&ME, fh).await.unwrap();
    a.mgr.release(fh);
    assert_eq!(calls(&a)[STORES], 1, "the whole store did not happen once");
    assert!(get(&b, ino).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_upload_and_the_whole_store_fail_the_file_waits_for_the_retry() {
    let (_cell, a, b) = two().await;
    let data = big();
    a.port
        .fail_next(Calls::Store, 2, FsError::Unavailable("injected".into()));
    let (ino, fh) = write_in_order(&a, "big", &data).await;
    assert_eq!(errno(a.mgr.flush(&ME, fh).await.unwrap_err()), libc::EIO);
    a.mgr.release(fh);
    assert_eq!(a.mgr.dirty_count(), 1);
    assert_eq!(a.mgr.store_dirty().await, 0);
    assert!(get(&b, ino).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_an_fsync_are_stored_by_the_close_in_order() {
    let (_cell, a, b) = two().await;
    let (attr, open) = a
        .mgr
        .create(
            &ME,
            ROOT,
            b"log",
            Creator::with_mode(0o644, 0, 0),
            libc::O_WRONLY,
        )
        .await
        .unwrap();
    a.mgr.write(open.fh, 0, b"first ").unwrap();
    a.mgr.fsync(&ME, open.fh).await.unwrap();
    assert_eq!(get(&b, attr.ino).await, b"first ");
    a.mgr.write(open.fh, 6, b"second").unwrap();
    a.mgr.flush(&ME, open.fh).await.unwrap();
    a.mgr.release(open.fh);
    b.until("b's promise on log is broken", |b| {
        !b.mgr.holds_promise(attr.ino)
    })
    .await;
    assert_eq!(get(&b, attr.ino).await, b"first second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_still_gets_the_copy_as_of_the_close() {
    let (_cell, a, b) = two().await;
    a.port.delay(Duration::from_millis(20));
    let f = put(&a, "slow", b"patience").await;
    a.port.delay(Duration::ZERO);
    assert_eq!(get(&b, f.ino).await, b"patience");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_files_of_several_inodes_are_all_stored_by_the_retry() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"").await;
    let g = put(&a, "g", b"").await;
    a.port
        .fail_next(Calls::Store, 2, FsError::Unavailable("injected".into()));
    for (ino, data) in [(f.ino, b"eff"), (g.ino, b"gee")] {
        let open = a.mgr.open(&ME, ino, libc::O_WRONLY).await.unwrap();
        a.mgr.write(open.fh, 0, data).unwrap();
        assert!(a.mgr.flush(&ME, open.fh).await.is_err());
        a.mgr.release(open.fh);
    }
    assert_eq!(a.mgr.dirty_count(), 2);
    assert_eq!(a.mgr.store_dirty().await, 0);
    assert_eq!(get(&b, f.ino).await, b"eff");
    assert_eq!(get(&b, g.ino).await, b"gee");
}
