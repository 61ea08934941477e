//! The batch file of `dfs tx apply`: parsing, and running one as a transaction.
//!
//! One operation per line; blank lines and lines starting with `#` are ignored (a `#` that
//! starts a word starts a comment). Words are separated by blanks; a word with blanks or
//! quotes in it is quoted: '...' takes everything literally, "..." understands \" \\ and
//! \n, and outside quotes a backslash escapes the next character.
//!
//! ```text
//! put LOCAL REMOTE [MODE]     REMOTE's whole contents become those of local file LOCAL
//!                             (REMOTE is created with octal MODE, default 644, if missing)
//! create REMOTE [MODE]        a new empty file (fails if REMOTE exists)
//! mkdir REMOTE [MODE]         a new directory (default 755; fails if REMOTE exists)
//! rm REMOTE                   removes a file or an empty directory
//! mv FROM TO                  renames (replaces TO if it is a file or an empty directory)
//! chmod MODE REMOTE           sets the permission bits (octal)
//! expect-version REMOTE N     precondition: REMOTE is at version N
//! expect-absent REMOTE        precondition: REMOTE does not exist
//! ```
//!
//! REMOTE paths are paths in the dfs file system from its root (`/` is the root of the
//! mount); an absolute path under the mount point the command found is taken relative to
//! it. LOCAL paths are local files, relative to the current directory. Preconditions refer
//! to the state before the batch, wherever they stand in the file.
//!
//! Owns: the format and running a batch. Must not talk to the server except through
//! `Transaction`, or print (`super::cli` shows what happened).

use dfs_client::tx::{Transaction, TxClient, TxError};
use dfs_common::tx::{Committed, TxFailure, TxOp, DEFAULT_DIR_MODE, DEFAULT_FILE_MODE};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit status: the batch failed (precondition, operation, lock wait) and nothing changed.
pub const EXIT_FAILED: u8 = 3;
/// Exit status: the batch file is malformed.
pub const EXIT_SYNTAX: u8 = 2;

/// One operation of a batch file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Put {
        local: PathBuf,
        remote: Vec<u8>,
        mode: Option<u32>,
    },
    Other(TxOp),
}

/// A parsed batch file: each operation with its line number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub lines: Vec<(usize, Line)>,
}

/// Splits one line into words (quotes and escapes as described above); `#` at the start
/// of a word ends the line.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return Ok(out),
            _ => {}
        }
        let mut w = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated '".into()),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => w.push('\n'),
                            Some(c) => w.push(c),
                            None => return Err("unterminated \"".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unterminated \"".into()),
                    }
                },
                '\\' => match chars.next() {
                    Some(c) => w.push(c),
                    None => return Err("backslash at the end of the line".into()),
                },
                c => w.push(c),
            }
        }
        out.push(w);
    }
}

fn octal(s: &str) -> Result<u32, String> {
    let v = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode"))?;
    if v > 0o7777 {
        return Err(format!("mode {s} is more than 7777"));
    }
    Ok(v)
}

/// The dfs path a REMOTE word names: relative to the root, or to `mount` if it is an
/// absolute path under it.
pub fn remote_path(word: &str, mount: Option<&Path>) -> Vec<u8> {
    if let Some(m) = mount {
        if let Ok(rest) = Path::new(word).strip_prefix(m) {
            if word.starts_with('/') {
                return format!("/{}", rest.display()).into_bytes();
            }
        }
    }
    if word.starts_with('/') {
        word.as_bytes().to_vec()
    } else {
        format!("/{word}").into_bytes()
    }
}

/// Parses a batch file. Errors say `line N: ...`.
pub fn parse(text: &str, mount: Option<&Path>) -> Result<Batch, String> {
    let mut batch = Batch::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let err = |e: String| format!("line {n}: {e}");
        let w = words(raw).map_err(err)?;
        let Some(verb) = w.first() else { continue };
        let args = &w[1..];
        let want = |min: usize, max: usize, usage: &str| {
            if args.len() < min || args.len() > max {
                Err(err(format!("usage: {usage}")))
            } else {
                Ok(())
            }
        };
        let r = |i: usize| remote_path(&args[i], mount);
        let line = match verb.as_str() {
            "put" => {
                want(2, 3, "put LOCAL REMOTE [MODE]")?;
                Line::Put {
                    local: PathBuf::from(&args[0]),
                    remote: r(1),
                    mode: args.get(2).map(|m| octal(m)).transpose().map_err(err)?,
                }
            }
            "create" => {
                want(1, 2, "create REMOTE [MODE]")?;
                let mode = args.get(1).map(|m| octal(m)).transpose().map_err(err)?;
                Line::Other(TxOp::Create {
                    path: r(0),
                    mode: mode.unwrap_or(DEFAULT_FILE_MODE),
                })
            }
            "mkdir" => {
                want(1, 2, "mkdir REMOTE [MODE]")?;
                let mode = args.get(1).map(|m| octal(m)).transpose().map_err(err)?;
                Line::Other(TxOp::Mkdir {
                    path: r(0),
                    mode: mode.unwrap_or(DEFAULT_DIR_MODE),
                })
            }
            "rm" => {
                want(1, 1, "rm REMOTE")?;
                Line::Other(TxOp::Remove { path: r(0) })
            }
            "mv" => {
                want(2, 2, "mv FROM TO")?;
                Line::Other(TxOp::Rename {
                    from: r(0),
                    to: r(1),
                })
            }
            "chmod" => {
                want(2, 2, "chmod MODE REMOTE")?;
                Line::Other(TxOp::SetMode {
                    path: r(1),
                    mode: octal(&args[0]).map_err(err)?,
                })
            }
            "expect-version" => {
                want(2, 2, "expect-version REMOTE N")?;
                let version = args[1]
                    .parse()
                    .map_err(|_| err(format!("{:?} is not a version number", args[1])))?;
                Line::Other(TxOp::ExpectVersion {
                    path: r(0),
                    version,
                })
            }
            "expect-absent" => {
                want(1, 1, "expect-absent REMOTE")?;
                Line::Other(TxOp::ExpectAbsent { path: r(0) })
            }
            other => {
                return Err(err(format!(
                    "unknown operation {other:?} (put, create, mkdir, rm, mv, chmod, \
                     expect-version, expect-absent)"
                )))
            }
        };
        batch.lines.push((n, line));
    }
    Ok(batch)
}

/// Options of `dfs tx apply`.
#[derive(Clone)]
pub struct ApplyOptions {
    /// How long the commit waits for writers of files the batch replaces.
    pub lock_wait: Duration,
    /// Stage everything, then ask on stdin before committing.
    pub confirm: bool,
    /// Told of each upload's progress.
    pub progress: Option<dfs_client::tx::ProgressFn>,
}

/// What `apply` committed: the transaction, its operations (one per line of the batch)
/// and their results.
pub struct Applied {
    pub id: dfs_common::tx::TxId,
    pub ops: Vec<TxOp>,
    pub committed: Committed,
}

/// Runs `batch` as one transaction, with `opts.progress` told of uploads.
/// `Err((status, message))` says why not (status `EXIT_FAILED` when the batch failed and
/// nothing changed).
pub async fn apply(
    client: &TxClient,
    batch: &Batch,
    opts: &ApplyOptions,
) -> Result<Applied, (u8, String)> {
    let fail = |e: TxError| -> (u8, String) {
        match &e {
            TxError::Failed(f) => (EXIT_FAILED, failure_message(batch, f)),
            _ => (1, e.to_string()),
        }
    };
    if batch.lines.is_empty() {
        return Err((EXIT_SYNTAX, "the batch has no operations".into()));
    }
    // Local files must be there before anything is staged.
    for (n, line) in &batch.lines {
        if let Line::Put { local, .. } = line {
            let m = std::fs::metadata(local)
                .map_err(|e| (1, format!("line {n}: {}: {e}", local.display())))?;
            if !m.is_file() {
                return Err((
                    1,
                    format!("line {n}: {} is not a regular file", local.display()),
                ));
            }
        }
    }
    let mut tx: Transaction = client.begin().await.map_err(fail)?;
    if let Some(p) = &opts.progress {
        tx.set_progress(p.clone());
    }
    tx.set_lock_wait(opts.lock_wait);
    let mut staged_bytes = 0u64;
    let mut staged_files = 0usize;
    for (n, line) in &batch.lines {
        match line {
            Line::Put {
                local,
                remote,
                mode,
            } => {
                let s = tx
                    .put_file(remote, local, *mode)
                    .await
                    .map_err(|e| (1, format!("line {n}: staging {}: {e}", local.display())))?;
                staged_bytes += s.size;
                staged_files += 1;
            }
            Line::Other(op) => push(&mut tx, op.clone()),
        }
    }
    if opts.confirm {
        eprint!(
            "dfs tx: transaction {}: {} operations, {staged_files} files ({}) staged. Commit? [y/N] ",
            tx.id(),
            batch.lines.len(),
            crate::show::size(staged_bytes)
        );
        let _ = std::io::stderr().flush();
        let answer = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s).map(|_| s)
        })
        .await
        .map_err(|e| (1, e.to_string()))?
        .unwrap_or_default();
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            let id = tx.id();
            tx.abort().await.map_err(fail)?;
            return Err((
                1,
                format!("transaction {id} not committed; nothing changed"),
            ));
        }
    }
    let ops: Vec<TxOp> = tx.ops().to_vec();
    let id = tx.id();
    let committed = tx.commit().await.map_err(fail)?;
    Ok(Applied { id, ops, committed })
}

fn push(tx: &mut Transaction, op: TxOp) {
    tx.push(op);
}

/// "line N: why", for a failure of a batch read from a file.
pub fn failure_message(batch: &Batch, f: &TxFailure) -> String {
    let line = batch
        .lines
        .get(f.op() as usize)
        .map(|(n, _)| format!("line {n}: "))
        .unwrap_or_default();
    format!("transaction failed, nothing changed: {line}{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quote_escape_and_comment() {
        assert_eq!(words("  put a  b # c").unwrap(), ["put", "a", "b"]);
        assert_eq!(
            words(r#"mv 'a b' "c \"d\"" e\ f"#).unwrap(),
            ["mv", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(words("x a#b").unwrap(), ["x", "a#b"]);
        assert!(words("rm 'oops").is_err());
        assert!(words("# only a comment").unwrap().is_empty());
    }

    #[test]
    fn a_batch_parses_with_line_numbers() {
        let text = "# deploy\n\nput ./index.html /site/index.html 600\nmkdir site/img\n\
                    mv /site/old '/site/old 2'\nchmod 755 /site/img\nrm /site/tmp\n\
                    create /site/.lock\nexpect-version /site/index.html 3\nexpect-absent /site/new\n";
        let b = parse(text, None).unwrap();
        assert_eq!(b.lines.len(), 8);
        assert_eq!(
            b.lines[0],
            (
                3,
                Line::Put {
                    local: PathBuf::from("./index.html"),
                    remote: b"/site/index.html".to_vec(),
                    mode: Some(0o600)
                }
            )
        );
        assert_eq!(
            b.lines[1].1,
            Line::Other(TxOp::Mkdir {
                path: b"/site/img".to_vec(),
                mode: 0o755
            })
        );
        assert_eq!(
            b.lines[2].1,
            Line::Other(TxOp::Rename {
                from: b"/site/old".to_vec(),
                to: b"/site/old 2".to_vec()
            })
        );
        assert_eq!(
            b.lines[6],
            (
                9,
                Line::Other(TxOp::ExpectVersion {
                    path: b"/site/index.html".to_vec(),
                    version: 3
                })
            )
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse("\nmkdir\n", None).unwrap_err(),
            "line 2: usage: mkdir REMOTE [MODE]"
        );
        assert!(parse("frobnicate /x", None)
            .unwrap_err()
            .starts_with("line 1: unknown operation"));
        assert!(parse("chmod 999 /x", None).unwrap_err().contains("octal"));
        assert!(parse("expect-version /x three", None).is_err());
    }

    #[test]
    fn remote_paths_under_the_mount_are_made_relative_to_it() {
        let m = Path::new("/mnt/dfs");
        assert_eq!(remote_path("/mnt/dfs/a/b", Some(m)), b"/a/b");
        assert_eq!(remote_path("/a/b", Some(m)), b"/a/b");
        assert_eq!(remote_path("a/b", None), b"/a/b");
    }
}
