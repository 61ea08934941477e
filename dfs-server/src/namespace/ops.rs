//! The mutating commands of the namespace and the POSIX rules for names and links: create,
//! mkdir, mknod, symlink, link, unlink, rmdir. Other commands have their own files: rename
//! (`rename`), setattr and stores (`attrs`), extended attributes (`xattr`); what a new
//! inode takes from its directory is `inherit`'s.
//!
//! Owns: the rules. Must not open transactions or commit (the caller does), nor read clocks.

use super::inherit;
use super::store::{InodeRecord, Writer};
use super::{check_name, NsCommand, NsOutcome, DIR_SIZE, TARGET_MAX};
use dfs_common::{Attr, FileKind, FsError, Ino, Timestamp};

pub(super) fn apply(w: &mut Writer<'_>, cmd: NsCommand) -> Result<NsOutcome, FsError> {
    match cmd {
        NsCommand::Create {
            parent,
            name,
            mode,
            umask,
            uid,
            gid,
            exclusive,
            now,
        } => {
            let newborn = Newborn::plain(FileKind::File, mode, umask, uid, gid);
            create(w, parent, name, newborn, exclusive, now)
        }
        NsCommand::Mkdir {
            parent,
            name,
            mode,
            umask,
            uid,
            gid,
            now,
        } => {
            let newborn = Newborn::plain(FileKind::Dir, mode, umask, uid, gid);
            add_new(w, parent, name, newborn, None, now)
        }
        NsCommand::Symlink {
            parent,
            name,
            target,
            uid,
            gid,
            now,
        } => {
            if target.is_empty() {
                return Err(FsError::NotFound);
            }
            if target.len() > TARGET_MAX {
                return Err(FsError::NameTooLong);
            }
            if target.contains(&0) {
                return Err(FsError::Invalid("symlink target contains NUL".into()));
            }
            let newborn = Newborn::plain(FileKind::Symlink, 0o777, 0, uid, gid);
            add_new(w, parent, name, newborn, Some(target), now)
        }
        NsCommand::Link {
            ino,
            new_parent,
            new_name,
            now,
        } => link(w, ino, new_parent, new_name, now),
        NsCommand::Unlink { parent, name, now } => remove(w, parent, name, false, now),
        NsCommand::Rmdir { parent, name, now } => remove(w, parent, name, true, now),
        NsCommand::Rename {
            parent,
            name,
            new_parent,
            new_name,
            flags,
            now,
        } => super::rename::rename(w, parent, name, new_parent, new_name, flags, now),
        NsCommand::Mknod {
            parent,
            name,
            kind,
            mode,
            umask,
            rdev,
            uid,
            gid,
            now,
        } => {
            let newborn = Newborn {
                kind,
                mode,
                umask,
                uid,
                gid,
                rdev: super::special::device_of(kind, rdev)?,
            };
            add_new(w, parent, name, newborn, None, now)
        }
        NsCommand::SetAttr {
            ino,
            mode,
            uid,
            gid,
            atime,
            mtime,
            contents,
            kill_suid,
            now,
        } => super::attrs::set_attr(
            w,
            ino,
            super::attrs::AttrEdit {
                mode,
                uid,
                gid,
                atime,
                mtime,
                contents,
                kill_suid,
            },
            now,
        ),
        NsCommand::CommitBlob {
            ino,
            contents,
            mtime,
            mode,
            kill_suid,
            now,
        } => super::attrs::commit_blob(w, ino, contents, mtime, mode, kill_suid, now),
        NsCommand::SetXattr {
            ino,
            name,
            value,
            how,
            drop_sgid,
            now,
        } => super::xattr::set(w, ino, name, value, how, drop_sgid, now),
        NsCommand::RemoveXattr { ino, name, now } => super::xattr::remove(w, ino, name, now),
        NsCommand::AdoptBlobs { blobs } => {
            for (blob, since) in &blobs {
                w.adopt_blob(blob, *since)?;
            }
            Ok(NsOutcome::default())
        }
        NsCommand::ForgetBlobs { blobs } => {
            for blob in &blobs {
                w.forget_blob(blob)?;
            }
            Ok(NsOutcome::default())
        }
    }
}

/// A new inode as its creator asks for it, before its directory has a say
/// (`inherit`).
pub(super) struct Newborn {
    pub kind: FileKind,
    /// The caller's mode argument (permission bits, 0o7777).
    pub mode: u32,
    /// The caller's umask (ignored under a default ACL).
    pub umask: u32,
    pub uid: u32,
    pub gid: u32,
    /// The device of a device node, else 0.
    pub rdev: u32,
}

impl Newborn {
    fn plain(kind: FileKind, mode: u32, umask: u32, uid: u32, gid: u32) -> Newborn {
        Newborn {
            kind,
            mode,
            umask,
            uid,
            gid,
            rdev: 0,
        }
    }
}

/// The directory `ino`: NotFound if missing, NotDir if it is something else.
pub(super) fn dir_of(w: &Writer<'_>, ino: Ino) -> Result<InodeRecord, FsError> {
    let rec = w.must(ino)?;
    if rec.attr.kind != FileKind::Dir {
        return Err(FsError::NotDir);
    }
    Ok(rec)
}

/// A directory's entries changed: new mtime/ctime and a new version.
pub(super) fn touch_dir(rec: &mut InodeRecord, now: Timestamp) {
    rec.attr.mtime = now;
    rec.attr.ctime = now;
    rec.attr.version += 1;
}

fn create(
    w: &mut Writer<'_>,
    parent: Ino,
    name: Vec<u8>,
    newborn: Newborn,
    exclusive: bool,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    check_name(&name)?;
    dir_of(w, parent)?;
    if let Some(existing) = w.entry(parent, &name)? {
        if exclusive {
            return Err(FsError::Exists);
        }
        let rec = w.must(existing)?;
        return match rec.attr.kind {
            FileKind::File => Ok(NsOutcome {
                attr: Some(rec.attr),
                ..NsOutcome::default()
            }),
            FileKind::Dir => Err(FsError::IsDir),
            _ => Err(FsError::Exists),
        };
    }
    add_new(w, parent, name, newborn, None, now)
}

/// Adds a new inode under a new name in `parent`, with what it inherits from `parent`.
fn add_new(
    w: &mut Writer<'_>,
    parent: Ino,
    name: Vec<u8>,
    newborn: Newborn,
    target: Option<Vec<u8>>,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    check_name(&name)?;
    let mut dir = dir_of(w, parent)?;
    if w.entry(parent, &name)?.is_some() {
        return Err(FsError::Exists);
    }
    let kind = newborn.kind;
    let inherited = inherit::from_dir(w, &dir, kind, newborn.mode, newborn.umask, newborn.gid)?;
    let is_dir = kind == FileKind::Dir;
    let attr = Attr {
        ino: w.alloc_ino()?,
        kind,
        mode: inherited.mode,
        uid: newborn.uid,
        gid: inherited.gid,
        nlink: if is_dir { 2 } else { 1 },
        size: match (&target, is_dir) {
            (Some(t), _) => t.len() as u64,
            (None, true) => DIR_SIZE,
            (None, false) => 0,
        },
        atime: now,
        mtime: now,
        ctime: now,
        version: 1,
        blob: None,
        rdev: newborn.rdev,
    };
    let rec = InodeRecord {
        attr,
        parent: if is_dir { parent } else { 0 },
        target,
    };
    w.put_inode(&rec)?;
    w.put_entry(parent, &name, rec.attr.ino)?;
    inherited.store_acls(w, rec.attr.ino)?;
    if is_dir {
        dir.attr.nlink += 1;
    }
    touch_dir(&mut dir, now);
    w.put_inode(&dir)?;
    Ok(NsOutcome {
        attr: Some(rec.attr),
        changed_inos: vec![parent],
        changed_entries: vec![(parent, name)],
        unreferenced: Vec::new(),
    })
}

fn link(
    w: &mut Writer<'_>,
    ino: Ino,
    new_parent: Ino,
    new_name: Vec<u8>,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    check_name(&new_name)?;
    let mut rec = w.must(ino)?;
    if rec.attr.kind == FileKind::Dir {
        return Err(FsError::NotPermitted("hard link to a directory".into()));
    }
    let mut dir = dir_of(w, new_parent)?;
    if w.entry(new_parent, &new_name)?.is_some() {
        return Err(FsError::Exists);
    }
    if rec.attr.nlink == u32::MAX {
        return Err(FsError::NotPermitted("too many links".into()));
    }
    rec.attr.nlink += 1;
    rec.attr.ctime = now;
    w.put_inode(&rec)?;
    w.put_entry(new_parent, &new_name, ino)?;
    touch_dir(&mut dir, now);
    w.put_inode(&dir)?;
    Ok(NsOutcome {
        attr: Some(rec.attr),
        changed_inos: vec![new_parent, ino],
        changed_entries: vec![(new_parent, new_name)],
        unreferenced: Vec::new(),
    })
}

/// Unlink (`dir == false`) or rmdir (`dir == true`) of `name` in `parent`.
fn remove(
    w: &mut Writer<'_>,
    parent: Ino,
    name: Vec<u8>,
    want_dir: bool,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    check_name(&name)?;
    let mut dir = dir_of(w, parent)?;
    let child = w.entry(parent, &name)?.ok_or(FsError::NotFound)?;
    let rec = w.must(child)?;
    let is_dir = rec.attr.kind == FileKind::Dir;
    if want_dir && !is_dir {
        return Err(FsError::NotDir);
    }
    if !want_dir && is_dir {
        return Err(FsError::IsDir);
    }
    if is_dir && !w.dir_is_empty(child)? {
        return Err(FsError::NotEmpty);
    }
    let mut out = NsOutcome {
        changed_inos: vec![parent, child],
        changed_entries: vec![(parent, name.clone())],
        ..NsOutcome::default()
    };
    w.del_entry(parent, &name)?;
    if is_dir {
        w.del_inode(child)?;
        dir.attr.nlink = dir.attr.nlink.saturating_sub(1).max(2);
    } else {
        drop_link(w, rec, now, &mut out)?;
    }
    touch_dir(&mut dir, now);
    w.put_inode(&dir)?;
    Ok(out)
}

/// One name of non-directory `rec` went away: nlink - 1; at 0 the inode and its blob
/// reference go too.
pub(super) fn drop_link(
    w: &mut Writer<'_>,
    mut rec: InodeRecord,
    now: Timestamp,
    out: &mut NsOutcome,
) -> Result<(), FsError> {
    rec.attr.nlink = rec.attr.nlink.saturating_sub(1);
    if rec.attr.nlink == 0 {
        w.del_inode(rec.attr.ino)?;
        if let Some(blob) = &rec.attr.blob {
            if w.blob_unref(blob, now)? {
                out.unreferenced.push(*blob);
            }
        }
    } else {
        rec.attr.ctime = now;
        w.put_inode(&rec)?;
    }
    Ok(())
}
