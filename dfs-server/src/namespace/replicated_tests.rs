//! Tests of the namespace as a replicated log's state machine (`replicated`): a command
//! and its record in one transaction, a retry not applied twice, a failed command recorded
//! without a change, and whole copies of the database.

use super::testkit::ts;
use super::*;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// A record table of the test's own: request number -> how many times recorded, and
/// whether the outcome was an error.
const RECORDS: TableDefinition<u64, (u64, bool)> = TableDefinition::new("test_records");

struct Rec(u64);

impl ApplyRecord for Rec {
    fn earlier(
        &self,
        txn: &WriteTransaction,
    ) -> Result<Option<Result<NsOutcome, FsError>>, FsError> {
        let t = txn.open_table(RECORDS).map_err(store::db_err)?;
        let seen = t.get(self.0).map_err(store::db_err)?.map(|g| g.value());
        Ok(seen.map(|(_, failed)| {
            if failed {
                Err(FsError::Exists)
            } else {
                Ok(NsOutcome::default())
            }
        }))
    }

    fn record(
        &self,
        txn: &WriteTransaction,
        outcome: &Result<NsOutcome, FsError>,
        _repeated: bool,
    ) -> Result<(), FsError> {
        let mut t = txn.open_table(RECORDS).map_err(store::db_err)?;
        let times = t
            .get(self.0)
            .map_err(store::db_err)?
            .map_or(0, |g| g.value().0);
        t.insert(self.0, (times + 1, outcome.is_err()))
            .map_err(store::db_err)?;
        Ok(())
    }
}

fn mkdir(name: &str) -> NsCommand {
    NsCommand::Mkdir {
        parent: ROOT_INO,
        name: name.into(),
        mode: 0o755,
        umask: 0,
        uid: 1,
        gid: 2,
        now: ts(5),
    }
}

fn records(ns: &Namespace, id: u64) -> Option<(u64, bool)> {
    ns.read_beside(|tx| {
        let t = tx.open_table(RECORDS).map_err(store::db_err)?;
        Ok(t.get(id).map_err(store::db_err)?.map(|g| g.value()))
    })
    .unwrap()
}

/// Applies a recorded mkdir that must succeed.
fn recorded(ns: &Namespace, name: &str, id: u64) -> NsOutcome {
    ns.apply_recorded(mkdir(name), &Rec(id))
        .unwrap()
        .outcome
        .unwrap()
}

fn replica(dir: &tempfile::TempDir, name: &str) -> Namespace {
    Namespace::open_replicated(&dir.path().join(name), 0o755).unwrap()
}

#[test]
fn a_command_and_its_record_commit_together_and_a_retry_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let ns = replica(&dir, "a.redb");
    let first = ns.apply_recorded(mkdir("d"), &Rec(7)).unwrap();
    assert!(!first.repeated);
    let ino = first.outcome.unwrap().attr.unwrap().ino;
    assert_eq!(records(&ns, 7), Some((1, false)));
    // The same request again: not applied (a second mkdir would fail with Exists).
    let again = ns.apply_recorded(mkdir("d"), &Rec(7)).unwrap();
    assert!(again.repeated);
    assert_eq!(again.outcome, Ok(NsOutcome::default()));
    assert_eq!(records(&ns, 7), Some((2, false)));
    assert_eq!(ns.lookup(ROOT_INO, b"d").unwrap().ino, ino);
}

#[test]
fn a_failed_command_is_recorded_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ns = replica(&dir, "a.redb");
    recorded(&ns, "d", 1);
    let count = ns.inode_count().unwrap();
    let failed = ns.apply_recorded(mkdir("d"), &Rec(2)).unwrap();
    assert_eq!(failed.outcome, Err(FsError::Exists));
    assert_eq!(records(&ns, 2), Some((1, true)));
    assert_eq!(ns.inode_count().unwrap(), count);
}

#[test]
fn replicas_hand_out_the_same_numbers_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&dir, "a.redb");
    a.apply(mkdir("x")).unwrap();
    a.sync_all().unwrap();
    drop(a);
    // Reopened: no gap in the inode counter, unlike `Namespace::open`.
    let a = replica(&dir, "a.redb");
    let b = replica(&dir, "b.redb");
    b.apply(mkdir("x")).unwrap();
    let on_a = a.apply(mkdir("y")).unwrap().attr.unwrap();
    let on_b = b.apply(mkdir("y")).unwrap().attr.unwrap();
    assert_eq!(on_a, on_b);
}

#[test]
fn a_copy_carries_every_table_and_replaces_the_target_whole() {
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&dir, "a.redb");
    recorded(&a, "kept", 1);
    let copy = redb::Database::create(dir.path().join("copy.redb")).unwrap();
    a.export(&[&RECORDS], &copy).unwrap();

    let b = replica(&dir, "b.redb");
    recorded(&b, "dropped", 9);
    b.import(&[&RECORDS], &copy).unwrap();
    assert_eq!(b.lookup(ROOT_INO, b"kept"), a.lookup(ROOT_INO, b"kept"));
    assert_eq!(b.lookup(ROOT_INO, b"dropped"), Err(FsError::NotFound));
    assert_eq!(records(&b, 1), Some((1, false)));
    assert_eq!(records(&b, 9), None);
    // Both go on alike from the copy.
    let next_a = a.apply(mkdir("n")).unwrap().attr.unwrap();
    let next_b = b.apply(mkdir("n")).unwrap().attr.unwrap();
    assert_eq!(next_a, next_b);
}

#[test]
fn a_copy_refuses_a_table_nobody_named() {
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&dir, "a.redb");
    recorded(&a, "d", 1);
    let copy = redb::Database::create(dir.path().join("copy.redb")).unwrap();
    assert!(matches!(a.export(&[], &copy), Err(FsError::Io(_))));
}
