//! The mutating commands of the namespace (all but rename, which has its own file): the
//! POSIX rules for create, mkdir, symlink, link, unlink, rmdir, setattr and stores.
//!
//! Owns: the rules. Must not open transactions or commit (the caller does), nor read clocks.

use super::store::{InodeRecord, Writer};
use super::{check_name, Contents, NsCommand, NsOutcome, DIR_SIZE, TARGET_MAX};
use dfs_common::{Attr, FileKind, FsError, Ino, Timestamp};

pub(super) fn apply(w: &mut Writer<'_>, cmd: NsCommand) -> Result<NsOutcome, FsError> {
    match cmd {
        NsCommand::Create {
            parent,
            name,
            mode,
            uid,
            gid,
            exclusive,
            now,
        } => create(w, parent, name, mode, uid, gid, exclusive, now),
        NsCommand::Mkdir {
            parent,
            name,
            mode,
            uid,
            gid,
            now,
        } => {
            let attr = new_attr(FileKind::Dir, mode, uid, gid, now);
            add_new(w, parent, name, attr, None, now)
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
            let mut attr = new_attr(FileKind::Symlink, 0o777, uid, gid, now);
            attr.size = target.len() as u64;
            add_new(w, parent, name, attr, Some(target), now)
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
        NsCommand::SetAttr {
            ino,
            mode,
            uid,
            gid,
            atime,
            mtime,
            contents,
            now,
        } => {
            let mut rec = w.must(ino)?;
            let mut out = NsOutcome::default();
            let mut changed = false;
            if let Some(c) = contents {
                set_contents(w, &mut rec, c, now, &mut out)?;
                changed = true;
            }
            if let Some(m) = mode {
                rec.attr.mode = m & 0o7777;
                changed = true;
            }
            if let Some(u) = uid {
                rec.attr.uid = u;
                changed = true;
            }
            if let Some(g) = gid {
                rec.attr.gid = g;
                changed = true;
            }
            if let Some(t) = atime {
                rec.attr.atime = t;
                changed = true;
            }
            if let Some(t) = mtime {
                rec.attr.mtime = t;
                changed = true;
            }
            if changed {
                rec.attr.ctime = now;
                w.put_inode(&rec)?;
                out.changed_inos.push(ino);
            }
            out.attr = Some(rec.attr);
            Ok(out)
        }
        NsCommand::CommitBlob {
            ino,
            contents,
            mtime,
            mode,
            now,
        } => {
            let mut rec = w.must(ino)?;
            let mut out = NsOutcome::default();
            set_contents(w, &mut rec, contents, now, &mut out)?;
            if let Some(mtime) = mtime {
                rec.attr.mtime = mtime;
            }
            if let Some(mode) = mode {
                rec.attr.mode = mode & 0o7777;
            }
            w.put_inode(&rec)?;
            out.changed_inos.push(ino);
            out.attr = Some(rec.attr);
            Ok(out)
        }
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

/// Attributes of a new inode (its number is filled in by `add_new`).
fn new_attr(kind: FileKind, mode: u32, uid: u32, gid: u32, now: Timestamp) -> Attr {
    Attr {
        ino: 0,
        kind,
        mode: mode & 0o7777,
        uid,
        gid,
        nlink: if kind == FileKind::Dir { 2 } else { 1 },
        size: if kind == FileKind::Dir { DIR_SIZE } else { 0 },
        atime: now,
        mtime: now,
        ctime: now,
        version: 1,
        blob: None,
        rdev: 0,
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

/// Switches a regular file's contents; version + 1, mtime = ctime = now.
fn set_contents(
    w: &mut Writer<'_>,
    rec: &mut InodeRecord,
    c: Contents,
    now: Timestamp,
    out: &mut NsOutcome,
) -> Result<(), FsError> {
    match rec.attr.kind {
        FileKind::File => {}
        FileKind::Dir => return Err(FsError::IsDir),
        _ => return Err(FsError::Invalid("not a regular file".into())),
    }
    if let Some(base) = c.base_version {
        if base != rec.attr.version {
            return Err(FsError::Busy(format!(
                "file changed meanwhile (version {} not {base})",
                rec.attr.version
            )));
        }
    }
    if c.blob.is_none() && c.size != 0 {
        return Err(FsError::Invalid("non-empty contents without a blob".into()));
    }
    if let Some(new) = &c.blob {
        w.blob_ref(new)?;
    }
    if let Some(old) = rec.attr.blob.take() {
        if w.blob_unref(&old, now)? {
            out.unreferenced.push(old);
        }
    }
    rec.attr.blob = c.blob;
    rec.attr.size = c.size;
    rec.attr.version += 1;
    rec.attr.mtime = now;
    rec.attr.ctime = now;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn create(
    w: &mut Writer<'_>,
    parent: Ino,
    name: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
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
    let attr = new_attr(FileKind::File, mode, uid, gid, now);
    add_new(w, parent, name, attr, None, now)
}

/// Adds a new inode under a new name in `parent`.
fn add_new(
    w: &mut Writer<'_>,
    parent: Ino,
    name: Vec<u8>,
    mut attr: Attr,
    target: Option<Vec<u8>>,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    check_name(&name)?;
    let mut dir = dir_of(w, parent)?;
    if w.entry(parent, &name)?.is_some() {
        return Err(FsError::Exists);
    }
    attr.ino = w.alloc_ino()?;
    let is_dir = attr.kind == FileKind::Dir;
    let rec = InodeRecord {
        attr,
        parent: if is_dir { parent } else { 0 },
        target,
    };
    w.put_inode(&rec)?;
    w.put_entry(parent, &name, rec.attr.ino)?;
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
