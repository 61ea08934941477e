//! Changes of an existing inode's attributes and contents: setattr (chmod, chown, times,
//! truncate) and stores, with Linux's rules for the set-id bits: a change of owner or
//! group of a non-directory clears S_ISUID, and S_ISGID if the group may execute the file
//! (whoever asks); so does a truncate or store the caller asks to clear them for (a writer
//! without CAP_FSETID; in a realm the server decides that for non-admins). Every change
//! sets ctime; a chmod keeps an access ACL in step (`xattr::chmod`).
//!
//! Owns: those rules. Must not open transactions or commit, nor read clocks.

use super::store::{InodeRecord, Writer};
use super::{xattr, Contents, NsOutcome};
use dfs_common::{FileKind, FsError, Ino, Timestamp};

const S_ISUID: u32 = 0o4000;
pub const S_ISGID: u32 = 0o2000;
const S_IXGRP: u32 = 0o010;

/// `mode` without the set-id bits a write or a change of owner takes away (Linux's
/// `should_remove_suid`): S_ISUID, and S_ISGID when the group may execute (without group
/// execute, S_ISGID marks mandatory locking and stays).
fn without_setid(mode: u32) -> u32 {
    let mut m = mode & !S_ISUID;
    if m & S_IXGRP != 0 {
        m &= !S_ISGID;
    }
    m
}

/// What a `NsCommand::SetAttr` changes (`None`: leave as is).
pub(super) struct AttrEdit {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Timestamp>,
    pub mtime: Option<Timestamp>,
    pub contents: Option<Contents>,
    /// Clear the set-id bits as a write does (a truncate by a writer without CAP_FSETID).
    pub kill_suid: bool,
}

/// Clears the set-id bits of a non-directory; true if that changed the mode.
fn kill_setid(rec: &mut InodeRecord) -> bool {
    if rec.attr.kind == FileKind::Dir {
        return false;
    }
    let m = without_setid(rec.attr.mode);
    let changed = m != rec.attr.mode;
    rec.attr.mode = m;
    changed
}

pub(super) fn set_attr(
    w: &mut Writer<'_>,
    ino: Ino,
    edit: AttrEdit,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    let AttrEdit {
        mode,
        uid,
        gid,
        atime,
        mtime,
        contents,
        kill_suid,
    } = edit;
    let mut rec = w.must(ino)?;
    let mut out = NsOutcome::default();
    let mut changed = false;
    if let Some(c) = contents {
        set_contents(w, &mut rec, c, now, &mut out)?;
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
    if kill_suid || uid.is_some() || gid.is_some() {
        changed |= kill_setid(&mut rec);
    }
    // An explicit mode in the same change is what the caller wants, set-id bits and all.
    if let Some(m) = mode {
        xattr::chmod(w, &mut rec, m)?;
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

/// A store: new contents (version + 1, ctime = now, mtime = the writer's or now), the
/// set-id bits cleared if asked, then the writer's chmod if it sent one.
pub(super) fn commit_blob(
    w: &mut Writer<'_>,
    ino: Ino,
    contents: Contents,
    mtime: Option<Timestamp>,
    mode: Option<u32>,
    kill_suid: bool,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    let mut rec = w.must(ino)?;
    let mut out = NsOutcome::default();
    set_contents(w, &mut rec, contents, now, &mut out)?;
    if let Some(mtime) = mtime {
        rec.attr.mtime = mtime;
    }
    if kill_suid {
        kill_setid(&mut rec);
    }
    if let Some(mode) = mode {
        xattr::chmod(w, &mut rec, mode)?;
    }
    w.put_inode(&rec)?;
    out.changed_inos.push(ino);
    out.attr = Some(rec.attr);
    Ok(out)
}

/// Switches a regular file's contents; version + 1, mtime = ctime = now. Anything but a
/// regular file has no contents: `IsDir` for a directory, `Invalid` for the rest.
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
