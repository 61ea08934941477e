//! The log under redb: commits survive a crash through the log alone, a torn last record
//! is ignored, checkpoints keep everything, a second open is refused, and the log grows
//! ahead of its records without making a nearly full disk refuse commits that fit.

use super::*;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

fn db_at(path: &Path) -> Database {
    redb::Builder::new()
        .create_with_backend(WalFile::open(path).unwrap())
        .unwrap()
}

fn put(db: &Database, key: u64, value: &[u8], durable: bool) {
    let mut tx = db.begin_write().unwrap();
    if !durable {
        tx.set_durability(Durability::None).unwrap();
    }
    tx.open_table(T).unwrap().insert(key, value).unwrap();
    tx.commit().unwrap();
}

fn get(db: &Database, key: u64) -> Option<Vec<u8>> {
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(T).unwrap();
    t.get(key).unwrap().map(|v| v.value().to_vec())
}

/// What a `kill -9` leaves: the files as they are now (the page cache survives).
fn crash_copy(from: &Path, to: &Path, with_log: bool) {
    std::fs::copy(from, to).unwrap();
    if with_log {
        std::fs::copy(log_path_of(from), log_path_of(to)).unwrap();
    }
}

/// Where the records of a log end: the log grows ahead in zeros, and a record ends with
/// its checksum, which is not zero.
fn records_end(log: &[u8]) -> u64 {
    log.iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i as u64 + 1)
}

/// What a `kill -9` of the process holding `db` (whose file is `path`) leaves, opened
/// again: its files copied to `dir/crashed.redb` before `db` is dropped.
fn reopened_after_crash(dir: &Path, path: &Path, db: Database) -> Database {
    let crashed = dir.join("crashed.redb");
    crash_copy(path, &crashed, true);
    drop(db);
    db_at(&crashed)
}

/// Asserts that keys `0..n` of `db` hold `want(key)`.
fn assert_holds(db: &Database, n: u64, want: impl Fn(u64) -> Vec<u8>, when: &str) {
    for i in 0..n {
        assert_eq!(get(db, i), Some(want(i)), "key {i} {when}");
    }
}

fn value(i: u64) -> Vec<u8> {
    (0..3000u64).map(|j| (i * 31 + j) as u8).collect()
}

/// A database in `dir` with `n` durable commits (key i holds `value(i)`), and its path.
fn with_durable_commits(dir: &Path, n: u64) -> (Database, PathBuf) {
    let path = dir.join("db.redb");
    let db = db_at(&path);
    for i in 0..n {
        put(&db, i, &value(i), true);
    }
    (db, path)
}

#[test]
fn durable_commits_survive_a_crash_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (db, path) = with_durable_commits(dir.path(), 50);
    put(&db, 1000, b"not durable", false);
    let crashed = dir.path().join("crashed.redb");
    crash_copy(&path, &crashed, true);
    let without_log = dir.path().join("nolog.redb");
    crash_copy(&path, &without_log, false);
    drop(db);

    let db = db_at(&crashed);
    assert_holds(&db, 50, value, "after the crash");
    drop(db);
    // The commits were in the log only: the database file alone is not even a database
    // yet (or lacks them), so the replay is what kept them.
    let alone = redb::Builder::new().create_with_backend(WalFile::open(&without_log).unwrap());
    if let Ok(db) = alone {
        let tx = db.begin_read().unwrap();
        assert!(
            tx.open_table(T).is_err() || get(&db, 49).is_none(),
            "the database file alone already had the logged commits: the test proves nothing"
        );
    }
}

#[test]
fn a_torn_last_record_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (db, path) = with_durable_commits(dir.path(), 10);
    let crashed = dir.path().join("crashed.redb");
    crash_copy(&path, &crashed, true);
    drop(db);
    // Cut the last record short, as a crash in the middle of its write would: the log
    // grows ahead in zeros, so its last 100 bytes read as zeros again.
    let log = log_path_of(&crashed);
    let mut bytes = std::fs::read(&log).unwrap();
    let end = records_end(&bytes) as usize;
    bytes[end - 100..end].fill(0);
    std::fs::write(&log, &bytes).unwrap();
    let db = db_at(&crashed);
    assert_holds(&db, 9, value, "before the torn record");
    assert_eq!(
        get(&db, 9),
        None,
        "the torn record's commit must not appear"
    );
    // The database goes on working after the replay.
    put(&db, 9, b"again", true);
    drop(db);
    let db = db_at(&crashed);
    assert_eq!(get(&db, 9), Some(b"again".to_vec()));
}

#[test]
fn the_log_grows_ahead_so_a_commit_does_not_change_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let (db, path) = with_durable_commits(dir.path(), 1);
    let log = log_path_of(&path);
    let grown = std::fs::metadata(&log).unwrap().len();
    assert!(
        grown >= LOG_GROW,
        "the log is {grown} bytes after one commit"
    );
    for i in 1..20 {
        put(&db, i, &value(i), true);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), grown, "commit {i}");
    }
    let db = reopened_after_crash(dir.path(), &path, db);
    assert_holds(&db, 20, value, "after the crash");
}

#[test]
fn checkpoints_keep_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let db = db_at(&path);
    // 64 KiB values: the log passes its cap several times.
    let big = |i: u64| vec![i as u8; 64 << 10];
    for i in 0..600 {
        put(&db, i, &big(i), true);
    }
    let db = reopened_after_crash(dir.path(), &path, db);
    assert_holds(&db, 600, big, "after checkpoints and a crash");
}

#[test]
fn a_second_open_of_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let _db = db_at(&path);
    let err = WalFile::open(&path).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn a_clean_close_keeps_commits_that_were_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let db = db_at(&path);
    put(&db, 1, b"durable", true);
    put(&db, 2, b"not durable", false);
    drop(db);
    let db = db_at(&path);
    assert_eq!(get(&db, 1), Some(b"durable".to_vec()));
    assert_eq!(
        get(&db, 2),
        Some(b"not durable".to_vec()),
        "redb syncs at a clean close; the log must carry that sync"
    );
}

/// Rewrites the log beside `db` in the first format (whole pages), as a server before
/// trimmed records wrote it; returns how many records it rewrote.
fn rewrite_log_with_whole_pages(db: &Path) -> u64 {
    let path = log_path_of(db);
    let bytes = std::fs::read(&path).unwrap();
    let mut out = bytes[..PAGE as usize].to_vec();
    let (mut at, mut records) = (PAGE as usize, 0);
    while at + RECORD_HEAD <= bytes.len() && u64_at(&bytes, at) == RECORD_MAGIC_TRIMMED {
        let n = u64_at(&bytes, at + 32) as usize;
        let table: Vec<(u64, usize)> = (0..n)
            .map(|i| {
                let e = at + RECORD_HEAD + 16 * i;
                (u64_at(&bytes, e), u64_at(&bytes, e + 8) as usize)
            })
            .collect();
        let mut record = bytes[at..at + RECORD_HEAD].to_vec();
        record[..8].copy_from_slice(&RECORD_MAGIC_WHOLE.to_le_bytes());
        for (page_no, _) in &table {
            record.extend_from_slice(&page_no.to_le_bytes());
        }
        let mut kept_at = at + RECORD_HEAD + 16 * n;
        for (_, kept) in &table {
            let mut page = vec![0u8; PAGE as usize];
            page[..*kept].copy_from_slice(&bytes[kept_at..kept_at + kept]);
            record.extend_from_slice(&page);
            kept_at += kept;
        }
        let sum = ring::digest::digest(&ring::digest::SHA256, &record);
        record.extend_from_slice(sum.as_ref());
        out.extend_from_slice(&record);
        at = kept_at + CHECKSUM;
        records += 1;
    }
    std::fs::write(&path, out).unwrap();
    records
}

#[test]
fn records_are_trimmed_and_a_log_of_whole_pages_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let (db, path) = with_durable_commits(dir.path(), 20);
    let crashed = dir.path().join("crashed.redb");
    crash_copy(&path, &crashed, true);
    let old_format = dir.path().join("old.redb");
    crash_copy(&path, &old_format, true);
    drop(db);

    // A commit's pages end in free space (the values here fill about 3/4 of a page):
    // the log holds less than whole pages. (How much less depends on where redb puts the
    // values; on some machines it is 15 %, on others over half.)
    let log_len = |db: &Path| records_end(&std::fs::read(log_path_of(db)).unwrap()) - PAGE;
    let trimmed = log_len(&crashed);
    let records = rewrite_log_with_whole_pages(&old_format);
    assert!(records >= 20, "only {records} records in the log");
    let whole = log_len(&old_format);
    assert!(
        trimmed < whole,
        "trimmed records take {trimmed} bytes, whole pages {whole}"
    );

    for p in [&crashed, &old_format] {
        assert_holds(&db_at(p), 20, value, &format!("of {}", p.display()));
    }
}

#[test]
fn trailing_zeros_are_all_that_is_trimmed() {
    assert_eq!(without_trailing_zeros(&[0, 0, 0]), &[] as &[u8]);
    assert_eq!(without_trailing_zeros(&[1, 0, 2, 0, 0]), &[1, 0, 2]);
    assert_eq!(without_trailing_zeros(&[0, 0, 7]), &[0, 0, 7]);
    // Pages of 4 KiB and odd lengths, with the last non-zero byte at every place around
    // the 64-byte blocks the scan skips by.
    for len in [4096usize, 4095, 130, 64, 63] {
        for last in (0..len).filter(|i| i % 64 < 2 || i % 64 > 61 || *i + 3 > len) {
            let mut page = vec![0u8; len];
            page[last] = 9;
            if last > 0 {
                page[last / 2] = 1;
            }
            assert_eq!(
                without_trailing_zeros(&page).len(),
                last + 1,
                "len {len}, last {last}"
            );
        }
        assert!(without_trailing_zeros(&vec![0u8; len]).is_empty());
    }
}

/// A tmpfs of `bytes` on a temp dir, unmounted when dropped (the tests run as root, as
/// the FUSE tests do).
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(bytes: u64) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "dfs-wal-test",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount a tmpfs at {}",
            dir.path().display()
        );
        SmallFs { dir }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_disk_too_full_for_the_log_to_grow_still_takes_the_commits_that_fit() {
    let fs = SmallFs::mount(8 << 20);
    let path = fs.dir.path().join("db.redb");
    let db = db_at(&path);
    put(&db, 0, &value(0), true);
    let log = log_path_of(&path);
    let grown = std::fs::metadata(&log).unwrap().len();
    // Fill the file system, then free 256 KiB: room for records, not for 1 MiB of zeros.
    let filler = fs.dir.path().join("filler");
    let mut f = File::create(&filler).unwrap();
    let chunk = vec![7u8; 64 << 10];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    let full = f.metadata().unwrap().len();
    f.set_len(full - (256 << 10)).unwrap();
    drop(f);
    // Past the grown part of the log: its growth fails, and the records are appended.
    let mut i = 1;
    while std::fs::metadata(&log).unwrap().len() <= grown + (32 << 10) {
        put(&db, i, &value(i), true);
        i += 1;
        assert!(i < 10_000, "the log never passed its grown length");
    }
    drop(db);
    // Opening replays the log into the database file, which needs the space back.
    std::fs::remove_file(&filler).unwrap();
    let db = db_at(&path);
    assert_holds(&db, i, value, "after the disk was full");
}
