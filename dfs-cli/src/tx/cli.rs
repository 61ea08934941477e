//! The `dfs tx` commands: `apply` (read a batch file, find the server, run it) and
//! `stat`, acting with the tickets of whoever runs them (`dfs login`) when those are for
//! that server, and the help text of the batch format.
//!
//! Owns: finding the server of a mount, whose credentials a command uses, exit statuses.
//! Must not parse batch files or run transactions itself (`super::batch`, `super`), or
//! format what they show (`super::show`).

use super::batch::{apply, parse, remote_path, ApplyOptions, EXIT_SYNTAX};
use super::show;
use dfs_client::tx::TxClient;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The batch file format, for `dfs tx --help`.
pub const FORMAT_HELP: &str = "\
BATCH FILE: one operation per line; blank lines and # comments are ignored. Words are
separated by blanks; quote a word with blanks in it: '...' is literal, \"...\" understands
\\\" \\\\ and \\n, and outside quotes a backslash escapes the next character.

  put LOCAL REMOTE [MODE]     REMOTE's whole contents become those of local file LOCAL
                              (created with octal MODE, default 644, if missing)
  create REMOTE [MODE]        a new empty file (fails if REMOTE exists)
  mkdir REMOTE [MODE]         a new directory (default 755; fails if REMOTE exists)
  rm REMOTE                   remove a file or an empty directory
  mv FROM TO                  rename (replaces TO if it is a file or an empty directory)
  chmod MODE REMOTE           set the permission bits (octal)
  expect-version REMOTE N     precondition: REMOTE is at version N (see `dfs tx stat`)
  expect-absent REMOTE        precondition: REMOTE does not exist

REMOTE paths are from the root of the dfs file system (an absolute path under the mount
point is taken relative to it); LOCAL paths are local files, relative to the current
directory. Preconditions refer to the state before the batch, wherever they stand.

All of the batch is committed, or none of it: every other client sees either none or all
of it, also if the server crashes. In a realm the batch runs with the rights of whoever
logged in with `dfs login` (anonymous without), each operation checked as it would be
alone: one the user may not do fails the whole batch. Files are uploaded (staged) first,
with progress for large ones; the commit waits up to --wait seconds for clients that have
a replaced file open for writing. Exit status: 0 committed; 3 a precondition, an
operation or a lock wait failed and nothing changed (the message names the line, the
file, the expected and the actual version); 2 the batch file is malformed; 1 any other
error.";

/// `dfs tx apply`: reads BATCHFILE (`-` = stdin), finds the server (`server`, or the mount
/// holding the current directory) and runs it.
pub async fn cli_apply(
    file: &Path,
    server: Option<String>,
    wait_secs: u32,
    confirm: bool,
    json: bool,
) -> Result<(), (u8, String)> {
    let text = if file == Path::new("-") {
        if confirm {
            return Err((
                EXIT_SYNTAX,
                "--confirm reads the answer from stdin; the batch cannot come from stdin too"
                    .into(),
            ));
        }
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| (1, format!("stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| (1, format!("{}: {e}", file.display())))?
    };
    let (mount, addr) = match server {
        Some(s) => (None, s),
        None => {
            let (m, s) = mount_and_server(Path::new(".")).map_err(|e| (1, e))?;
            (Some(m), s)
        }
    };
    let batch = parse(&text, mount.as_deref())
        .map_err(|e| (EXIT_SYNTAX, format!("{}: {e}", file.display())))?;
    let client = TxClient::new(&addr).map_err(|e| (1, e.to_string()))?;
    let opts = ApplyOptions {
        lock_wait: Duration::from_secs(wait_secs as u64),
        confirm,
        progress: Some(show::upload_progress()),
    };
    crate::login::file_own_tickets(&addr, client.credentials());
    let applied = apply(&client, &batch, &opts).await?;
    show::applied(&batch, &applied, json)
}

/// `dfs tx stat`: kind, version, size and inode of dfs paths.
pub async fn cli_stat(
    paths: &[String],
    server: Option<String>,
    json: bool,
) -> Result<(), (u8, String)> {
    let (mount, addr) = match server {
        Some(s) => (None, s),
        None => {
            let (m, s) = mount_and_server(Path::new(".")).map_err(|e| (1, e))?;
            (Some(m), s)
        }
    };
    let client = TxClient::new(&addr).map_err(|e| (1, e.to_string()))?;
    crate::login::file_own_tickets(&addr, client.credentials());
    let stat_all = async {
        let mut found = Vec::new();
        for p in paths {
            let remote = String::from_utf8_lossy(&remote_path(p, mount.as_deref())).into_owned();
            let attr = client
                .stat(&remote)
                .await
                .map_err(|e| (1, format!("{remote}: {e}")))?;
            found.push((remote, attr));
        }
        show::stats(&found, json)?;
        if found.iter().any(|(_, a)| a.is_none()) {
            return Err((1, "some paths do not exist".into()));
        }
        Ok(())
    };
    stat_all.await
}

/// The dfs mount that holds `path` and its server (`HOST:PORT`, from the mount's source
/// `dfs:HOST:PORT` in /proc/self/mountinfo).
pub fn mount_and_server(path: &Path) -> Result<(PathBuf, String), String> {
    let abs = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mounts = dfs_common::mountinfo::read().map_err(|e| e.to_string())?;
    dfs_common::mountinfo::dfs_mount_holding(&mounts, &abs)
        .and_then(|m| Some((m.mount_point.clone(), m.dfs_server()?.to_string())))
        .ok_or_else(|| {
            format!(
                "{} is not on a dfs mount; give the server with --server HOST:PORT",
                abs.display()
            )
        })
}
