//! The batch of a transaction's commit, inside the one write transaction `apply_tx` opens:
//! paths resolved from the root in order (so that `mkdir /a` then `put /a/b` works), the
//! preconditions checked against the state before the batch, then every operation as the
//! namespace command it stands for, all or nothing. Creates pass their modes with no umask
//! (a directory's default ACL and set-gid bit still apply).
//!
//! Owns: path resolution and the batch rules. Must not commit, end the transaction
//! otherwise than through `Tables::end`, or touch blob files, locks or the clock.

use super::{owned, Stop, Tables, TxApplied, TxBatch};
use crate::namespace::store::{InodeRecord, Writer};
use crate::namespace::{check_name, ops, Contents, NsCommand, NsOutcome};
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
/// the way is not one.
pub(super) fn walk(
    comps: &[&[u8]],
    mut entry: impl FnMut(Ino, &[u8]) -> Result<Option<Ino>, FsError>,
    mut kind: impl FnMut(Ino) -> Result<Option<FileKind>, FsError>,
) -> Result<Option<Ino>, FsError> {
    let mut ino = ROOT_INO;
    for c in comps {
        if kind(ino)? != Some(FileKind::Dir) {
            return Ok(None);
        }
        match entry(ino, c)? {
            Some(child) => ino = child,
            None => return Ok(None),
        }
    }
    Ok(Some(ino))
}

fn lookup(w: &Writer<'_>, path: &[u8]) -> Result<Option<InodeRecord>, FsError> {
    let comps = components(path)?;
    let found = walk(
        &comps,
        |d, n| w.entry(d, n),
        |i| Ok(w.inode(i)?.map(|r| r.attr.kind)),
    )?;
    match found {
        Some(ino) => w.inode(ino),
        None => Ok(None),
    }
}

/// The directory that holds `path` and the last name: `NotFound` / `NotDir` if the
/// directory is missing or is not one.
fn parent_of(w: &Writer<'_>, path: &[u8]) -> Result<(Ino, Vec<u8>), FsError> {
    let comps = components(path)?;
    let Some((name, dirs)) = comps.split_last() else {
        return Err(FsError::Invalid(
            "the root directory cannot be changed this way".into(),
        ));
    };
    let mut ino = ROOT_INO;
    for d in dirs {
        ino = w.entry(ino, d)?.ok_or(FsError::NotFound)?;
        if w.must(ino)?.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
    }
    Ok((ino, name.to_vec()))
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
    match op {
        TxOp::Put { path, blob, mode } => {
            let (parent, name) = parent_of(w, path)?;
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
                    if !cx.created.contains(&ino)
                        && !cx.locked.contains(&ino)
                        && !cx.need.iter().any(|(n, _)| *n == ino)
                    {
                        cx.need.push((ino, i));
                    }
                    ino
                }
                None => {
                    let cmd = NsCommand::Create {
                        parent,
                        name,
                        mode: mode.unwrap_or(DEFAULT_FILE_MODE),
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
                kill_suid: false,
                now,
            };
            Ok(merge(&mut cx.out, ops::apply(w, cmd)?))
        }
        TxOp::Create { path, mode } | TxOp::Mkdir { path, mode } => {
            let (parent, name) = parent_of(w, path)?;
            let cmd = if matches!(op, TxOp::Create { .. }) {
                NsCommand::Create {
                    parent,
                    name,
                    mode: *mode,
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
            let (parent, name) = parent_of(w, path)?;
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
            let (parent, name) = parent_of(w, from)?;
            let (new_parent, new_name) = parent_of(w, to)?;
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
            let ino = lookup(w, path)?.ok_or(FsError::NotFound)?.attr.ino;
            let cmd = NsCommand::SetAttr {
                ino,
                mode: Some(*mode),
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
fn check_preconditions(w: &Writer<'_>, ops: &[TxOp]) -> Result<(), Stop> {
    for (i, op) in ops.iter().enumerate() {
        let (path, expected) = match op {
            TxOp::ExpectVersion { path, version } => (path, Expected::Version(*version)),
            TxOp::ExpectAbsent { path } => (path, Expected::Absent),
            _ => continue,
        };
        let found = lookup(w, path).map_err(|error| {
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
    let rec = owned(t, b.tx, b.client)?;
    if b.ops.len() > MAX_OPS {
        return Err(Stop::Fatal(FsError::TooLarge(format!(
            "{} operations in one transaction, at most {MAX_OPS}",
            b.ops.len()
        ))));
    }
    check_preconditions(w, &b.ops)?;
    let mut cx = Ctx {
        staged: &rec.staged,
        locked: &b.locked,
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
