//! Errors: each layer's error keeps its cause, converts with `From`, and the retry of a
//! fetch decides on the error's variant.

use super::*;
use crate::port::PortError;
use crate::testing::Calls;
use dfs_common::FsError;
use std::error::Error;

fn cut() -> PortError {
    PortError::CutShort {
        ino: 9,
        received: 1,
        expected: 2,
        cause: Some(std::io::Error::other("reset")),
    }
}

#[test]
fn a_cut_short_fetch_keeps_its_cause_and_maps_to_eio() {
    let e = cut();
    assert_eq!(e.source().unwrap().to_string(), "reset");
    assert_eq!(FsError::from(e).errno(), libc::EIO);
}

#[test]
fn contents_that_fail_their_check_map_to_eio() {
    let e = PortError::Corrupt {
        ino: 3,
        why: "hash differs from the blob id",
    };
    assert!(matches!(FsError::from(e), FsError::Corrupt(_)));
}

#[test]
fn a_missing_local_file_is_no_not_found_on_the_server() {
    let e = PortError::from(std::io::Error::from_raw_os_error(libc::ENOENT));
    assert!(e.source().is_some());
    let fs = FsError::from(e);
    assert_ne!(fs, FsError::NotFound);
    assert_eq!(fs.errno(), libc::EIO);
}

#[test]
fn a_missing_cache_file_keeps_its_io_error_and_is_no_not_found() {
    let e = CacheError::from(std::io::Error::from_raw_os_error(libc::ENOENT));
    assert!(!e.is_not_found());
    let source = e.source().expect("the io::Error is kept");
    let io = source.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(errno(e), libc::EIO);
}

#[test]
fn the_ports_failures_stay_the_ports_and_its_answers_become_the_caches() {
    assert!(matches!(CacheError::from(cut()), CacheError::Port(_)));
    assert!(
        CacheError::from(cut()).is_unreachable(),
        "a cached copy may stand in"
    );
    let answer = CacheError::from(PortError::from(FsError::NotFound));
    assert!(answer.is_not_found());
    let local = CacheError::from(PortError::from(std::io::Error::from_raw_os_error(
        libc::ENOENT,
    )));
    assert!(!local.is_not_found() && !local.is_unreachable());
    assert_eq!(errno(local), libc::EIO);
}

#[test]
fn an_index_error_keeps_its_cause_and_maps_to_eio() {
    let e = CacheError::from(redb::Error::Corrupted("bad page".into()));
    assert!(e.source().is_some());
    assert_eq!(errno(e), libc::EIO);
}

#[test]
fn a_full_local_disk_is_enospc() {
    let e = PortError::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
    assert_eq!(FsError::from(e).errno(), libc::ENOSPC);
}

#[test]
fn the_servers_answer_passes_through_unchanged() {
    for answer in [
        FsError::NotFound,
        FsError::Busy("b".into()),
        FsError::Stale("s".into()),
    ] {
        let errno = answer.errno();
        let e = PortError::from(answer.clone());
        assert_eq!(e.answer(), Some(&answer));
        assert_eq!(FsError::from(e).errno(), errno);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_cut_short_is_retried() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"all of it").await;
    b.port.cut_fetches(1);
    assert_eq!(get(&b, f.ino).await, b"all of it");
    assert_eq!(calls(&b)[FETCHES], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cut_fetches_fail_the_open_with_eio() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"never whole").await;
    b.port.cut_fetches(3);
    let e = b.mgr.open(&ME, f.ino, libc::O_RDONLY).await.unwrap_err();
    assert!(
        matches!(e, CacheError::Port(PortError::CutShort { .. })),
        "the port's error, with its cause: {e:?}"
    );
    assert_eq!(errno(e), libc::EIO);
    assert_eq!(calls(&b)[FETCHES], 3);
    assert_eq!(get(&b, f.ino).await, b"never whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_with_a_cached_copy_opens_that_copy() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"cached").await;
    assert_eq!(get(&b, f.ino).await, b"cached");
    rewrite(&a, f.ino, b"newer").await;
    b.until("b's promise on f is broken", |b| {
        !b.mgr.holds_promise(f.ino)
    })
    .await;
    b.port
        .fail_next(Calls::Fetch, 1, FsError::Unavailable("injected".into()));
    assert_eq!(get(&b, f.ino).await, b"cached");
    assert_eq!(get(&b, f.ino).await, b"newer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_without_a_copy_fails_the_open_with_eio() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    b.port
        .fail_next(Calls::Fetch, 1, FsError::Unavailable("injected".into()));
    let e = b.mgr.open(&ME, f.ino, libc::O_RDONLY).await.unwrap_err();
    assert_eq!(errno(e), libc::EIO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_is_reported_and_not_remembered() {
    let (_cell, a, b) = two().await;
    put(&a, "f", b"x").await;
    b.port
        .fail_next(Calls::Dir, 1, FsError::Unavailable("injected".into()));
    let e = b.mgr.lookup(&ME, ROOT, b"f").await.unwrap_err();
    assert_eq!(errno(e), libc::EIO);
    assert!(b.mgr.lookup(&ME, ROOT, b"f").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_gone_from_the_server_drops_its_cached_copy() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    assert_eq!(get(&b, f.ino).await, b"x");
    a.mgr.unlink(&ME, ROOT, b"f").await.unwrap();
    b.until("b's promise on f is broken", |b| {
        !b.mgr.holds_promise(f.ino)
    })
    .await;
    let e = b.mgr.open(&ME, f.ino, libc::O_RDONLY).await.unwrap_err();
    assert!(not_found(&e), "{e:?}");
    assert!(b.mgr.disk.get(f.ino).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_service_that_cannot_be_reached_lets_the_writer_write() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    unlocked(&a, f.ino).await;
    b.port
        .fail_next(Calls::Locks, 1, FsError::Unavailable("injected".into()));
    let open = b
        .mgr
        .open(&ME, f.ino, libc::O_WRONLY | libc::O_TRUNC)
        .await
        .unwrap();
    b.mgr.write(open.fh, 0, b"unlocked").unwrap();
    b.mgr.flush(&ME, open.fh).await.unwrap();
    b.mgr.release(open.fh);
    assert_eq!(get(&b, f.ino).await, b"unlocked");
}
