//! Coherence: what another client changes reaches this one through callback breaks, and
//! what a restarted server forgot is revalidated by version.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_voids_the_promise_and_the_next_open_fetches_the_new_contents() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"one").await;
    assert_eq!(get(&b, f.ino).await, b"one");
    assert!(b.mgr.holds_promise(f.ino));
    rewrite(&a, f.ino, b"two!").await;
    b.until("b's promise on f is broken", |b| {
        !b.mgr.holds_promise(f.ino)
    })
    .await;
    assert_eq!(get(&b, f.ino).await, b"two!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_under_a_promise_makes_no_call() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"same").await;
    assert_eq!(get(&b, f.ino).await, b"same");
    let before = calls(&b);
    assert_eq!(get(&b, f.ino).await, b"same");
    assert_eq!(calls(&b), before, "a warm open went to the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_keeps_its_own_promise_after_its_store() {
    let (_cell, a, _b) = two().await;
    let f = put(&a, "f", b"mine").await;
    assert!(a.mgr.holds_promise(f.ino));
    let before = calls(&a)[FETCHES];
    assert_eq!(get(&a, f.ino).await, b"mine");
    assert_eq!(
        calls(&a)[FETCHES],
        before,
        "the writer fetched its own store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_created_elsewhere_is_seen_after_its_entry_break() {
    let (_cell, a, b) = two().await;
    assert!(not_found(
        &b.mgr.lookup(&ME, ROOT, b"new").await.unwrap_err()
    ));
    put(&a, "new", b"x").await;
    b.until("b forgets that new was missing", |b| {
        !matches!(b.mgr.try_lookup_cached(ROOT, b"new"), Some(Err(_)))
    })
    .await;
    assert_eq!(b.mgr.lookup(&ME, ROOT, b"new").await.unwrap().size, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlink_elsewhere_is_seen() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    assert_eq!(b.mgr.lookup(&ME, ROOT, b"f").await.unwrap().ino, f.ino);
    a.mgr.unlink(&ME, ROOT, b"f").await.unwrap();
    b.until("b forgets f", |b| {
        b.mgr.try_lookup_cached(ROOT, b"f").is_none()
    })
    .await;
    assert!(not_found(&b.mgr.lookup(&ME, ROOT, b"f").await.unwrap_err()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_over_a_name_is_seen_with_the_new_contents() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"old").await;
    let tmp = put(&a, ".f.tmp", b"new contents").await;
    assert_eq!(get(&b, f.ino).await, b"old");
    assert_eq!(b.mgr.lookup(&ME, ROOT, b"f").await.unwrap().ino, f.ino);
    a.mgr
        .rename(&ME, ROOT, b".f.tmp", ROOT, b"f", 0)
        .await
        .unwrap();
    b.until(
        "b forgets the old f",
        |b| !matches!(b.mgr.try_lookup_cached(ROOT, b"f"), Some(Ok(attr)) if attr.ino == f.ino),
    )
    .await;
    let now = b.mgr.lookup(&ME, ROOT, b"f").await.unwrap();
    assert_eq!(now.ino, tmp.ino);
    assert_eq!(get(&b, now.ino).await, b"new contents");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_shows_a_file_made_elsewhere() {
    let (_cell, a, b) = two().await;
    put(&a, "one", b"1").await;
    let names = |items: &[crate::cache::DirItem]| -> Vec<Vec<u8>> {
        items.iter().map(|i| i.name.clone()).collect()
    };
    assert!(names(&b.mgr.readdir(&ME, ROOT).await.unwrap()).contains(&b"one".to_vec()));
    put(&a, "two", b"2").await;
    b.until("b's listing of / is broken", |b| !b.mgr.holds_promise(ROOT))
        .await;
    assert!(names(&b.mgr.readdir(&ME, ROOT).await.unwrap()).contains(&b"two".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chmod_elsewhere_reaches_getattr() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    assert_eq!(b.mgr.getattr(&ME, f.ino).await.unwrap().mode & 0o777, 0o644);
    a.mgr
        .setattr(&ME, f.ino, Some(0o600), None, None, None, None, None)
        .await
        .unwrap();
    b.until("b's attributes of f are broken", |b| {
        !b.mgr.holds_promise(f.ino)
    })
    .await;
    assert_eq!(b.mgr.getattr(&ME, f.ino).await.unwrap().mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xattr_set_elsewhere_is_read_after_its_break() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    assert!(b.mgr.getxattr(&ME, f.ino, b"user.k").await.is_err());
    a.mgr
        .setxattr(
            &ME,
            f.ino,
            b"user.k",
            b"v",
            dfs_common::proto::XattrSet::Either,
        )
        .await
        .unwrap();
    b.until("b's xattrs of f are broken", |b| {
        b.mgr.try_xattrs_cached(f.ino).is_none()
    })
    .await;
    assert_eq!(b.mgr.getxattr(&ME, f.ino, b"user.k").await.unwrap(), b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_link_elsewhere_shows_in_the_link_count() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"x").await;
    assert_eq!(b.mgr.getattr(&ME, f.ino).await.unwrap().nlink, 1);
    a.mgr.link(&ME, f.ino, ROOT, b"g").await.unwrap();
    b.until("b's attributes of f are broken", |b| {
        !b.mgr.holds_promise(f.ino)
    })
    .await;
    assert_eq!(b.mgr.getattr(&ME, f.ino).await.unwrap().nlink, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_break_leaves_a_stale_copy_until_the_restart_revalidates_it() {
    let (cell, a, b) = two().await;
    let f = put(&a, "f", b"one").await;
    assert_eq!(get(&b, f.ino).await, b"one");
    b.port.drop_breaks(1);
    rewrite(&a, f.ino, b"two").await;
    // The break never came: b still trusts its copy (what a lost break costs).
    assert!(b.mgr.holds_promise(f.ino));
    assert_eq!(get(&b, f.ino).await, b"one");
    let epoch = cell.epoch();
    cell.restart();
    assert_ne!(cell.epoch(), epoch);
    // The new channel's Hello names a new epoch: b revalidates its copies by version.
    b.until("b no longer trusts its old copy", |b| {
        b.mgr.status("").cached_files == 0 || !b.mgr.holds_promise(f.ino)
    })
    .await;
    b.until("b's channel is back", |b| b.channel_up()).await;
    assert_eq!(get(&b, f.ino).await, b"two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_an_unchanged_copy_is_trusted_again_without_a_fetch() {
    let (cell, a, b) = two().await;
    let f = put(&a, "f", b"kept").await;
    assert_eq!(get(&b, f.ino).await, b"kept");
    let fetches = calls(&b)[FETCHES];
    cell.restart();
    b.until("b's promise is void", |b| !b.mgr.holds_promise(f.ino))
        .await;
    b.until("b revalidated f", |b| b.mgr.holds_promise(f.ino))
        .await;
    assert_eq!(get(&b, f.ino).await, b"kept");
    assert_eq!(
        calls(&b)[FETCHES],
        fetches,
        "an unchanged copy was fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_removed_while_the_channel_was_down_is_dropped_at_revalidation() {
    let (cell, a, b) = two().await;
    let f = put(&a, "f", b"gone soon").await;
    assert_eq!(get(&b, f.ino).await, b"gone soon");
    b.port.drop_breaks(2);
    a.mgr.unlink(&ME, ROOT, b"f").await.unwrap();
    cell.restart();
    b.until("b drops its copy of the removed file", |b| {
        b.mgr.status("").cached_files == 0
    })
    .await;
    assert!(not_found(&b.mgr.getattr(&ME, f.ino).await.unwrap_err()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_made_elsewhere_reads_its_target() {
    let (_cell, a, b) = two().await;
    let link = a
        .mgr
        .symlink(&ME, ROOT, b"l", b"/some/where", 0, 0)
        .await
        .unwrap();
    let seen = b.mgr.lookup(&ME, ROOT, b"l").await.unwrap();
    assert_eq!(seen.ino, link.ino);
    assert_eq!(b.mgr.readlink(&ME, seen.ino).await.unwrap(), b"/some/where");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_open_of_a_changed_file_asks_with_its_version() {
    let (_cell, a, b) = two().await;
    let f = put(&a, "f", b"v1").await;
    assert_eq!(get(&b, f.ino).await, b"v1");
    // A change of attributes only: the contents' version is the same, so the fetch is
    // answered "not modified" and nothing is transferred.
    a.mgr
        .setattr(&ME, f.ino, Some(0o640), None, None, None, None, None)
        .await
        .unwrap();
    b.until("b's promise on f is broken", |b| {
        !b.mgr.holds_promise(f.ino)
    })
    .await;
    let fetches = calls(&b)[FETCHES];
    assert_eq!(get(&b, f.ino).await, b"v1");
    assert!(calls(&b)[FETCHES] <= fetches + 1);
    assert!(b.mgr.holds_promise(f.ino));
}
