//! Unit tests of the names index (kept by every command that changes an entry, built for
//! a namespace that predates it) and of `Namespace::reachable`.

use super::store::{META, META_NAMES_INDEXED, NAMES};
use super::testkit::*;
use super::*;
use dfs_common::acl::Acl;
use dfs_common::proto::RENAME_EXCHANGE;

fn index_matches_entries(t: &T) {
    assert_eq!(t.ns.names_index(), t.ns.entries_by_ino());
}

#[test]
fn the_names_index_follows_every_change_of_an_entry() {
    let t = fresh();
    let d = t.mkdir(ROOT_INO, "d").unwrap();
    let e = t.mkdir(ROOT_INO, "e").unwrap();
    let f = t.create(d.ino, "f", true).unwrap();
    let g = t.create(e.ino, "g", true).unwrap();
    index_matches_entries(&t);
    t.link(f.ino, e.ino, "f2").unwrap();
    t.link(f.ino, d.ino, "f3").unwrap();
    index_matches_entries(&t);
    assert_eq!(
        t.ns.names_index().iter().filter(|r| r.0 == f.ino).count(),
        3
    );
    // A rename, over an existing file, an exchange of a file and a directory.
    t.rename(d.ino, "f3", e.ino, "g", 0).unwrap();
    index_matches_entries(&t);
    assert!(
        !t.ns.names_index().iter().any(|r| r.0 == g.ino),
        "g is gone"
    );
    t.rename(e.ino, "g", ROOT_INO, "d", RENAME_EXCHANGE)
        .unwrap();
    index_matches_entries(&t);
    t.unlink(d.ino, "f").unwrap();
    t.unlink(ROOT_INO, "d").unwrap();
    index_matches_entries(&t);
    // A directory renamed over an empty one, and removed.
    t.mkdir(ROOT_INO, "x").unwrap();
    t.rename(e.ino, "g", ROOT_INO, "x", 0).unwrap();
    index_matches_entries(&t);
    t.rmdir(ROOT_INO, "x").unwrap();
    index_matches_entries(&t);
}

#[test]
fn a_namespace_without_the_index_gets_it_at_its_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    {
        let ns = Namespace::open(&path, 0o1777, ts(1)).unwrap();
        let t = T::wrap(ns);
        let d = t.mkdir(ROOT_INO, "d").unwrap();
        let f = t.create(d.ino, "f", true).unwrap();
        t.link(f.ino, ROOT_INO, "f2").unwrap();
        // As a release before the index left it: no table, no mark.
        let txn = store::begin(&t.ns.db).unwrap();
        txn.delete_table(NAMES).unwrap();
        txn.open_table(META)
            .unwrap()
            .remove(META_NAMES_INDEXED)
            .unwrap();
        txn.commit().unwrap();
    }
    let t = T::wrap(Namespace::open(&path, 0o1777, ts(2)).unwrap());
    assert_eq!(t.ns.names_index().len(), 3);
    index_matches_entries(&t);
}

#[test]
fn reachable_needs_every_directory_on_some_path_to_pass() {
    let t = fresh();
    let private = t.mkdir(ROOT_INO, "private").unwrap();
    let inner = t.mkdir(private.ino, "inner").unwrap();
    let f = t.create(inner.ino, "f", true).unwrap();
    let public = t.mkdir(ROOT_INO, "public").unwrap();
    let closed = [private.ino];
    let mut searchable = |a: &Attr, _: Option<&Acl>| !closed.contains(&a.ino);
    let ask = [ROOT_INO, private.ino, inner.ino, f.ino, public.ino, 999];
    let got = t.ns.reachable(&ask, &mut searchable).unwrap();
    let want = [
        Some(true),
        Some(true),
        Some(false),
        Some(false),
        Some(true),
        None,
    ];
    assert_eq!(
        got, want,
        "the closed directory itself is reached; below it nothing"
    );
    // A second name in the open directory reaches the file; a closed root closes all.
    t.link(f.ino, public.ino, "f").unwrap();
    assert_eq!(
        t.ns.reachable(&[f.ino], &mut searchable).unwrap(),
        [Some(true)]
    );
    let mut none = |_: &Attr, _: Option<&Acl>| false;
    let all =
        t.ns.reachable(&[ROOT_INO, public.ino, f.ino], &mut none)
            .unwrap();
    assert_eq!(all, [Some(true), Some(false), Some(false)]);
}
