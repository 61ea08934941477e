//! Attacks on the server's permission rules (#21), replayed by a hostile client that speaks
//! the wire protocol with tickets of its own (minted with the realm's service key, as the
//! KDC would) or none, against the real binary in a realm made with `dfs-server init`:
//! - reading by inode number: a file inside another user's 0700 directory is neither
//!   fetched nor shown (getattr, validate, xattrs, readlink, lookups and listings below
//!   it) to another user or an anonymous caller, nor written, and a second name in a
//!   public directory makes it reachable again;
//! - no content hash (`Attr::blob`) in attributes given to a caller who may not read the
//!   file: lookups, getattr, listings, validate, create answers, setattr and store answers;
//! - hard links: only to one's own files, or to files one may read and write (Linux's
//!   protected_hardlinks);
//! - set-id bits: set by the owner (S_ISGID only in the file's group), cleared by writes,
//!   chown and chgrp, and by an ACL set outside the file's group;
//! - transactions: any user may run one, each operation checked as it would be alone,
//!   and a batch touching anything the user may not change fails whole, naming it.

mod links_and_setid;
mod reading;
mod transactions;

use dfs_common::proto::{AttrChange, DirReply, DirRequest};
use dfs_common::{codec, Attr, Ino};
use dfs_tests::caller::As;
use dfs_tests::{free_port, init_realm, use_bin_dir, Server};
use std::path::Path;

pub const ALICE: u32 = 2101;
pub const BOB: u32 = 2102;
/// A group alice is not in (unless a test says so).
pub const STAFF: u32 = 5000;

pub struct Realm {
    pub s: Server,
    pub key: dfs_common::auth::Key,
    pub admin: As,
    pub alice: As,
    pub bob: As,
    pub anon: As,
    _tmp: tempfile::TempDir,
}

pub fn realm() -> Realm {
    // The dfs-server cargo built with these tests, not the release binary.
    use_bin_dir(
        Path::new(env!("CARGO_BIN_EXE_dfs-server"))
            .parent()
            .unwrap(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let key = init_realm(&data);
    // Anonymous callers may go as far as the modes let `nobody`: the rules below the
    // realm's gate (`--anonymous`, tested in tests/tests/attacks_infra.rs) are tested here.
    let s = Server::start(&data, free_port(), &["--anonymous", "write"]);
    Realm {
        s,
        admin: As::realm(&key, 40, 0, true),
        alice: As::realm(&key, 41, ALICE, false),
        bob: As::realm(&key, 42, BOB, false),
        anon: As::open(43),
        key,
        _tmp: tmp,
    }
}

pub fn store_ok(who: &As, s: &Server, ino: Ino, data: &[u8]) -> Attr {
    let r = who.store(s, ino, data, &[]);
    assert_eq!(r.status, 200, "store: {}", String::from_utf8_lossy(&r.body));
    codec::decode(&r.body).unwrap()
}

pub fn validate(who: &As, s: &Server, ino: Ino) -> Option<Attr> {
    match who.dir(
        s,
        &DirRequest::Validate {
            held: vec![(ino, 1)],
        },
    ) {
        DirReply::Validated { mut current } => {
            assert_eq!(current.len(), 1);
            let (answered, a) = current.pop().unwrap();
            assert_eq!(answered, ino);
            a
        }
        other => panic!("{other:?}"),
    }
}

pub fn readdir(who: &As, s: &Server, dir: Ino) -> Vec<(Vec<u8>, Attr)> {
    let req = DirRequest::ReadDir {
        dir,
        after: None,
        limit: 0,
    };
    match who.dir(s, &req) {
        DirReply::Entries { entries, .. } => entries,
        other => panic!("{other:?}"),
    }
}

pub fn setattr(ino: Ino, change: AttrChange) -> DirRequest {
    DirRequest::SetAttr { ino, change }
}

pub fn chmod(ino: Ino, mode: u32) -> DirRequest {
    setattr(
        ino,
        AttrChange {
            mode: Some(mode),
            ..AttrChange::default()
        },
    )
}

pub fn link(ino: Ino, new_parent: Ino, name: &str) -> DirRequest {
    DirRequest::Link {
        ino,
        new_parent,
        new_name: name.into(),
    }
}
