//! A fresh namespace in a temp dir and short forms of its commands, for the unit tests
//! of the namespace rules. Times are small whole seconds (`ts`), so a test can tell which
//! command set a time.

use super::*;
use dfs_common::proto::XattrSet;

pub fn ts(secs: i64) -> Timestamp {
    Timestamp { secs, nanos: 0 }
}

pub struct T {
    _dir: tempfile::TempDir,
    pub ns: Namespace,
}

pub fn fresh() -> T {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::open(&dir.path().join("meta.redb"), 0o1777, ts(1)).unwrap();
    T { _dir: dir, ns }
}

impl T {
    /// The helpers over a namespace opened elsewhere (its directory is the caller's).
    pub fn wrap(ns: Namespace) -> T {
        T {
            _dir: tempfile::tempdir().unwrap(),
            ns,
        }
    }
}

impl T {
    pub fn mkdir(&self, parent: Ino, name: &str) -> Result<Attr, FsError> {
        self.ns
            .apply(NsCommand::Mkdir {
                parent,
                name: name.into(),
                mode: 0o755,
                umask: 0,
                uid: 1,
                gid: 2,
                now: ts(10),
            })
            .map(|o| o.attr.unwrap())
    }
    pub fn create(&self, parent: Ino, name: &str, exclusive: bool) -> Result<Attr, FsError> {
        self.ns
            .apply(NsCommand::Create {
                parent,
                name: name.into(),
                mode: 0o644,
                umask: 0,
                uid: 1,
                gid: 2,
                exclusive,
                now: ts(10),
            })
            .map(|o| o.attr.unwrap())
    }
    pub fn unlink(&self, parent: Ino, name: &str) -> Result<NsOutcome, FsError> {
        self.ns.apply(NsCommand::Unlink {
            parent,
            name: name.into(),
            now: ts(20),
        })
    }
    pub fn rmdir(&self, parent: Ino, name: &str) -> Result<NsOutcome, FsError> {
        self.ns.apply(NsCommand::Rmdir {
            parent,
            name: name.into(),
            now: ts(20),
        })
    }
    pub fn rename(
        &self,
        p: Ino,
        n: &str,
        np: Ino,
        nn: &str,
        flags: u32,
    ) -> Result<NsOutcome, FsError> {
        self.ns.apply(NsCommand::Rename {
            parent: p,
            name: n.into(),
            new_parent: np,
            new_name: nn.into(),
            flags,
            now: ts(30),
        })
    }
    pub fn link(&self, ino: Ino, np: Ino, nn: &str) -> Result<NsOutcome, FsError> {
        self.ns.apply(NsCommand::Link {
            ino,
            new_parent: np,
            new_name: nn.into(),
            now: ts(40),
        })
    }
    pub fn store(&self, ino: Ino, byte: u8, size: u64) -> Result<NsOutcome, FsError> {
        self.ns.apply(NsCommand::CommitBlob {
            ino,
            mtime: None,
            mode: None,
            contents: Contents {
                blob: Some(BlobId([byte; 32])),
                size,
                base_version: None,
            },
            kill_suid: false,
            now: ts(50),
        })
    }
    pub fn attr(&self, ino: Ino) -> Attr {
        self.ns.getattr(ino).unwrap()
    }
    pub fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, FsError> {
        self.ns.lookup(parent, name.as_bytes())
    }
}

/// The time the helpers below stamp into their commands.
pub const LATER: i64 = 70;

impl T {
    /// A create with every field given; times `ts(10)`.
    pub fn create_with(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        umask: u32,
        (uid, gid): (u32, u32),
    ) -> Result<Attr, FsError> {
        self.ns
            .apply(NsCommand::Create {
                parent,
                name: name.into(),
                mode,
                umask,
                uid,
                gid,
                exclusive: true,
                now: ts(10),
            })
            .map(|o| o.attr.unwrap())
    }

    /// A mkdir with every field given; times `ts(10)`.
    pub fn mkdir_with(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        umask: u32,
        (uid, gid): (u32, u32),
    ) -> Result<Attr, FsError> {
        self.ns
            .apply(NsCommand::Mkdir {
                parent,
                name: name.into(),
                mode,
                umask,
                uid,
                gid,
                now: ts(10),
            })
            .map(|o| o.attr.unwrap())
    }

    /// A mknod by 1:2 with mode 0644 and no umask; times `ts(10)`.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &str,
        kind: FileKind,
        rdev: u32,
    ) -> Result<Attr, FsError> {
        self.ns
            .apply(NsCommand::Mknod {
                parent,
                name: name.into(),
                kind,
                mode: 0o644,
                umask: 0,
                rdev,
                uid: 1,
                gid: 2,
                now: ts(10),
            })
            .map(|o| o.attr.unwrap())
    }

    /// A setattr of nothing but what `edit` fills in; at `ts(LATER)`.
    pub fn setattr(&self, ino: Ino, edit: impl FnOnce(&mut Edit)) -> Result<Attr, FsError> {
        let mut e = Edit::default();
        edit(&mut e);
        self.ns
            .apply(NsCommand::SetAttr {
                ino,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                atime: None,
                mtime: None,
                contents: e.contents,
                kill_suid: e.kill_suid,
                now: ts(LATER),
            })
            .map(|o| o.attr.unwrap())
    }

    /// Extended attribute `name` set to `value`; at `ts(LATER)`.
    pub fn set_xattr(
        &self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        how: XattrSet,
    ) -> Result<NsOutcome, FsError> {
        self.ns.apply(NsCommand::SetXattr {
            ino,
            name: name.to_vec(),
            value: value.to_vec(),
            how,
            drop_sgid: false,
            now: ts(LATER),
        })
    }

    /// Extended attribute `name` removed; at `ts(LATER)`.
    pub fn remove_xattr(&self, ino: Ino, name: &[u8]) -> Result<NsOutcome, FsError> {
        self.ns.apply(NsCommand::RemoveXattr {
            ino,
            name: name.to_vec(),
            now: ts(LATER),
        })
    }

    /// The names of `ino`'s extended attributes, as strings.
    pub fn xattr_names(&self, ino: Ino) -> Vec<String> {
        self.ns
            .xattrs(ino)
            .unwrap()
            .into_iter()
            .map(|(n, _)| String::from_utf8(n).unwrap())
            .collect()
    }

    /// The value of `ino`'s extended attribute `name`.
    pub fn xattr(&self, ino: Ino, name: &[u8]) -> Option<Vec<u8>> {
        self.ns
            .xattrs(ino)
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// The parts of a setattr `T::setattr` sends.
#[derive(Default)]
pub struct Edit {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub contents: Option<Contents>,
    pub kill_suid: bool,
}
