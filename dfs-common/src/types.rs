//! Ids and attributes shared by every service: inode numbers, blob ids, file kinds, times.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An inode number. Inode numbers are never reused within one namespace.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;

/// Longest file name, in bytes, that the namespace accepts (POSIX NAME_MAX).
pub const NAME_MAX: usize = 255;

/// The id of an immutable blob: the SHA-256 of its contents.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    pub fn to_hex(&self) -> String {
        crate::codec::to_hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<BlobId> {
        let bytes = crate::codec::from_hex(s)?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(BlobId(arr))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The kind of an inode. New kinds go at the end: the variant index is what bincode stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// A named pipe. Opened on a mount it is local to that machine (as on NFS): only the
    /// inode lives in the namespace.
    Fifo,
    /// A unix domain socket's name; local to the machine that binds it, like a fifo.
    Socket,
    /// A character device node (`rdev` names the device).
    CharDevice,
    /// A block device node (`rdev` names the device).
    BlockDevice,
}

impl FileKind {
    /// A fifo, socket or device node: an inode with no contents of its own.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            FileKind::Fifo | FileKind::Socket | FileKind::CharDevice | FileKind::BlockDevice
        )
    }
}

/// Seconds and nanoseconds since the Unix epoch (may be negative for old files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    pub fn from_system(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Timestamp { secs, nanos }
            }
        }
    }

    pub fn to_system(self) -> SystemTime {
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::new(self.secs as u64, self.nanos)
        } else {
            UNIX_EPOCH - Duration::new((-self.secs) as u64, 0) + Duration::new(0, self.nanos)
        }
    }
}

/// The attributes of one inode, as the directory service holds them.
///
/// `version` starts at 1 and increases on every change of contents (store, truncate);
/// `blob` is `None` for an empty file, a directory, a symlink or a special file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    /// Permission bits only (0o7777); the kind is in `kind`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub version: u64,
    pub blob: Option<BlobId>,
    /// The device a character or block device node names (Linux `dev_t` as FUSE carries
    /// it: major << 8 | minor, with the high bits of both above); 0 for other kinds.
    pub rdev: u32,
}

/// How setattr changes a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetTime {
    Now,
    At(Timestamp),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trips_before_and_after_epoch() {
        for t in [
            UNIX_EPOCH + Duration::new(1_700_000_000, 123),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
        ] {
            assert_eq!(Timestamp::from_system(t).to_system(), t);
        }
    }

    #[test]
    fn blob_id_hex_round_trips() {
        let id = BlobId([7u8; 32]);
        assert_eq!(BlobId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(BlobId::from_hex("zz"), None);
    }
}
