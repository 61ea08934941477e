//! The directory service: the namespace as a deterministic state machine over redb.
//!
//! Owns: the metadata database (inodes, directory entries and the index of each inode's
//! names, extended attributes and ACLs, blob reference counts, the garbage list of
//! unreferenced blobs, counters) and every POSIX rule about names, kinds, link counts,
//! times, permission bits and set-id bits. Mutations go through [`Namespace::apply`], one
//! durable redb write transaction per [`NsCommand`]; every command carries its own
//! timestamps (and a transaction's batch its caller's identity, for the permission rules of
//! `auth::perm::rules` it applies) so that the same command applied to the same state gives
//! the same result (a consensus log could drive it). Reads use read transactions and never
//! change anything.
//!
//! Must not touch: blob files (it only counts references to blob ids), HTTP, callbacks, the
//! clock (callers stamp `Timestamp::now()` into commands).

mod attrs;
mod clients;
mod durable;
mod inherit;
#[cfg(test)]
mod mode_tests;
mod ops;
mod reach;
#[cfg(test)]
mod reach_tests;
mod record;
mod rename;
mod replicated;
#[cfg(test)]
mod replicated_tests;
mod special;
#[cfg(test)]
mod special_tests;
mod store;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
pub mod txn;
#[cfg(test)]
mod txn_tests;
mod xattr;
#[cfg(test)]
mod xattr_tests;

use dfs_common::proto::{XattrSet, READDIR_PAGE};
use dfs_common::types::NAME_MAX;
use dfs_common::{Attr, BlobId, FileKind, FsError, Ino, Timestamp, ROOT_INO};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use durable::CommitSeq;
pub use reach::Searchable;
pub use record::InodeRecord;
pub use replicated::{ApplyRecord, Recorded, TableCopy};
use store::{db_err, load_inode, DIRENTS, GARBAGE, INODES, REFS};
pub use xattr::{xattr_class, XattrClass, Xattrs};

/// Longest symlink target accepted (PATH_MAX).
pub const TARGET_MAX: usize = 4096;

/// How far each start moves the inode counter past its durable value: more than the
/// creates one run can make between two durable commits.
const INO_GAP: u64 = 1 << 32;

/// Size reported for a directory.
pub const DIR_SIZE: u64 = 4096;

/// A change of a file's contents: the blob that now holds them and their size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// `None` for empty contents.
    pub blob: Option<BlobId>,
    pub size: u64,
    /// Only commit if the file is still at this version (`None`: whatever the version).
    pub base_version: Option<u64>,
}

/// One mutation of the namespace. Every field the result depends on is in the command.
/// Serializable: it is the payload of a Raft log entry (`crate::raft`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsCommand {
    /// `mode` is the caller's mode argument and `umask` its umask, not yet applied (the
    /// same for `Mkdir` and `Mknod`): the directory's default ACL, if it has one, stands
    /// in for the umask, and a set-gid directory gives its group (`inherit`).
    Create {
        parent: Ino,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
        uid: u32,
        gid: u32,
        exclusive: bool,
        now: Timestamp,
    },
    Mkdir {
        parent: Ino,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
        uid: u32,
        gid: u32,
        now: Timestamp,
    },
    /// A fifo, socket or device node (`special`).
    Mknod {
        parent: Ino,
        name: Vec<u8>,
        kind: FileKind,
        mode: u32,
        umask: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
        now: Timestamp,
    },
    Symlink {
        parent: Ino,
        name: Vec<u8>,
        target: Vec<u8>,
        uid: u32,
        gid: u32,
        now: Timestamp,
    },
    Link {
        ino: Ino,
        new_parent: Ino,
        new_name: Vec<u8>,
        now: Timestamp,
    },
    Unlink {
        parent: Ino,
        name: Vec<u8>,
        now: Timestamp,
    },
    Rmdir {
        parent: Ino,
        name: Vec<u8>,
        now: Timestamp,
    },
    Rename {
        parent: Ino,
        name: Vec<u8>,
        new_parent: Ino,
        new_name: Vec<u8>,
        flags: u32,
        now: Timestamp,
    },
    /// Changes what is `Some`; times are already resolved (no "now" markers). A change of
    /// owner or group of a non-directory clears its set-id bits (`attrs`), and so does
    /// `kill_suid` (a truncate by a writer without CAP_FSETID).
    SetAttr {
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
        contents: Option<Contents>,
        kill_suid: bool,
        now: Timestamp,
    },
    /// A store: the file's contents are now `contents` (version + 1, ctime = now, mtime =
    /// the writer's `mtime` if it sent one, else now), its set-id bits cleared if
    /// `kill_suid`, and its permission bits `mode` if the writer sent a chmod with it.
    CommitBlob {
        ino: Ino,
        contents: Contents,
        mtime: Option<Timestamp>,
        mode: Option<u32>,
        kill_suid: bool,
        now: Timestamp,
    },
    /// Sets extended attribute `name` of `ino` (`xattr`; ACLs included). `drop_sgid`: an
    /// access ACL set by someone outside the file's group clears S_ISGID, as a chmod
    /// would (Linux's `posix_acl_update_mode`; `auth::perm` decides).
    SetXattr {
        ino: Ino,
        name: Vec<u8>,
        value: Vec<u8>,
        how: XattrSet,
        drop_sgid: bool,
        now: Timestamp,
    },
    RemoveXattr {
        ino: Ino,
        name: Vec<u8>,
        now: Timestamp,
    },
    /// Blob files found without any reference (a crash between blob write and commit):
    /// give them a zero refcount and put them on the garbage list as of `since` secs.
    AdoptBlobs { blobs: Vec<(BlobId, u64)> },
    /// The garbage collector deleted these blob files: drop their rows if still unreferenced.
    ForgetBlobs { blobs: Vec<BlobId> },
}

/// What a command changed, so the caller can break callbacks and collect blobs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsOutcome {
    /// The attributes of the inode the command created or changed, if it has one.
    pub attr: Option<Attr>,
    /// Inodes whose attributes or contents changed (including removed ones).
    pub changed_inos: Vec<Ino>,
    /// Directory entries `(dir, name)` that were added, removed or replaced.
    pub changed_entries: Vec<(Ino, Vec<u8>)>,
    /// Blobs whose reference count dropped to zero (now on the garbage list).
    pub unreferenced: Vec<BlobId>,
}

/// Directory entries with their attributes, in name order.
pub type Entries = Vec<(Vec<u8>, Attr)>;
/// Validate's answer: each held inode's current attributes, `None` if it is gone.
pub type Current = Vec<(Ino, Option<Attr>)>;

/// The namespace, open on one redb file.
pub struct Namespace {
    db: Database,
    group: durable::GroupCommit,
}

/// Checks one name component against the POSIX rules.
pub fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.is_empty() {
        return Err(FsError::Invalid("empty name".into()));
    }
    if name == b"." || name == b".." {
        return Err(FsError::Invalid("'.' and '..' are not names".into()));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid("name contains '/' or NUL".into()));
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

impl Namespace {
    /// Opens (or creates) the database at `path`. A fresh namespace gets its root directory
    /// (ino 1, owned by 0:0, permission bits `root_mode`, times `now`).
    pub fn open(path: &Path, root_mode: u32, now: Timestamp) -> Result<Namespace, FsError> {
        Namespace::open_with(path, root_mode, now, true)
    }

    /// `open`, and `ino_gap`: whether this start moves the inode counter past its durable
    /// value (a replica of a replicated namespace must not: see `open_replicated`).
    fn open_with(
        path: &Path,
        root_mode: u32,
        now: Timestamp,
        ino_gap: bool,
    ) -> Result<Namespace, FsError> {
        // Commits are made durable by one append to a log beside the file (crate::wal).
        let backend = crate::wal::WalFile::open(path).map_err(|e| db_err(redb::Error::Io(e)))?;
        let db = redb::Builder::new()
            .create_with_backend(backend)
            .map_err(db_err)?;
        let ns = Namespace {
            db,
            group: durable::GroupCommit::default(),
        };
        ns.init(root_mode, now, ino_gap)?;
        Ok(ns)
    }

    fn init(&self, root_mode: u32, now: Timestamp, ino_gap: bool) -> Result<(), FsError> {
        let txn = store::begin(&self.db)?;
        {
            let mut w = store::Writer::open(&txn)?;
            if w.inode(ROOT_INO)?.is_some() {
                // A crash may have forgotten creates that were not durable yet, whose inode
                // numbers clients still hold: never hand those numbers out again.
                if ino_gap {
                    let next = w.meta(store::META_NEXT_INO)?.unwrap_or(ROOT_INO + 1);
                    w.set_meta(store::META_NEXT_INO, next.saturating_add(INO_GAP))?;
                }
                if w.index_names()? {
                    log::info!("namespace: built the index of names of every inode");
                }
                drop(w);
                return txn.commit().map_err(db_err);
            }
            let root = InodeRecord {
                attr: Attr {
                    ino: ROOT_INO,
                    kind: FileKind::Dir,
                    mode: root_mode & 0o7777,
                    uid: 0,
                    gid: 0,
                    nlink: 2,
                    size: DIR_SIZE,
                    atime: now,
                    mtime: now,
                    ctime: now,
                    version: 1,
                    blob: None,
                    rdev: 0,
                },
                parent: ROOT_INO,
                target: None,
            };
            w.put_inode(&root)?;
            w.set_meta(store::META_NEXT_INO, ROOT_INO + 1)?;
            w.index_names()?;
        }
        txn.commit().map_err(db_err)
    }

    /// Applies one mutation in one write transaction and returns once it is durable. On
    /// error nothing changed.
    pub fn apply(&self, cmd: NsCommand) -> Result<NsOutcome, FsError> {
        let (outcome, seq) = self.apply_unsynced(cmd, None)?;
        self.sync_through(seq)?;
        Ok(outcome)
    }

    /// Applies one mutation in one write transaction, with `journal` (a small blob whose
    /// file was written without an fsync: its id and bytes) recorded in the same
    /// transaction, and returns without waiting for the disk. The change is visible at
    /// once and durable after `sync_through(seq)`; a crash before that loses it whole.
    pub fn apply_unsynced(
        &self,
        cmd: NsCommand,
        journal: Option<(&BlobId, &[u8])>,
    ) -> Result<(NsOutcome, CommitSeq), FsError> {
        let txn = store::begin_unsynced(&self.db)?;
        let outcome = {
            let mut w = store::Writer::open(&txn)?;
            let outcome = ops::apply(&mut w, cmd)?;
            if let Some((id, bytes)) = journal {
                let mut t = txn.open_table(durable::JOURNAL).map_err(db_err)?;
                t.insert(id.0.as_slice(), bytes).map_err(db_err)?;
            }
            outcome
        };
        txn.commit().map_err(db_err)?;
        Ok((outcome, self.group.committed()))
    }

    fn read(&self) -> Result<redb::ReadTransaction, FsError> {
        self.db.begin_read().map_err(db_err)
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        Ok(load_inode(&inodes, ino)?.ok_or(FsError::NotFound)?.attr)
    }

    /// The whole inode record (attributes plus symlink target).
    pub fn inode(&self, ino: Ino) -> Result<Option<InodeRecord>, FsError> {
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        load_inode(&inodes, ino)
    }

    /// The attributes of `name` in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        check_name(name)?;
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        let dirents = tx.open_table(DIRENTS).map_err(db_err)?;
        let dir = load_inode(&inodes, parent)?.ok_or(FsError::NotFound)?;
        if dir.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let child = dirents
            .get((parent, name))
            .map_err(db_err)?
            .ok_or(FsError::NotFound)?
            .value();
        Ok(load_inode(&inodes, child)?
            .ok_or_else(|| FsError::Io(format!("dangling entry to inode {child}")))?
            .attr)
    }

    /// Up to `min(limit, READDIR_PAGE)` entries of `dir` after `after`, and whether more remain.
    pub fn readdir(
        &self,
        dir: Ino,
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<(Entries, bool), FsError> {
        let limit = if limit == 0 {
            READDIR_PAGE
        } else {
            limit.min(READDIR_PAGE)
        } as usize;
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        let dirents = tx.open_table(DIRENTS).map_err(db_err)?;
        let d = load_inode(&inodes, dir)?.ok_or(FsError::NotFound)?;
        if d.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let empty: &[u8] = &[];
        let lower = match after {
            Some(a) => std::ops::Bound::Excluded((dir, a)),
            None => std::ops::Bound::Included((dir, empty)),
        };
        let upper = std::ops::Bound::Excluded((dir + 1, empty));
        let mut out = Vec::new();
        let mut more = false;
        for item in dirents.range((lower, upper)).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            if out.len() == limit {
                more = true;
                break;
            }
            let (_, name) = k.value();
            let child = v.value();
            let attr = load_inode(&inodes, child)?
                .ok_or_else(|| FsError::Io(format!("dangling entry to inode {child}")))?
                .attr;
            out.push((name.to_vec(), attr));
        }
        Ok((out, more))
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        let rec = self.inode(ino)?.ok_or(FsError::NotFound)?;
        match rec.target {
            Some(t) if rec.attr.kind == FileKind::Symlink => Ok(t),
            _ => Err(FsError::Invalid("not a symbolic link".into())),
        }
    }

    /// For each held `(ino, version)`: `(ino, None)` if gone, `(ino, Some(attr))` if the
    /// version differs. Also returns the inos that still exist (to renew promises on).
    pub fn validate(&self, held: &[(Ino, u64)]) -> Result<(Current, Vec<Ino>), FsError> {
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        let mut current = Vec::with_capacity(held.len());
        let mut alive = Vec::new();
        for &(ino, _version) in held {
            match load_inode(&inodes, ino)? {
                None => current.push((ino, None)),
                Some(rec) => {
                    alive.push(ino);
                    current.push((ino, Some(rec.attr)));
                }
            }
        }
        Ok((current, alive))
    }

    /// Number of inodes in the namespace.
    pub fn inode_count(&self) -> Result<u64, FsError> {
        let tx = self.read()?;
        let inodes = tx.open_table(INODES).map_err(db_err)?;
        inodes.len().map_err(db_err)
    }

    /// The reference count row of a blob: `None` if the namespace has never heard of it.
    pub fn refcount(&self, blob: &BlobId) -> Result<Option<u64>, FsError> {
        let tx = self.read()?;
        let refs = tx.open_table(REFS).map_err(db_err)?;
        Ok(refs
            .get(blob.0.as_slice())
            .map_err(db_err)?
            .map(|g| g.value()))
    }

    /// Every blob the namespace knows, in id order, with whether it is referenced (count
    /// above zero: a file's contents or a transaction's staged blob) or only waiting on
    /// the garbage list.
    pub fn known_blobs(&self) -> Result<Vec<(BlobId, bool)>, FsError> {
        let tx = self.read()?;
        let refs = tx.open_table(REFS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in refs.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            if let Ok(arr) = <[u8; 32]>::try_from(k.value()) {
                out.push((BlobId(arr), v.value() > 0));
            }
        }
        Ok(out)
    }

    /// Blobs on the garbage list since at most `cutoff_secs` (unix seconds).
    pub fn garbage_due(&self, cutoff_secs: u64) -> Result<Vec<BlobId>, FsError> {
        let tx = self.read()?;
        let garbage = tx.open_table(GARBAGE).map_err(db_err)?;
        let mut out = Vec::new();
        for item in garbage.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            if v.value() <= cutoff_secs {
                if let Ok(arr) = <[u8; 32]>::try_from(k.value()) {
                    out.push(BlobId(arr));
                }
            }
        }
        Ok(out)
    }
}
