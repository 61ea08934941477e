//! The inode record as stored in the `inodes` table, and its versions on disk.
//!
//! A record is bincode, and bincode has no field names: a new field of `Attr` changes the
//! layout. So records carry a version: since `Attr` gained `rdev`, a record is
//! `RECORD_MARKER`, a version byte, then the bincode of `InodeRecord`. Records written by
//! earlier releases have no marker (they start with the varint of the inode number, and
//! bincode's varint never starts with 0xFF) and are read through their old layout
//! (`InodeRecordV0`), with `rdev` 0. A record is written in the newest version whenever
//! its inode changes.
//!
//! Owns: `InodeRecord` and its encodings. Must not open tables or decide POSIX rules.

use dfs_common::{codec, Attr, BlobId, FileKind, FsError, Ino, Timestamp};
use serde::{Deserialize, Serialize};

/// First byte of a versioned record: no record of the unversioned layout starts with it.
const RECORD_MARKER: u8 = 0xFF;
/// The version `encode` writes: the layout with `Attr::rdev`.
const RECORD_VERSION: u8 = 1;

/// One inode as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeRecord {
    pub attr: Attr,
    /// The directory holding this directory (itself for the root); 0 for non-directories,
    /// which may have several names.
    pub parent: Ino,
    /// The target of a symbolic link.
    pub target: Option<Vec<u8>>,
}

/// `Attr` as releases before special files stored it (no `rdev`).
#[derive(Serialize, Deserialize)]
struct AttrV0 {
    ino: Ino,
    kind: FileKind,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    size: u64,
    atime: Timestamp,
    mtime: Timestamp,
    ctime: Timestamp,
    version: u64,
    blob: Option<BlobId>,
}

/// `InodeRecord` as releases before special files stored it, without a marker.
#[derive(Serialize, Deserialize)]
struct InodeRecordV0 {
    attr: AttrV0,
    parent: Ino,
    target: Option<Vec<u8>>,
}

impl From<InodeRecordV0> for InodeRecord {
    fn from(old: InodeRecordV0) -> InodeRecord {
        let a = old.attr;
        InodeRecord {
            attr: Attr {
                ino: a.ino,
                kind: a.kind,
                mode: a.mode,
                uid: a.uid,
                gid: a.gid,
                nlink: a.nlink,
                size: a.size,
                atime: a.atime,
                mtime: a.mtime,
                ctime: a.ctime,
                version: a.version,
                blob: a.blob,
                rdev: 0,
            },
            parent: old.parent,
            target: old.target,
        }
    }
}

/// The stored form of `rec`, in the newest version.
pub fn encode(rec: &InodeRecord) -> Vec<u8> {
    let mut out = vec![RECORD_MARKER, RECORD_VERSION];
    out.extend_from_slice(&codec::encode(rec));
    out
}

/// Reads a stored record of any version.
pub fn decode(bytes: &[u8]) -> Result<InodeRecord, FsError> {
    match bytes {
        [RECORD_MARKER, RECORD_VERSION, rest @ ..] => codec::decode(rest),
        [RECORD_MARKER, v, ..] => Err(FsError::Io(format!(
            "inode record of version {v}, written by a newer release"
        ))),
        old => codec::decode::<InodeRecordV0>(old).map(InodeRecord::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regular file as the release before special files stored it: ino 5, mode 0644,
    /// owner 1000:1000, 1 link, 3 bytes, times (100 s, 7 ns), version 2, blob 0xab…,
    /// parent 0, no target. Written out by hand from bincode's varint rules (values of 251
    /// and up are 0xfb + u16; i64 zigzagged), so it does not depend on this file's structs.
    fn old_file_bytes() -> Vec<u8> {
        let mut b = vec![
            0x05, // ino
            0x00, // kind: File
            0xfb, 0xa4, 0x01, // mode 0o644 = 420
            0xfb, 0xe8, 0x03, // uid 1000
            0xfb, 0xe8, 0x03, // gid 1000
            0x01, // nlink
            0x03, // size
            0xc8, 0x07, // atime: secs 100 (zigzag 200), nanos 7
            0xc8, 0x07, // mtime
            0xc8, 0x07, // ctime
            0x02, // version
            0x01, // blob: Some
        ];
        b.extend_from_slice(&[0xab; 32]);
        b.extend_from_slice(&[0x00, 0x00]); // parent 0, target None
        b
    }

    #[test]
    fn records_of_the_old_layout_decode_with_rdev_zero() {
        let rec = decode(&old_file_bytes()).unwrap();
        let t = Timestamp {
            secs: 100,
            nanos: 7,
        };
        assert_eq!(
            rec,
            InodeRecord {
                attr: Attr {
                    ino: 5,
                    kind: FileKind::File,
                    mode: 0o644,
                    uid: 1000,
                    gid: 1000,
                    nlink: 1,
                    size: 3,
                    atime: t,
                    mtime: t,
                    ctime: t,
                    version: 2,
                    blob: Some(BlobId([0xab; 32])),
                    rdev: 0,
                },
                parent: 0,
                target: None,
            }
        );
        // A symlink: its target follows (Some, length 3, "abc").
        let mut link = old_file_bytes();
        link[1] = 0x02;
        let n = link.len();
        link.truncate(n - 1);
        link.extend_from_slice(&[0x01, 0x03, b'a', b'b', b'c']);
        let rec = decode(&link).unwrap();
        assert_eq!(rec.attr.kind, FileKind::Symlink);
        assert_eq!(rec.target.as_deref(), Some(&b"abc"[..]));
    }

    #[test]
    fn new_records_are_marked_and_round_trip_with_rdev() {
        let mut rec = decode(&old_file_bytes()).unwrap();
        rec.attr.kind = FileKind::CharDevice;
        rec.attr.blob = None;
        rec.attr.rdev = (1 << 8) | 3;
        let bytes = encode(&rec);
        assert_eq!(&bytes[..2], &[RECORD_MARKER, RECORD_VERSION]);
        assert_eq!(decode(&bytes).unwrap(), rec);
        let mut future = bytes;
        future[1] = RECORD_VERSION + 1;
        assert!(matches!(decode(&future), Err(FsError::Io(_))));
    }
}
