//! Unit tests of the callback registry and channel.

use super::*;
use dfs_common::codec::take_frame;
use std::io;
use tokio::sync::mpsc;

async fn next_frame(
    rx: &mut mpsc::Receiver<io::Result<Bytes>>,
    buf: &mut Vec<u8>,
) -> CallbackFrame {
    loop {
        if let Some(f) = take_frame::<CallbackFrame>(buf).unwrap() {
            return f;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a frame in time")
            .expect("channel open")
            .unwrap();
        buf.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn breaks_are_queued_while_disconnected_and_delivered_on_connect() {
    let reg = Arc::new(Registry::new(42));
    reg.promise(7, &[5, 6]);
    reg.promise(8, &[5]);
    reg.break_ino(5, 8);
    assert!(!reg.holds(7, 5));
    assert!(reg.holds(8, 5), "the caller keeps its promise");
    assert!(reg.holds(7, 6));
    let mut rx = channel::open(reg.clone(), 7);
    let mut buf = Vec::new();
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Hello {
            epoch: 42,
            client: 7
        }
    );
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Break { ino: 5 }
    );
    // Live frames after the queue.
    reg.break_entry(6, b"x", 0);
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::EntryBreak {
            dir: 6,
            name: b"x".to_vec()
        }
    );
    // The promise is gone: no second break.
    reg.break_ino(6, 0);
    reg.promise(7, &[9]);
    reg.break_ino(9, 0);
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Break { ino: 9 }
    );
}

#[tokio::test]
async fn entry_change_sends_entry_break_then_break_of_the_dir() {
    let reg = Arc::new(Registry::new(1));
    reg.promise(3, &[1]);
    reg.break_changes(&[1, 50], &[(1, b"a".to_vec()), (1, b"b".to_vec())], 0);
    let mut rx = channel::open(reg.clone(), 3);
    let mut buf = Vec::new();
    assert!(matches!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Hello { .. }
    ));
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::EntryBreak {
            dir: 1,
            name: b"a".to_vec()
        }
    );
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::EntryBreak {
            dir: 1,
            name: b"b".to_vec()
        }
    );
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Break { ino: 1 }
    );
    assert_eq!(reg.counts().1, 0);
    assert_eq!(
        reg.counts().2,
        1,
        "the watch on the directory's names stays"
    );
}

/// An editor's save on another mount: a create in the directory breaks this client's
/// promise on the directory's attributes, then a rename over a name it had looked up must
/// still reach it (it was lost, and the old name stayed cached for seconds).
#[tokio::test]
async fn a_watch_on_a_directorys_names_outlives_the_break_of_its_attributes() {
    let reg = Arc::new(Registry::new(1));
    // Client 3 looked up `f` (inode 20) in directory 1.
    reg.promise(3, &[1, 20]);
    // Client 4 creates `.f.tmp` (inode 21), then renames it over `f`.
    reg.break_changes(&[1], &[(1, b".f.tmp".to_vec())], 4);
    reg.break_changes(
        &[1, 21, 20],
        &[(1, b".f.tmp".to_vec()), (1, b"f".to_vec())],
        4,
    );
    let mut rx = channel::open(reg.clone(), 3);
    let mut buf = Vec::new();
    assert!(matches!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Hello { .. }
    ));
    let entry = |name: &[u8]| CallbackFrame::EntryBreak {
        dir: 1,
        name: name.to_vec(),
    };
    let expected = [
        entry(b".f.tmp"),
        CallbackFrame::Break { ino: 1 },
        entry(b".f.tmp"),
        entry(b"f"),
        CallbackFrame::Break { ino: 20 },
    ];
    for want in expected {
        assert_eq!(next_frame(&mut rx, &mut buf).await, want);
    }
    assert!(!reg.holds(3, 1) && !reg.holds(3, 20));
}

#[tokio::test]
async fn overflow_drops_the_queue_and_sends_revalidate_all() {
    let reg = Arc::new(Registry::new(9));
    let inos: Vec<u64> = (1..=(QUEUE_MAX as u64 + 5)).collect();
    reg.promise(4, &inos);
    for &ino in &inos {
        reg.break_ino(ino, 0);
    }
    let mut rx = channel::open(reg.clone(), 4);
    let mut buf = Vec::new();
    assert!(matches!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Hello { .. }
    ));
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::RevalidateAll
    );
    reg.promise(4, &[77]);
    reg.break_ino(77, 0);
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Break { ino: 77 }
    );
}

#[tokio::test]
async fn a_second_connection_replaces_the_first() {
    let reg = Arc::new(Registry::new(5));
    let mut first = channel::open(reg.clone(), 11);
    let mut buf1 = Vec::new();
    assert!(matches!(
        next_frame(&mut first, &mut buf1).await,
        CallbackFrame::Hello { .. }
    ));
    let mut second = channel::open(reg.clone(), 11);
    let mut buf2 = Vec::new();
    assert!(matches!(
        next_frame(&mut second, &mut buf2).await,
        CallbackFrame::Hello { .. }
    ));
    // The first channel ends.
    let end = tokio::time::timeout(Duration::from_secs(5), first.recv())
        .await
        .unwrap();
    assert!(end.is_none());
    reg.promise(11, &[3]);
    reg.break_ino(3, 0);
    assert_eq!(
        next_frame(&mut second, &mut buf2).await,
        CallbackFrame::Break { ino: 3 }
    );
}

#[tokio::test]
async fn closed_connection_keeps_frames_queued_and_stale_clients_are_forgotten() {
    let reg = Arc::new(Registry::new(5));
    let rx = channel::open(reg.clone(), 12);
    drop(rx);
    reg.promise(12, &[3]);
    reg.break_ino(3, 0);
    // Give the pump time to notice the closed channel.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut rx = channel::open(reg.clone(), 12);
    let mut buf = Vec::new();
    assert!(matches!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Hello { .. }
    ));
    assert_eq!(
        next_frame(&mut rx, &mut buf).await,
        CallbackFrame::Break { ino: 3 }
    );
    drop(rx);
    reg.promise(13, &[1, 2]);
    assert_eq!(reg.sweep(Instant::now()), 0);
    let later = Instant::now() + FORGET_AFTER + Duration::from_secs(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(reg.sweep(later), 2);
    assert_eq!(reg.counts(), (0, 0, 0));
}

#[test]
fn anonymous_callers_get_no_promises() {
    let reg = Registry::new(1);
    reg.promise(0, &[1]);
    assert_eq!(reg.counts(), (0, 0, 0));
}
