//! Which inodes can be reached by name through directories that pass a test: the paths
//! from the root to an inode, read from the namespace (a directory's `parent`; the names
//! of a non-directory, which may be several, from the `NAMES` index), for the server's
//! search-permission check on requests that name an inode by number.
//!
//! Owns: the walk up the tree, in one read transaction, with what it learnt about each
//! directory kept for the other inodes of the same question. Must not decide which
//! directory passes (the caller's `searchable`, from `auth::perm`), nor write.

use super::store::{db_err, load_inode, NAMES, XATTRS};
use super::xattr::parse_stored;
use super::Namespace;
use dfs_common::acl::Acl;
use dfs_common::proto::XATTR_POSIX_ACL_ACCESS;
use dfs_common::{Attr, FileKind, FsError, Ino, ROOT_INO};
use redb::ReadOnlyTable;
use std::collections::HashMap;

/// Longest chain of directories walked: a corrupt parent chain must not hang the server.
const MAX_DEPTH: usize = 1_000_000;

type InodeTable = ReadOnlyTable<u64, &'static [u8]>;
type XattrTable = ReadOnlyTable<(u64, &'static [u8]), &'static [u8]>;
type NameTable = ReadOnlyTable<(u64, u64, &'static [u8]), ()>;

/// A directory passes if `searchable(its attributes, its access ACL)`.
pub type Searchable<'a> = dyn FnMut(&Attr, Option<&Acl>) -> bool + 'a;

struct Walk<'a, 'b> {
    inodes: InodeTable,
    xattrs: XattrTable,
    names: NameTable,
    searchable: &'a mut Searchable<'b>,
    /// Directories known to pass and to be reached, or not.
    open: HashMap<Ino, bool>,
}

fn access_acl(xattrs: &XattrTable, ino: Ino) -> Result<Option<Acl>, FsError> {
    match xattrs.get((ino, XATTR_POSIX_ACL_ACCESS)).map_err(db_err)? {
        None => Ok(None),
        Some(g) => parse_stored(ino, g.value()),
    }
}

impl Walk<'_, '_> {
    /// The directories holding a name of non-directory `ino`, each once.
    fn parents(&self, ino: Ino) -> Result<Vec<Ino>, FsError> {
        let empty: &[u8] = &[];
        let mut out: Vec<Ino> = Vec::new();
        for item in self
            .names
            .range((ino, 0, empty)..(ino + 1, 0, empty))
            .map_err(db_err)?
        {
            let (k, _) = item.map_err(db_err)?;
            let parent = k.value().1;
            if out.last() != Some(&parent) {
                out.push(parent);
            }
        }
        Ok(out)
    }

    /// Whether directory `dir` passes and is reached through directories that pass. A
    /// directory has one parent, so this is a walk up one chain; each directory on it
    /// gets the chain's answer.
    fn open_dir(&mut self, dir: Ino) -> Result<bool, FsError> {
        let mut chain = Vec::new();
        let mut cur = dir;
        let answer = loop {
            if let Some(known) = self.open.get(&cur) {
                break *known;
            }
            if chain.len() > MAX_DEPTH {
                return Err(FsError::Io(
                    "directory parent chain does not reach the root".into(),
                ));
            }
            let Some(rec) = load_inode(&self.inodes, cur)? else {
                break false;
            };
            let acl = access_acl(&self.xattrs, cur)?;
            if rec.attr.kind != FileKind::Dir || !(self.searchable)(&rec.attr, acl.as_ref()) {
                self.open.insert(cur, false);
                break false;
            }
            chain.push(cur);
            if cur == ROOT_INO {
                break true;
            }
            cur = rec.parent;
        };
        for d in chain {
            self.open.insert(d, answer);
        }
        Ok(answer)
    }

    fn reached(&mut self, ino: Ino) -> Result<Option<bool>, FsError> {
        let Some(rec) = load_inode(&self.inodes, ino)? else {
            return Ok(None);
        };
        if ino == ROOT_INO {
            return Ok(Some(true));
        }
        let parents = if rec.attr.kind == FileKind::Dir {
            vec![rec.parent]
        } else {
            self.parents(ino)?
        };
        for p in parents {
            if self.open_dir(p)? {
                return Ok(Some(true));
            }
        }
        Ok(Some(false))
    }
}

impl Namespace {
    /// For each of `inos`: `None` if there is no such inode, else whether some path from
    /// the root leads to it through directories that all pass `searchable` (the root and
    /// every directory on the way; not the inode itself). The root is always reached.
    pub fn reachable(
        &self,
        inos: &[Ino],
        searchable: &mut Searchable<'_>,
    ) -> Result<Vec<Option<bool>>, FsError> {
        let tx = self.read()?;
        let mut walk = Walk {
            inodes: tx.open_table(super::store::INODES).map_err(db_err)?,
            xattrs: tx.open_table(XATTRS).map_err(db_err)?,
            names: tx.open_table(NAMES).map_err(db_err)?,
            searchable,
            open: HashMap::new(),
        };
        inos.iter().map(|ino| walk.reached(*ino)).collect()
    }

    /// The access ACL of each of `inos` (`None` for one without, or gone).
    pub fn access_acls(&self, inos: &[Ino]) -> Result<Vec<Option<Acl>>, FsError> {
        let tx = self.read()?;
        let xattrs = tx.open_table(XATTRS).map_err(db_err)?;
        inos.iter().map(|ino| access_acl(&xattrs, *ino)).collect()
    }
}

#[cfg(test)]
use redb::ReadableTable;

#[cfg(test)]
impl Namespace {
    /// Every row of the names index, in key order: `(ino, parent, name)`.
    pub(super) fn names_index(&self) -> Vec<(Ino, Ino, Vec<u8>)> {
        let tx = self.read().unwrap();
        let names = tx.open_table(NAMES).unwrap();
        names
            .iter()
            .unwrap()
            .map(|item| {
                let (k, _) = item.unwrap();
                let (ino, parent, name) = k.value();
                (ino, parent, name.to_vec())
            })
            .collect()
    }

    /// Every entry, seen from the inode it names: what the index must hold.
    pub(super) fn entries_by_ino(&self) -> Vec<(Ino, Ino, Vec<u8>)> {
        let tx = self.read().unwrap();
        let dirents = tx.open_table(super::store::DIRENTS).unwrap();
        let mut out: Vec<_> = dirents
            .iter()
            .unwrap()
            .map(|item| {
                let (k, v) = item.unwrap();
                let (dir, name) = k.value();
                (v.value(), dir, name.to_vec())
            })
            .collect();
        out.sort();
        out
    }
}
