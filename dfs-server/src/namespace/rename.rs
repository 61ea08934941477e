//! rename(2) with RENAME_NOREPLACE and RENAME_EXCHANGE over the inode namespace: a rename
//! is a change of directory entries only, so moving a directory costs the same for any size.
//!
//! Owns: the rename rules. Must not open transactions or commit.

use super::ops::{dir_of, drop_link, touch_dir};
use super::store::Writer;
use super::{check_name, NsOutcome};
use dfs_common::proto::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use dfs_common::{FileKind, FsError, Ino, Timestamp, ROOT_INO};

/// Invalid if directory `dir` lies inside the subtree of directory `ancestor` (or is it).
fn check_not_within(w: &Writer<'_>, dir: Ino, ancestor: Ino) -> Result<(), FsError> {
    let mut cur = dir;
    // Bounded walk: a corrupt parent chain must not hang the server.
    for _ in 0..1_000_000 {
        if cur == ancestor {
            return Err(FsError::Invalid(
                "cannot move a directory into its own subtree".into(),
            ));
        }
        if cur == ROOT_INO {
            return Ok(());
        }
        cur = w.must(cur)?.parent;
    }
    Err(FsError::Io(
        "directory parent chain does not reach the root".into(),
    ))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn rename(
    w: &mut Writer<'_>,
    parent: Ino,
    name: Vec<u8>,
    new_parent: Ino,
    new_name: Vec<u8>,
    flags: u32,
    now: Timestamp,
) -> Result<NsOutcome, FsError> {
    check_name(&name)?;
    check_name(&new_name)?;
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0 {
        return Err(FsError::Invalid(format!("unknown rename flags {flags:#x}")));
    }
    let noreplace = flags & RENAME_NOREPLACE != 0;
    let exchange = flags & RENAME_EXCHANGE != 0;
    if noreplace && exchange {
        return Err(FsError::Invalid(
            "RENAME_NOREPLACE and RENAME_EXCHANGE together".into(),
        ));
    }
    dir_of(w, parent)?;
    dir_of(w, new_parent)?;
    let src = w.entry(parent, &name)?.ok_or(FsError::NotFound)?;
    let dst = w.entry(new_parent, &new_name)?;
    if noreplace && dst.is_some() {
        return Err(FsError::Exists);
    }
    if exchange && dst.is_none() {
        return Err(FsError::NotFound);
    }
    // The same name, or two names of one inode: nothing to do (POSIX).
    if (parent == new_parent && name == new_name) || dst == Some(src) {
        return Ok(NsOutcome::default());
    }
    let mut src_rec = w.must(src)?;
    let src_is_dir = src_rec.attr.kind == FileKind::Dir;
    if src_is_dir && parent != new_parent {
        check_not_within(w, new_parent, src)?;
    }
    let mut out = NsOutcome {
        changed_entries: vec![(parent, name.clone()), (new_parent, new_name.clone())],
        ..NsOutcome::default()
    };
    out.changed_inos.push(parent);
    if new_parent != parent {
        out.changed_inos.push(new_parent);
    }
    out.changed_inos.push(src);

    if exchange {
        let t = dst.expect("checked above");
        let mut t_rec = w.must(t)?;
        let t_is_dir = t_rec.attr.kind == FileKind::Dir;
        if t_is_dir && parent != new_parent {
            check_not_within(w, parent, t)?;
        }
        w.put_entry(parent, &name, t)?;
        w.put_entry(new_parent, &new_name, src)?;
        src_rec.attr.ctime = now;
        t_rec.attr.ctime = now;
        if parent != new_parent {
            if src_is_dir {
                src_rec.parent = new_parent;
            }
            if t_is_dir {
                t_rec.parent = parent;
            }
        }
        w.put_inode(&src_rec)?;
        w.put_inode(&t_rec)?;
        out.changed_inos.push(t);
        adjust_parents(w, parent, new_parent, src_is_dir, t_is_dir, false, now)?;
        return Ok(out);
    }

    let mut target_was_dir = false;
    if let Some(t) = dst {
        let t_rec = w.must(t)?;
        let t_is_dir = t_rec.attr.kind == FileKind::Dir;
        match (src_is_dir, t_is_dir) {
            (false, true) => return Err(FsError::IsDir),
            (true, false) => return Err(FsError::NotDir),
            (true, true) => {
                if !w.dir_is_empty(t)? {
                    return Err(FsError::NotEmpty);
                }
                w.del_inode(t)?;
                target_was_dir = true;
            }
            (false, false) => drop_link(w, t_rec, now, &mut out)?,
        }
        out.changed_inos.push(t);
    }
    w.del_entry(parent, &name)?;
    w.put_entry(new_parent, &new_name, src)?;
    src_rec.attr.ctime = now;
    if src_is_dir {
        src_rec.parent = new_parent;
    }
    w.put_inode(&src_rec)?;
    adjust_parents(
        w,
        parent,
        new_parent,
        src_is_dir,
        false,
        target_was_dir,
        now,
    )?;
    Ok(out)
}

/// Link counts and times of the two parent directories after a rename or an exchange:
/// `moved_dir` went from `parent` to `new_parent`, `back_dir` from `new_parent` to
/// `parent` (exchange), `removed_dir` was a directory in `new_parent` that was replaced.
fn adjust_parents(
    w: &mut Writer<'_>,
    parent: Ino,
    new_parent: Ino,
    moved_dir: bool,
    back_dir: bool,
    removed_dir: bool,
    now: Timestamp,
) -> Result<(), FsError> {
    if parent == new_parent {
        let mut d = w.must(parent)?;
        if removed_dir {
            d.attr.nlink = d.attr.nlink.saturating_sub(1).max(2);
        }
        touch_dir(&mut d, now);
        return w.put_inode(&d);
    }
    let mut sd = w.must(parent)?;
    let mut dd = w.must(new_parent)?;
    let (up_sd, down_sd) = (back_dir as u32, moved_dir as u32);
    let (up_dd, down_dd) = (moved_dir as u32, back_dir as u32 + removed_dir as u32);
    sd.attr.nlink = (sd.attr.nlink + up_sd).saturating_sub(down_sd).max(2);
    dd.attr.nlink = (dd.attr.nlink + up_dd).saturating_sub(down_dd).max(2);
    touch_dir(&mut sd, now);
    touch_dir(&mut dd, now);
    w.put_inode(&sd)?;
    w.put_inode(&dd)
}
