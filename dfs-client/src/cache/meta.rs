//! The in-memory metadata cache: attributes, name lookups, directory listings, symlink
//! targets and extended attributes, each remembered with the callback generation it was
//! validated under (see `Validity`). Bounded LRUs; it must not do I/O.

use dfs_common::{Attr, Ino};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Arc;

/// Whole contents of small clean files, by (inode, version), within a byte budget: the
/// in-memory layer of the whole-file cache for reads that reach the daemon (plain
/// handlers; under passthrough the kernel reads the cached copy itself).
pub struct SmallFiles {
    lru: LruCache<(Ino, u64), Arc<Vec<u8>>>,
    bytes: usize,
    budget: usize,
}

/// Files up to this size are kept whole in memory.
pub const SMALL_FILE_MAX: u64 = 64 << 10;

impl SmallFiles {
    pub fn new(budget: usize) -> SmallFiles {
        SmallFiles {
            lru: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    pub fn get(&mut self, ino: Ino, version: u64) -> Option<Arc<Vec<u8>>> {
        self.lru.get(&(ino, version)).cloned()
    }

    pub fn put(&mut self, ino: Ino, version: u64, data: Arc<Vec<u8>>) {
        self.bytes += data.len();
        if let Some(old) = self.lru.put((ino, version), data) {
            self.bytes -= old.len();
        }
        while self.bytes > self.budget {
            match self.lru.pop_lru() {
                Some((_, d)) => self.bytes -= d.len(),
                None => break,
            }
        }
    }

    /// The copy of `ino` at `version` is being changed in place.
    pub fn forget(&mut self, ino: Ino, version: u64) {
        if let Some(d) = self.lru.pop(&(ino, version)) {
            self.bytes -= d.len();
        }
    }
}

/// One directory entry with its attributes (readdirplus).
#[derive(Clone, Debug)]
pub struct DirItem {
    pub name: Vec<u8>,
    pub attr: Attr,
}

/// Every extended attribute of one inode, `(name, value)` in name order.
pub type XattrSet = Arc<Vec<(Vec<u8>, Vec<u8>)>>;

/// When a cached fact was learnt: the callback channel generation. A fact is trusted
/// without asking the server only while the channel that carried its promise is still up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(pub u64);

impl Stamp {
    /// A fact that must be revalidated before it is trusted.
    pub const STALE: Stamp = Stamp(0);
}

pub struct MetaCache {
    attrs: LruCache<Ino, (Attr, Stamp)>,
    names: LruCache<(Ino, Vec<u8>), (Ino, Stamp)>,
    dirs: LruCache<Ino, (Arc<Vec<DirItem>>, Stamp)>,
    links: LruCache<Ino, Vec<u8>>,
    xattrs: LruCache<Ino, (XattrSet, Stamp)>,
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero capacity")
}

impl MetaCache {
    pub fn new(entries: usize) -> MetaCache {
        MetaCache {
            attrs: LruCache::new(cap(entries)),
            names: LruCache::new(cap(entries)),
            dirs: LruCache::new(cap((entries / 16).max(16))),
            links: LruCache::new(cap((entries / 16).max(16))),
            xattrs: LruCache::new(cap(entries)),
        }
    }

    pub fn xattrs(&mut self, ino: Ino) -> Option<(XattrSet, Stamp)> {
        self.xattrs.get(&ino).cloned()
    }

    pub fn put_xattrs(&mut self, ino: Ino, set: XattrSet, stamp: Stamp) {
        self.xattrs.put(ino, (set, stamp));
    }

    /// Only the extended attributes of `ino` (after our own change of them, when the
    /// cached set cannot be brought up to date).
    pub fn forget_xattrs(&mut self, ino: Ino) {
        self.xattrs.pop(&ino);
    }

    pub fn attr(&mut self, ino: Ino) -> Option<(Attr, Stamp)> {
        self.attrs.get(&ino).cloned()
    }

    pub fn put_attr(&mut self, attr: Attr, stamp: Stamp) {
        self.attrs.put(attr.ino, (attr, stamp));
    }

    pub fn name(&mut self, parent: Ino, name: &[u8]) -> Option<(Ino, Stamp)> {
        self.names.get(&(parent, name.to_vec())).copied()
    }

    pub fn put_name(&mut self, parent: Ino, name: Vec<u8>, ino: Ino, stamp: Stamp) {
        self.names.put((parent, name), (ino, stamp));
    }

    pub fn dir(&mut self, ino: Ino) -> Option<(Arc<Vec<DirItem>>, Stamp)> {
        self.dirs.get(&ino).cloned()
    }

    pub fn put_dir(&mut self, ino: Ino, items: Arc<Vec<DirItem>>, stamp: Stamp) {
        self.dirs.put(ino, (items, stamp));
    }

    pub fn link(&mut self, ino: Ino) -> Option<Vec<u8>> {
        self.links.get(&ino).cloned()
    }

    pub fn put_link(&mut self, ino: Ino, target: Vec<u8>) {
        self.links.put(ino, target);
    }

    /// Our own new entry in `dir`: a listing we hold stays complete (the server sends us no
    /// break for our own change), kept in name order.
    pub fn insert_own(&mut self, dir: Ino, item: DirItem) {
        if let Some((items, _)) = self.dirs.get_mut(&dir) {
            let v = Arc::make_mut(items);
            match v.binary_search_by(|i| i.name.as_slice().cmp(&item.name)) {
                Ok(at) => v[at] = item,
                Err(at) => v.insert(at, item),
            }
        }
    }

    /// Our own removal of `name` from `dir`; returns the removed entry if it was listed.
    pub fn remove_own(&mut self, dir: Ino, name: &[u8]) -> Option<DirItem> {
        self.names.pop(&(dir, name.to_vec()));
        let (items, _) = self.dirs.get_mut(&dir)?;
        let at = items
            .binary_search_by(|i| i.name.as_slice().cmp(name))
            .ok()?;
        Some(Arc::make_mut(items).remove(at))
    }

    /// Only the attributes of `ino` (a directory's mtime after our own change to it).
    pub fn forget_attr(&mut self, ino: Ino) {
        self.attrs.pop(&ino);
    }

    /// The attributes (and, for a directory, the listing) of `ino` changed; a break does
    /// not say which, so its extended attributes go too.
    pub fn forget_ino(&mut self, ino: Ino) {
        self.attrs.pop(&ino);
        self.dirs.pop(&ino);
        self.xattrs.pop(&ino);
    }

    /// The entry `name` of `dir` changed: the name, the listing and the directory's own
    /// attributes (mtime, nlink) are stale.
    pub fn forget_entry(&mut self, dir: Ino, name: &[u8]) {
        if let Some((child, _)) = self.names.pop(&(dir, name.to_vec())) {
            self.attrs.pop(&child);
        }
        self.forget_ino(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_common::{FileKind, Timestamp};

    fn attr(ino: Ino) -> Attr {
        Attr {
            ino,
            kind: FileKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            nlink: 1,
            size: 0,
            atime: Timestamp::now(),
            mtime: Timestamp::now(),
            ctime: Timestamp::now(),
            version: 1,
            blob: None,
            rdev: 0,
        }
    }

    #[test]
    fn small_files_stay_within_their_budget_least_recent_first() {
        let mut s = SmallFiles::new(10);
        s.put(1, 1, Arc::new(vec![0; 4]));
        s.put(2, 1, Arc::new(vec![0; 4]));
        s.get(1, 1);
        s.put(3, 1, Arc::new(vec![0; 4]));
        assert!(s.get(2, 1).is_none(), "least recently used kept");
        assert!(s.get(1, 1).is_some() && s.get(3, 1).is_some());
        s.forget(1, 1);
        assert!(s.get(1, 1).is_none());
    }

    #[test]
    fn own_changes_keep_a_listing_complete_and_sorted() {
        let mut m = MetaCache::new(64);
        m.put_dir(1, Arc::new(vec![]), Stamp(3));
        for n in ["b", "a", "c"] {
            m.insert_own(
                1,
                DirItem {
                    name: n.as_bytes().to_vec(),
                    attr: attr(9),
                },
            );
        }
        assert!(m.remove_own(1, b"b").is_some());
        assert!(m.remove_own(1, b"zz").is_none());
        let (items, stamp) = m.dir(1).unwrap();
        let names: Vec<&[u8]> = items.iter().map(|i| i.name.as_slice()).collect();
        assert_eq!(names, [b"a".as_slice(), b"c".as_slice()]);
        assert_eq!(stamp, Stamp(3));
    }

    #[test]
    fn an_entry_break_forgets_the_name_its_inode_and_the_listing() {
        let mut m = MetaCache::new(64);
        m.put_attr(attr(1), Stamp(3));
        m.put_attr(attr(7), Stamp(3));
        m.put_name(1, b"f".to_vec(), 7, Stamp(3));
        m.put_dir(1, Arc::new(vec![]), Stamp(3));
        m.forget_entry(1, b"f");
        assert!(m.name(1, b"f").is_none());
        assert!(m.attr(7).is_none());
        assert!(m.attr(1).is_none());
        assert!(m.dir(1).is_none());
    }
}
