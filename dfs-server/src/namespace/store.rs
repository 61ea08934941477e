//! The redb tables of the namespace and typed access to them inside one write transaction.
//!
//! Owns: table definitions, refcount / garbage bookkeeping primitives, extended attribute
//! rows, and the reverse index of names (`NAMES`), which every change of an entry keeps in
//! step here so that no command can forget it. Must not decide POSIX rules (that is `ops`,
//! `rename`, `attrs`, `xattr`), nor the layout of an inode record (`record`).

pub use super::record::InodeRecord;
use dfs_common::{BlobId, FsError, Ino, Timestamp};
use redb::{Database, Durability, ReadableTable, Table, TableDefinition, WriteTransaction};

/// ino -> an `InodeRecord` (`record::encode`).
pub const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
/// (parent ino, name) -> child ino.
pub const DIRENTS: TableDefinition<(u64, &[u8]), u64> = TableDefinition::new("dirents");
/// blob id -> number of inodes whose contents it is.
pub const REFS: TableDefinition<&[u8], u64> = TableDefinition::new("blob_refs");
/// blob id -> unix seconds when its refcount became 0.
pub const GARBAGE: TableDefinition<&[u8], u64> = TableDefinition::new("garbage");
/// (ino, name with its namespace prefix) -> value: extended attributes, POSIX ACLs too.
pub const XATTRS: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("xattrs");
/// (child ino, parent ino, name) -> (): every entry of `DIRENTS` seen from the inode it
/// names, so the names of an inode (a non-directory may have several) are found without a
/// scan (`reach`: search permission along an inode's paths).
pub const NAMES: TableDefinition<(u64, u64, &[u8]), ()> = TableDefinition::new("inode_names");
/// counters.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const META_NEXT_INO: &str = "next_ino";
/// Set (to 1) once `NAMES` holds every entry: a namespace made before the index gets it
/// built at its next open.
pub const META_NAMES_INDEXED: &str = "names_indexed";

/// Maps any redb error of the metadata database to the error users see.
pub fn db_err<E: Into<redb::Error>>(e: E) -> FsError {
    crate::errors::db_err("metadata database", e)
}

pub fn load_inode<T: ReadableTable<u64, &'static [u8]>>(
    t: &T,
    ino: Ino,
) -> Result<Option<InodeRecord>, FsError> {
    match t.get(ino).map_err(db_err)? {
        None => Ok(None),
        Some(g) => super::record::decode(g.value())
            .map(Some)
            .map_err(|e| FsError::Io(format!("inode {ino} record unreadable: {e}"))),
    }
}

fn secs(t: Timestamp) -> u64 {
    t.secs.max(0) as u64
}

/// Begins a durable write transaction.
pub fn begin(db: &Database) -> Result<WriteTransaction, FsError> {
    begin_with(db, Durability::Immediate)
}

/// Begins a write transaction whose commit does not wait for the disk (see
/// `Namespace::apply_unsynced`).
pub fn begin_unsynced(db: &Database) -> Result<WriteTransaction, FsError> {
    begin_with(db, Durability::None)
}

fn begin_with(db: &Database, durability: Durability) -> Result<WriteTransaction, FsError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(durability)
        .map_err(|e| FsError::Io(format!("metadata database: {e}")))?;
    Ok(txn)
}

/// The tables of one write transaction.
pub struct Writer<'t> {
    inodes: Table<'t, u64, &'static [u8]>,
    dirents: Table<'t, (u64, &'static [u8]), u64>,
    refs: Table<'t, &'static [u8], u64>,
    garbage: Table<'t, &'static [u8], u64>,
    meta: Table<'t, &'static str, u64>,
    xattrs: Table<'t, (u64, &'static [u8]), &'static [u8]>,
    names: Table<'t, (u64, u64, &'static [u8]), ()>,
}

impl<'t> Writer<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Writer<'t>, FsError> {
        Ok(Writer {
            inodes: txn.open_table(INODES).map_err(db_err)?,
            dirents: txn.open_table(DIRENTS).map_err(db_err)?,
            refs: txn.open_table(REFS).map_err(db_err)?,
            garbage: txn.open_table(GARBAGE).map_err(db_err)?,
            meta: txn.open_table(META).map_err(db_err)?,
            xattrs: txn.open_table(XATTRS).map_err(db_err)?,
            names: txn.open_table(NAMES).map_err(db_err)?,
        })
    }

    pub fn inode(&self, ino: Ino) -> Result<Option<InodeRecord>, FsError> {
        load_inode(&self.inodes, ino)
    }

    /// The inode, or NotFound.
    pub fn must(&self, ino: Ino) -> Result<InodeRecord, FsError> {
        self.inode(ino)?.ok_or(FsError::NotFound)
    }

    pub fn put_inode(&mut self, rec: &InodeRecord) -> Result<(), FsError> {
        let bytes = super::record::encode(rec);
        self.inodes
            .insert(rec.attr.ino, bytes.as_slice())
            .map_err(db_err)?;
        Ok(())
    }

    /// Removes inode `ino` with everything kept about it (its extended attributes, and any
    /// name still indexed for it, though its entries are gone by now).
    pub fn del_inode(&mut self, ino: Ino) -> Result<(), FsError> {
        self.inodes.remove(ino).map_err(db_err)?;
        for name in self.xattr_names(ino)? {
            self.xattrs.remove((ino, name.as_slice())).map_err(db_err)?;
        }
        for (parent, name) in self.names_of(ino)? {
            self.names
                .remove((ino, parent, name.as_slice()))
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// The names of `ino` as `(parent, name)`, in parent order.
    pub fn names_of(&self, ino: Ino) -> Result<Vec<(Ino, Vec<u8>)>, FsError> {
        let empty: &[u8] = &[];
        let mut out = Vec::new();
        for item in self
            .names
            .range((ino, 0, empty)..(ino + 1, 0, empty))
            .map_err(db_err)?
        {
            let (k, _) = item.map_err(db_err)?;
            let (_, parent, name) = k.value();
            out.push((parent, name.to_vec()));
        }
        Ok(out)
    }

    /// Builds `NAMES` from `DIRENTS` if this namespace predates it; true if it did.
    pub fn index_names(&mut self) -> Result<bool, FsError> {
        if self.meta(META_NAMES_INDEXED)?.is_some() {
            return Ok(false);
        }
        let mut rows = Vec::new();
        for item in self.dirents.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (dir, name) = k.value();
            rows.push((v.value(), dir, name.to_vec()));
        }
        for (ino, dir, name) in &rows {
            self.names
                .insert((*ino, *dir, name.as_slice()), ())
                .map_err(db_err)?;
        }
        self.set_meta(META_NAMES_INDEXED, 1)?;
        Ok(true)
    }

    /// The value of extended attribute `name` of `ino`.
    pub fn xattr(&self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
        Ok(self
            .xattrs
            .get((ino, name))
            .map_err(db_err)?
            .map(|g| g.value().to_vec()))
    }

    pub fn put_xattr(&mut self, ino: Ino, name: &[u8], value: &[u8]) -> Result<(), FsError> {
        self.xattrs.insert((ino, name), value).map_err(db_err)?;
        Ok(())
    }

    /// Removes extended attribute `name` of `ino`; false if it had none.
    pub fn del_xattr(&mut self, ino: Ino, name: &[u8]) -> Result<bool, FsError> {
        Ok(self.xattrs.remove((ino, name)).map_err(db_err)?.is_some())
    }

    fn xattr_names(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError> {
        let empty: &[u8] = &[];
        let mut names = Vec::new();
        for item in self
            .xattrs
            .range((ino, empty)..(ino + 1, empty))
            .map_err(db_err)?
        {
            let (k, _) = item.map_err(db_err)?;
            names.push(k.value().1.to_vec());
        }
        Ok(names)
    }

    /// Bytes all extended attributes of `ino` take, names and values.
    pub fn xattr_bytes(&self, ino: Ino) -> Result<usize, FsError> {
        let empty: &[u8] = &[];
        let mut total = 0;
        for item in self
            .xattrs
            .range((ino, empty)..(ino + 1, empty))
            .map_err(db_err)?
        {
            let (k, v) = item.map_err(db_err)?;
            total += k.value().1.len() + v.value().len();
        }
        Ok(total)
    }

    pub fn entry(&self, dir: Ino, name: &[u8]) -> Result<Option<Ino>, FsError> {
        Ok(self
            .dirents
            .get((dir, name))
            .map_err(db_err)?
            .map(|g| g.value()))
    }

    /// Makes `name` in `dir` name `ino`, replacing what it named before.
    pub fn put_entry(&mut self, dir: Ino, name: &[u8], ino: Ino) -> Result<(), FsError> {
        let old = self
            .dirents
            .insert((dir, name), ino)
            .map_err(db_err)?
            .map(|g| g.value());
        if let Some(old) = old.filter(|o| *o != ino) {
            self.names.remove((old, dir, name)).map_err(db_err)?;
        }
        self.names.insert((ino, dir, name), ()).map_err(db_err)?;
        Ok(())
    }

    pub fn del_entry(&mut self, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        let old = self
            .dirents
            .remove((dir, name))
            .map_err(db_err)?
            .map(|g| g.value());
        if let Some(old) = old {
            self.names.remove((old, dir, name)).map_err(db_err)?;
        }
        Ok(())
    }

    /// True if directory `dir` has no entries.
    pub fn dir_is_empty(&self, dir: Ino) -> Result<bool, FsError> {
        let empty: &[u8] = &[];
        let mut range = self
            .dirents
            .range((dir, empty)..(dir + 1, empty))
            .map_err(db_err)?;
        Ok(range.next().is_none())
    }

    pub fn meta(&self, key: &str) -> Result<Option<u64>, FsError> {
        Ok(self.meta.get(key).map_err(db_err)?.map(|g| g.value()))
    }

    pub fn set_meta(&mut self, key: &str, value: u64) -> Result<(), FsError> {
        self.meta.insert(key, value).map_err(db_err)?;
        Ok(())
    }

    /// A fresh inode number; numbers are never reused.
    pub fn alloc_ino(&mut self) -> Result<Ino, FsError> {
        let next = self
            .meta(META_NEXT_INO)?
            .ok_or_else(|| FsError::Io("metadata database has no inode counter".into()))?;
        self.set_meta(META_NEXT_INO, next + 1)?;
        Ok(next)
    }

    fn refcount(&self, blob: &BlobId) -> Result<Option<u64>, FsError> {
        Ok(self
            .refs
            .get(blob.0.as_slice())
            .map_err(db_err)?
            .map(|g| g.value()))
    }

    /// One more inode holds `blob`.
    pub fn blob_ref(&mut self, blob: &BlobId) -> Result<(), FsError> {
        let n = self.refcount(blob)?.unwrap_or(0);
        self.refs.insert(blob.0.as_slice(), n + 1).map_err(db_err)?;
        if n == 0 {
            self.garbage.remove(blob.0.as_slice()).map_err(db_err)?;
        }
        Ok(())
    }

    /// One inode fewer holds `blob`; true if nothing holds it any more (now garbage).
    pub fn blob_unref(&mut self, blob: &BlobId, now: Timestamp) -> Result<bool, FsError> {
        let n = self.refcount(blob)?.unwrap_or(0);
        let left = n.saturating_sub(1);
        self.refs.insert(blob.0.as_slice(), left).map_err(db_err)?;
        if left == 0 {
            self.garbage
                .insert(blob.0.as_slice(), secs(now))
                .map_err(db_err)?;
        }
        Ok(left == 0)
    }

    /// Registers a blob file with no refcount row as garbage since `since` secs.
    pub fn adopt_blob(&mut self, blob: &BlobId, since: u64) -> Result<(), FsError> {
        if self.refcount(blob)?.is_none() {
            self.refs.insert(blob.0.as_slice(), 0).map_err(db_err)?;
            self.garbage
                .insert(blob.0.as_slice(), since)
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Drops the rows of a deleted blob file, unless something references it again.
    pub fn forget_blob(&mut self, blob: &BlobId) -> Result<(), FsError> {
        if self.refcount(blob)?.unwrap_or(0) == 0 {
            self.refs.remove(blob.0.as_slice()).map_err(db_err)?;
            self.garbage.remove(blob.0.as_slice()).map_err(db_err)?;
        }
        Ok(())
    }
}
