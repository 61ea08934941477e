//! The transitions of `FileState`, legal and illegal: pure, no I/O beyond a temp file.

use super::*;

fn stamp(size: u64) -> Option<FileStamp> {
    Some((size, SystemTime::UNIX_EPOCH))
}

fn attr(ino: u64, mode: u32) -> Attr {
    let t = dfs_common::Timestamp { secs: 0, nanos: 0 };
    Attr {
        ino,
        kind: dfs_common::FileKind::File,
        mode,
        uid: 0,
        gid: 0,
        nlink: 1,
        size: 0,
        atime: t,
        mtime: t,
        ctime: t,
        version: 1,
        blob: None,
        rdev: 0,
    }
}

fn at(version: u64) -> FileState {
    let mut s = FileState::new(None, None);
    s.current_at(version);
    s
}

#[test]
fn a_write_makes_a_clean_copy_dirty_once() {
    let mut s = at(3);
    assert_eq!(s.changed(), Some(3), "the index learns it once");
    assert!(s.is_dirty() && s.in_use() && !s.idle());
    assert_eq!(s.changed(), None, "already marked");
    assert_eq!(s.store_plan().map(|p| p.version), Some(3));
}

#[test]
fn a_clean_copy_has_nothing_to_store() {
    let s = at(3);
    assert_eq!(s.store_plan(), None);
    assert!(s.idle());
}

#[test]
fn a_store_adopts_the_new_version_and_cleans_the_copy() {
    let mut s = at(3);
    s.changed();
    let held = s.stored(StoredCopy {
        version: 4,
        after: stamp(10),
        moved_on: false,
        still_written: false,
    });
    assert_eq!(held, None);
    assert_eq!(s.copy(), &CopyState::Clean);
    assert_eq!(s.version(), 4);
}

#[test]
fn a_copy_that_moved_on_during_its_store_stays_dirty_without_a_stamp() {
    let mut s = at(3);
    s.marked_for_passthrough(stamp(1));
    s.stored(StoredCopy {
        version: 4,
        after: stamp(2),
        moved_on: true,
        still_written: false,
    });
    assert!(s.is_dirty());
    assert_eq!(s.stamp(), None, "it differs from what the server has");
}

#[test]
fn a_copy_still_held_by_a_passthrough_writer_stays_dirty_with_its_stamp() {
    let mut s = at(3);
    s.marked_for_passthrough(stamp(1));
    s.stored(StoredCopy {
        version: 4,
        after: stamp(2),
        moved_on: false,
        still_written: true,
    });
    assert!(s.is_dirty());
    assert_eq!(s.stamp(), stamp(2));
}

#[test]
fn a_write_forgets_the_passthrough_stamp() {
    let mut s = at(1);
    assert_eq!(s.marked_for_passthrough(stamp(5)), Some(1));
    assert_eq!(s.stamp(), stamp(5));
    assert_eq!(s.marked_for_passthrough(stamp(6)), None, "marked already");
    assert_eq!(s.stamp(), stamp(5));
    s.changed();
    assert_eq!(s.stamp(), None);
}

#[test]
fn the_last_passthrough_writer_of_an_unchanged_copy_leaves_it_clean() {
    let mut s = at(7);
    s.opened(true, false);
    s.marked_for_passthrough(stamp(5));
    let closed = s.closed(true, false, || stamp(5));
    assert_eq!(closed.clean_again, Some((7, 5)));
    assert!(closed.last_close);
    assert_eq!(s.copy(), &CopyState::Clean);
}

#[test]
fn a_changed_passthrough_copy_stays_dirty_at_its_last_close() {
    let mut s = at(7);
    s.opened(true, false);
    s.marked_for_passthrough(stamp(5));
    let closed = s.closed(true, false, || stamp(6));
    assert_eq!(closed.clean_again, None);
    assert!(s.is_dirty() && !s.idle());
}

#[test]
fn a_copy_written_through_us_is_not_compared_at_close() {
    let mut s = at(7);
    s.opened(true, false);
    s.changed();
    let closed = s.closed(true, false, || panic!("no stamp to compare with"));
    assert_eq!(closed.clean_again, None);
    assert!(s.awaits_retry());
}

#[test]
fn an_unsynced_create_holds_a_chmod_for_its_store() {
    let mut s = at(1);
    assert_eq!(s.created_unsynced(), Some(1));
    assert!(s.unsynced_create());
    assert!(s.hold_mode(0o600));
    let plan = s.store_plan().unwrap();
    assert!(plan.unsynced_create);
    assert_eq!(plan.mode, Some(0o600));
    let held = s.stored(StoredCopy {
        version: 2,
        after: stamp(0),
        moved_on: false,
        still_written: false,
    });
    assert_eq!(held, Some(0o600));
    assert!(!s.unsynced_create());
    assert!(!s.hold_mode(0o644), "a stored file sends its chmods itself");
}

#[test]
fn a_create_that_is_already_dirty_becomes_unsynced_without_a_new_mark() {
    let mut s = at(1);
    s.marked_for_passthrough(stamp(0));
    assert_eq!(s.created_unsynced(), None);
    assert!(s.unsynced_create());
    assert_eq!(s.stamp(), None);
}

#[test]
fn a_clean_file_holds_no_chmod() {
    let mut s = at(1);
    assert!(!s.hold_mode(0o600));
    s.changed();
    assert!(!s.hold_mode(0o600), "dirty, but not our unsynced create");
}

#[test]
fn unlinking_our_create_makes_its_loss_no_crash() {
    let mut s = at(1);
    s.created_unsynced();
    s.unlinked_by_us();
    assert!(!s.unsynced_create());
    assert!(s.is_dirty(), "the changes are still unstored");
}

#[test]
fn only_an_open_file_becomes_an_orphan() {
    let mut s = at(1);
    s.changed();
    assert!(!s.orphaned(|| None), "nobody has it open");
    assert!(s.is_dirty());
    s.opened(false, false);
    let attr = attr(9, 0o644);
    assert!(s.orphaned(|| Some(attr.clone())));
    assert!(s.is_orphaned() && !s.is_dirty());
    assert_eq!(s.last_attr().map(|a| a.ino), Some(9));
    assert_eq!(s.store_plan(), None, "nothing is stored");
}

#[test]
fn an_orphan_stays_one() {
    let mut s = at(1);
    s.opened(true, false);
    s.orphaned(|| None);
    assert_eq!(s.changed(), None);
    assert_eq!(s.marked_for_passthrough(stamp(1)), None);
    assert_eq!(s.created_unsynced(), None);
    s.stored(StoredCopy {
        version: 2,
        after: None,
        moved_on: true,
        still_written: true,
    });
    assert!(s.is_orphaned());
    let closed = s.closed(true, false, || None);
    assert!(
        !closed.last_close,
        "the last close of an orphan checks nothing"
    );
    assert!(s.idle());
}

#[test]
fn dropped_changes_leave_a_clean_copy_and_a_clean_one_unchanged() {
    let mut s = at(1);
    s.changes_dropped();
    assert_eq!(s.copy(), &CopyState::Clean);
    s.created_unsynced();
    s.changes_dropped();
    assert_eq!(s.copy(), &CopyState::Clean);
    s.store_not_needed();
    assert_eq!(s.copy(), &CopyState::Clean);
}

#[test]
fn an_o_trunc_open_without_a_copy_is_a_dirty_empty_copy_of_new_contents() {
    let mut s = at(0);
    let before = s.kernel_pages().contents;
    assert_eq!(s.truncated_fresh(5), Some(5));
    assert!(s.is_dirty());
    assert_eq!(s.kernel_pages().contents, before + 1);
}

#[test]
fn the_kernel_keeps_its_pages_until_the_contents_change() {
    let mut s = at(1);
    assert_eq!(
        s.opened(false, false),
        (false, false),
        "first open: no pages"
    );
    assert_eq!(s.opened(false, false), (true, false));
    s.fetched(2);
    assert_eq!(s.opened(false, false), (false, false));
}

#[test]
fn a_write_behind_open_is_plain_and_so_are_opens_while_it_lasts() {
    let mut s = at(1);
    assert_eq!(s.opened(true, true), (false, true));
    assert!(s.behind_mut().is_some());
    assert!(s.opened(false, false).1, "plain while a plain one is open");
    let closed = s.closed(true, true, || None);
    assert!(!closed.plain_gone, "the reader is still plain");
    assert!(
        s.behind_mut().is_none(),
        "the last writer's release abandons it"
    );
    let closed = s.closed(false, true, || None);
    assert!(closed.plain_gone && closed.last_close);
    assert_eq!(s.opens(), Opens::default());
}

#[test]
fn a_filling_open_is_plain() {
    let mut s = at(0);
    s.opened_filling();
    assert_eq!(s.opens().plain, 1);
    assert!(s.has_local_changes(), "later opens share its copy");
}

#[test]
fn the_shared_descriptor_goes_with_the_last_handle_and_follows_a_store() {
    let mut s = at(1);
    let file = Arc::new(tempfile::tempfile().unwrap());
    s.share(file);
    s.opened(true, false);
    s.changed();
    assert!(s.current_file().is_some());
    s.stored(StoredCopy {
        version: 2,
        after: None,
        moved_on: false,
        still_written: false,
    });
    assert!(s.current_file().is_some(), "renamed along with its copy");
    assert_eq!(s.shared_version(), 2);
    s.fetched(3);
    assert!(s.current_file().is_none(), "it holds an older version now");
    s.closed(true, false, || None);
    assert!(s.shared_file().is_none());
}

#[test]
fn the_writers_lock_goes_back_only_when_nothing_needs_it() {
    let mut s = at(1);
    s.lock_granted(7);
    s.lock_granted(8);
    assert_eq!(s.fence(), Some(7), "a grant held stays");
    s.opened(true, false);
    assert_eq!(s.lock_given_back(), None, "a writer is open");
    s.changed();
    s.closed(true, false, || None);
    assert_eq!(s.lock_given_back(), None, "unstored changes");
    s.changes_dropped();
    assert_eq!(s.lock_given_back(), Some(7));
    assert_eq!(s.fence(), None);
}

#[test]
fn a_lost_grant_is_forgotten_only_if_it_is_the_one_held() {
    let mut s = at(1);
    s.lock_granted(7);
    assert!(!s.lock_lost(6));
    assert_eq!(s.fence(), Some(7));
    assert!(s.lock_lost(7));
    assert_eq!(s.fence(), None);
    s.lock_granted(9);
    s.lock_lapsed();
    assert_eq!(s.fence(), None);
}

#[test]
fn only_unprivileged_writers_of_set_id_files_kill_suid() {
    let mut s = FileState::new(Some(attr(1, 0o4755)), None);
    assert!(!s.kills_suid(), "no writer yet");
    s.writer_is(Who::user(0));
    assert!(!s.kills_suid(), "root keeps the bits");
    s.writer_is(Who::user(1000));
    assert!(s.kills_suid());
    s.saw_attr(&attr(1, 0o755));
    assert!(!s.kills_suid());
}
