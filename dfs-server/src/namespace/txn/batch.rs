//! The batch of a transaction's commit, inside the one write transaction `apply_tx` opens:
//! paths resolved from the root in order (so that `mkdir /a` then `put /a/b` works), the
//! preconditions checked against the state before the batch, then every operation as the
//! namespace command it stands for, all or nothing. Creates pass their modes with no umask
//! (a directory's default ACL and set-gid bit still apply).
//!
//! Each operation is checked against the caller's rights as the same request alone would
//! be (`auth::perm::rules`, against the state the batch has made so far, so the outcome
//! is a function of the command): search permission on every directory a path goes
//! through (preconditions too: a path the caller may not search is a failure, never
//! "absent"), write and search on a directory to create or remove in it (and the sticky
//! bit), write permission to put into an existing file, ownership to chmod (S_ISGID kept
//! only inside the file's group); new files are the caller's, and a put by a non-admin
//! clears set-id bits as a store does. The first operation refused fails the batch.
//!
//! Owns: path resolution and the batch rules. Must not commit, end the transaction
//! otherwise than through `Tables::end`, or touch blob files, locks or the clock.

use super::{owned, Stop, Tables, TxApplied, TxBatch};
use crate::auth::perm::rules::{self, checked, Target};
use crate::auth::Caller;
use crate::namespace::store::{InodeRecord, Writer};
use crate::namespace::xattr::stored_acl;
use crate::namespace::{check_name, ops, Contents, NsCommand, NsOutcome};
use dfs_common::proto::XATTR_POSIX_ACL_ACCESS;
use dfs_common::tx::{
    Actual, Committed, Expected, TxFailure, TxOp, TxStatus, DEFAULT_FILE_MODE, MAX_OPS,
};
use dfs_common::{Attr, BlobId, FileKind, FsError, Ino, Timestamp, ROOT_INO};
use std::collections::HashSet;

/// A batch's modes are what the caller wants: no umask.
const NO_UMASK: u32 = 0;

/// The components of a transaction path.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, FsError> {
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            return Err(FsError::Invalid("'..' in a transaction path".into()));
        }
        check_name(c)?;
        out.push(c);
    }
    Ok(out)
}

/// Walks `comps` from the root: `Ok(None)` if a component is missing or a directory on
/// the way is not one; `search` is asked about each directory before a name is looked up
/// in it, and its error stops the walk.
pub(super) fn walk(
    comps: &[&[u8]],
    mut entry: impl FnMut(Ino, &[u8]) -> Result<Option<Ino>, FsError>,
    mut kind: impl FnMut(Ino) -> Result<Option<FileKind>, FsError>,
    mut search: impl FnMut(Ino) -> Result<(), FsError>,
) -> Result<Option<Ino>, FsError> {
    let mut ino = ROOT_INO;
    for c in comps {
        if kind(ino)? != Some(FileKind::Dir) {
            return Ok(None);
        }
        search(ino)?;
        match entry(ino, c)? {
            Some(child) => ino = child,
            None => return Ok(None),
        }
    }
    Ok(Some(ino))
}

/// What a permission rule looks at for inode `ino`, as the batch has left it so far.
fn target(w: &Writer<'_>, ino: Ino) -> Result<Target, FsError> {
    let attr = w.must(ino)?.attr;
    let acl = stored_acl(w, ino, XATTR_POSIX_ACL_ACCESS)?;
    Ok(Target { attr, acl })
}

/// Applies `rule` to inode `ino` for `caller`; reads nothing for a caller not checked.
fn check(
    w: &Writer<'_>,
    caller: &Caller,
    ino: Ino,
    rule: impl FnOnce(&Caller, &Target) -> Result<(), FsError>,
) -> Result<(), FsError> {
    if !checked(caller) {
        return Ok(());
    }
    rule(caller, &target(w, ino)?)
}

/// The inode at `path` as `caller` walks to it (`PermissionDenied` on a directory it may
/// not search), `None` if absent.
fn lookup(w: &Writer<'_>, caller: &Caller, path: &[u8]) -> Result<Option<InodeRecord>, FsError> {
    let comps = components(path)?;
    let found = walk(
        &comps,
        |d, n| w.entry(d, n),
        |i| Ok(w.inode(i)?.map(|r| r.attr.kind)),
        |d| check(w, caller, d, rules::search),
    )?;
    match found {
        Some(ino) => w.inode(ino),
        None => Ok(None),
    }
}

/// The directory that holds `path` and the last name, as `caller` walks to it (search
/// permission on every directory, that one included): `NotFound` / `NotDir` if the
/// directory is missing or is not one.
fn parent_of(w: &Writer<'_>, caller: &Caller, path: &[u8]) -> Result<(Ino, Vec<u8>), FsError> {
    let comps = components(path)?;
    let Some((name, dirs)) = comps.split_last() else {
        return Err(FsError::Invalid(
            "the root directory cannot be changed this way".into(),
        ));
    };
    let mut ino = ROOT_INO;
    check(w, caller, ino, rules::search)?;
    for d in dirs {
        ino = w.entry(ino, d)?.ok_or(FsError::NotFound)?;
        if w.must(ino)?.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        check(w, caller, ino, rules::search)?;
    }
    Ok((ino, name.to_vec()))
}

/// The mode of a new non-directory in `parent` as `caller` asks for it (`rules`).
fn new_file_mode(w: &Writer<'_>, caller: &Caller, parent: Ino, mode: u32) -> Result<u32, FsError> {
    if !checked(caller) {
        return Ok(mode);
    }
    Ok(rules::new_file_mode(caller, &w.must(parent)?.attr, mode))
}

/// Checks the removal (or renaming away, or replacing) of `name` in `parent`.
fn removable(w: &Writer<'_>, caller: &Caller, parent: Ino, name: &[u8]) -> Result<(), FsError> {
    if !checked(caller) {
        return Ok(());
    }
    let victim = match w.entry(parent, name)? {
        Some(ino) => Some(w.must(ino)?.attr),
        None => None,
    };
    rules::remove_from(caller, &target(w, parent)?, victim.as_ref())
}

fn merge(out: &mut NsOutcome, o: NsOutcome) -> Option<Attr> {
    out.changed_inos.extend(o.changed_inos);
    out.changed_entries.extend(o.changed_entries);
    out.unreferenced.extend(o.unreferenced);
    o.attr
}

struct Ctx<'a> {
    staged: &'a [(BlobId, u64)],
    locked: &'a [Ino],
    caller: Caller,
    uid: u32,
    gid: u32,
    now: Timestamp,
    created: HashSet<Ino>,
    need: Vec<(Ino, u32)>,
    out: NsOutcome,
}

fn apply_op(
    w: &mut Writer<'_>,
    cx: &mut Ctx<'_>,
    i: u32,
    op: &TxOp,
) -> Result<Option<Attr>, FsError> {
    let now = cx.now;
    let caller = &cx.caller;
    match op {
        TxOp::Put { path, blob, mode } => {
            let (parent, name) = parent_of(w, caller, path)?;
            let size = match blob {
                None => 0,
                Some(b) => cx
                    .staged
                    .iter()
                    .find(|(s, _)| s == b)
                    .map(|(_, size)| *size)
                    .ok_or_else(|| {
                        FsError::Invalid(format!("blob {b} was not staged in this transaction"))
                    })?,
            };
            let ino = match w.entry(parent, &name)? {
                Some(ino) => {
                    match w.must(ino)?.attr.kind {
                        FileKind::File => {}
                        FileKind::Dir => return Err(FsError::IsDir),
                        _ => return Err(FsError::Invalid("not a regular file".into())),
                    }
                    check(w, caller, ino, rules::write)?;
                    if !cx.created.contains(&ino)
                        && !cx.locked.contains(&ino)
                        && !cx.need.iter().any(|(n, _)| *n == ino)
                    {
                        cx.need.push((ino, i));
                    }
                    ino
                }
                None => {
                    check(w, caller, parent, rules::create_in)?;
                    let mode = mode.unwrap_or(DEFAULT_FILE_MODE);
                    let cmd = NsCommand::Create {
                        parent,
                        name,
                        mode: new_file_mode(w, caller, parent, mode)?,
                        umask: NO_UMASK,
                        uid: cx.uid,
                        gid: cx.gid,
                        exclusive: true,
                        now,
                    };
                    let attr = merge(&mut cx.out, ops::apply(w, cmd)?)
                        .ok_or_else(|| FsError::Io("create returned no attributes".into()))?;
                    cx.created.insert(attr.ino);
                    if blob.is_none() {
                        return Ok(Some(attr));
                    }
                    attr.ino
                }
            };
            let cmd = NsCommand::CommitBlob {
                ino,
                contents: Contents {
                    blob: *blob,
                    size,
                    base_version: None,
                },
                mtime: None,
                mode: None,
                // A put is a store: by a non-admin it clears the set-id bits.
                kill_suid: rules::writes_clear_setid(caller),
                now,
            };
            Ok(merge(&mut cx.out, ops::apply(w, cmd)?))
        }
        TxOp::Create { path, mode } | TxOp::Mkdir { path, mode } => {
            let (parent, name) = parent_of(w, caller, path)?;
            check(w, caller, parent, rules::create_in)?;
            let cmd = if matches!(op, TxOp::Create { .. }) {
                NsCommand::Create {
                    parent,
                    name,
                    mode: new_file_mode(w, caller, parent, *mode)?,
                    umask: NO_UMASK,
                    uid: cx.uid,
                    gid: cx.gid,
                    exclusive: true,
                    now,
                }
            } else {
                NsCommand::Mkdir {
                    parent,
                    name,
                    mode: *mode,
                    umask: NO_UMASK,
                    uid: cx.uid,
                    gid: cx.gid,
                    now,
                }
            };
            let attr = merge(&mut cx.out, ops::apply(w, cmd)?);
            if let Some(a) = &attr {
                cx.created.insert(a.ino);
            }
            Ok(attr)
        }
        TxOp::Remove { path } => {
            let (parent, name) = parent_of(w, caller, path)?;
            removable(w, caller, parent, &name)?;
            let child = w.entry(parent, &name)?.ok_or(FsError::NotFound)?;
            let cmd = if w.must(child)?.attr.kind == FileKind::Dir {
                NsCommand::Rmdir { parent, name, now }
            } else {
                NsCommand::Unlink { parent, name, now }
            };
            merge(&mut cx.out, ops::apply(w, cmd)?);
            Ok(None)
        }
        TxOp::Rename { from, to } => {
            let (parent, name) = parent_of(w, caller, from)?;
            let (new_parent, new_name) = parent_of(w, caller, to)?;
            removable(w, caller, parent, &name)?;
            removable(w, caller, new_parent, &new_name)?;
            let cmd = NsCommand::Rename {
                parent,
                name,
                new_parent,
                new_name,
                flags: 0,
                now,
            };
            merge(&mut cx.out, ops::apply(w, cmd)?);
            Ok(None)
        }
        TxOp::SetMode { path, mode } => {
            let attr = lookup(w, caller, path)?.ok_or(FsError::NotFound)?.attr;
            let mode = rules::chmod(caller, &attr, attr.gid, *mode)?;
            let cmd = NsCommand::SetAttr {
                ino: attr.ino,
                mode: Some(mode),
                uid: None,
                gid: None,
                atime: None,
                mtime: None,
                contents: None,
                kill_suid: false,
                now,
            };
            Ok(merge(&mut cx.out, ops::apply(w, cmd)?))
        }
        TxOp::ExpectVersion { .. } | TxOp::ExpectAbsent { .. } => Ok(None),
    }
}

/// Checks every precondition against the state before the batch.
fn check_preconditions(w: &Writer<'_>, caller: &Caller, ops: &[TxOp]) -> Result<(), Stop> {
    for (i, op) in ops.iter().enumerate() {
        let (path, expected) = match op {
            TxOp::ExpectVersion { path, version } => (path, Expected::Version(*version)),
            TxOp::ExpectAbsent { path } => (path, Expected::Absent),
            _ => continue,
        };
        let found = lookup(w, caller, path).map_err(|error| {
            Stop::Failed(TxFailure::Op {
                op: i as u32,
                what: op.describe(),
                error,
            })
        })?;
        let actual = match found {
            None => Actual::Absent,
            Some(rec) => Actual::Version(rec.attr.version),
        };
        let holds = match (&expected, &actual) {
            (Expected::Version(want), Actual::Version(have)) => want == have,
            (Expected::Absent, Actual::Absent) => true,
            _ => false,
        };
        if !holds {
            return Err(Stop::Failed(TxFailure::Precondition {
                op: i as u32,
                path: path.clone(),
                expected,
                actual,
            }));
        }
    }
    Ok(())
}

fn sort_dedup(out: &mut NsOutcome) {
    out.changed_inos.sort_unstable();
    out.changed_inos.dedup();
    out.changed_entries.sort();
    out.changed_entries.dedup();
}

/// The batch, inside one write transaction. Any `Err` means the caller must not commit.
pub(super) fn batch(
    w: &mut Writer<'_>,
    t: &mut Tables<'_>,
    b: &TxBatch,
) -> Result<TxApplied, Stop> {
    let rec = owned(t, b.tx, b.owner())?;
    if b.ops.len() > MAX_OPS {
        return Err(Stop::Fatal(FsError::TooLarge(format!(
            "{} operations in one transaction, at most {MAX_OPS}",
            b.ops.len()
        ))));
    }
    check_preconditions(w, &b.caller, &b.ops)?;
    let mut cx = Ctx {
        staged: &rec.staged,
        locked: &b.locked,
        caller: b.caller,
        uid: b.uid,
        gid: b.gid,
        now: b.now,
        created: HashSet::new(),
        need: Vec::new(),
        out: NsOutcome::default(),
    };
    let mut results = Vec::with_capacity(b.ops.len());
    for (i, op) in b.ops.iter().enumerate() {
        let r = apply_op(w, &mut cx, i as u32, op).map_err(|error| {
            Stop::Failed(TxFailure::Op {
                op: i as u32,
                what: op.describe(),
                error,
            })
        })?;
        results.push(r);
    }
    if !cx.need.is_empty() {
        return Err(Stop::NeedLocks(cx.need));
    }
    let mut out = cx.out;
    sort_dedup(&mut out);
    let committed = Committed {
        tx: b.tx,
        results,
        changed_inos: out.changed_inos.clone(),
        changed_entries: out.changed_entries.clone(),
    };
    t.end(
        w,
        b.tx,
        &rec,
        TxStatus::Committed(committed.clone()),
        b.now,
        &mut out.unreferenced,
    )?;
    Ok(TxApplied::Committed {
        committed,
        outcome: out,
    })
}
