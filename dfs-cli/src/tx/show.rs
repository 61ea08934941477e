//! What the `dfs tx` commands show: upload progress (`crate::progress`: a bar on a
//! terminal, plain lines otherwise), what a batch committed and what paths are, as text
//! for people or JSON for scripts (`--json`; the same facts in both).
//!
//! Owns: the commands' output. Must not run batches or talk to the server.

use super::batch::{Applied, Batch, Line};
use crate::show::size;
use dfs_client::progress::{Progress, Unit};
use dfs_common::tx::{show_path, TxOp};
use dfs_common::Attr;
use std::sync::{Arc, Mutex};

/// Files at least this large show upload progress.
pub const PROGRESS_FROM: u64 = 8 << 20;

/// Progress of the staged uploads of large files, one at a time.
pub fn upload_progress() -> dfs_client::tx::ProgressFn {
    let current: Mutex<Option<(String, Progress)>> = Mutex::new(None);
    Arc::new(move |path: &str, sent: u64, total: u64| {
        if total < PROGRESS_FROM {
            return;
        }
        let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|(p, _)| p != path) {
            let what = format!("dfs tx: uploading {path}");
            *current = Some((path.to_string(), Progress::new(what, Unit::Bytes, total)));
        }
        if let Some((_, p)) = current.as_ref() {
            if sent >= total {
                p.finish(sent, "uploaded");
            } else {
                p.set(sent);
            }
        }
    })
}

/// One committed operation, for scripts.
#[derive(serde::Serialize)]
struct OpView {
    /// Its line in the batch file.
    line: usize,
    op: String,
    /// The file or directory it made or replaced (None for removals and preconditions).
    inode: Option<u64>,
    version: Option<u64>,
    size: Option<u64>,
}

/// What a batch committed, for scripts (`dfs tx apply --json`).
#[derive(serde::Serialize)]
struct AppliedView {
    transaction: u64,
    committed: bool,
    operations: Vec<OpView>,
}

fn op_text(line: &Line, op: &TxOp) -> String {
    match line {
        Line::Put { local, remote, .. } => format!("put {} {}", local.display(), show_path(remote)),
        Line::Other(_) => op.describe(),
    }
}

/// What one committed operation did, for people.
fn describe(line: &Line, op: &TxOp, result: Option<&Attr>) -> String {
    let what = op_text(line, op);
    match (op, result) {
        (TxOp::Put { .. }, Some(a)) => format!(
            "{what} (inode {}, version {}, {})",
            a.ino,
            a.version,
            size(a.size)
        ),
        (TxOp::Create { .. } | TxOp::Mkdir { .. }, Some(a)) => format!("{what} (inode {})", a.ino),
        (TxOp::ExpectVersion { .. } | TxOp::ExpectAbsent { .. }, _) => format!("{what}: held"),
        _ => what,
    }
}

/// Prints what `applied` committed.
pub fn applied(batch: &Batch, applied: &Applied, json: bool) -> Result<(), (u8, String)> {
    let rows = batch
        .lines
        .iter()
        .zip(&applied.ops)
        .zip(&applied.committed.results);
    if json {
        let operations = rows
            .map(|(((n, line), op), result)| OpView {
                line: *n,
                op: op_text(line, op),
                inode: result.as_ref().map(|a| a.ino),
                version: result.as_ref().map(|a| a.version),
                size: result.as_ref().map(|a| a.size),
            })
            .collect();
        let view = AppliedView {
            transaction: applied.id,
            committed: true,
            operations,
        };
        return crate::show::json(&view).map_err(|e| (1, e));
    }
    println!(
        "committed transaction {}: {} operations",
        applied.id,
        applied.ops.len()
    );
    for (((_, line), op), result) in rows {
        println!("  {}", describe(line, op, result.as_ref()));
    }
    Ok(())
}

/// One path of `dfs tx stat`, for scripts.
#[derive(serde::Serialize)]
struct StatView<'a> {
    path: &'a str,
    exists: bool,
    kind: Option<String>,
    version: Option<u64>,
    size: Option<u64>,
    inode: Option<u64>,
    /// Octal, as `chmod` takes it.
    mode: Option<String>,
}

/// Prints what each path is (`None`: it does not exist).
pub fn stats(found: &[(String, Option<Attr>)], json: bool) -> Result<(), (u8, String)> {
    if json {
        let views: Vec<StatView> = found
            .iter()
            .map(|(path, a)| StatView {
                path,
                exists: a.is_some(),
                kind: a.as_ref().map(|a| format!("{:?}", a.kind)),
                version: a.as_ref().map(|a| a.version),
                size: a.as_ref().map(|a| a.size),
                inode: a.as_ref().map(|a| a.ino),
                mode: a.as_ref().map(|a| format!("{:o}", a.mode)),
            })
            .collect();
        return crate::show::json(&views).map_err(|e| (1, e));
    }
    for (path, a) in found {
        match a {
            Some(a) => println!(
                "{path}: {:?}, version {}, {}, inode {}, mode {:o}",
                a.kind,
                a.version,
                size(a.size),
                a.ino,
                a.mode
            ),
            None => println!("{path}: does not exist"),
        }
    }
    Ok(())
}
