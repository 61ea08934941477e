//! dfs: the command line for people and scripts — locks, status and transactions of
//! dfs, and the realm: `dfs login | logout | whoami | user` (see `login`).
//! It finds the mount that holds PATH and talks to that mount's `dfs-mount` over its local
//! control socket; the mount holds (and keeps renewing) the locks taken here.
//!
//! Owns: the command line and which mount or server a command asks. Must not format what
//! it shows (`status`, `show`).
//!
//! - `login`: `dfs login | logout | whoami | user`.
//! - `tx`: `dfs tx`: batch files and their commands.
//! - `status`: what the command shows of a mount; `show`: times, sizes and JSON.

mod login;
mod show;
mod status;
mod tx;

use clap::{Parser, Subcommand};
use dfs_client::control::{ask, ControlReply, ControlRequest};
use dfs_common::mountinfo;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Locks, status and transactions of a dfs file system.
#[derive(Parser, Debug)]
#[command(name = "dfs", version)]
struct Args {
    /// Print what the command shows as one JSON document (for scripts) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Take a cluster-wide lock on PATH (exclusive unless --shared); it is held by the mount
    /// for you until `dfs unlock PATH`, or until the mount goes away and its lease ends.
    Lock {
        path: PathBuf,
        /// A shared (read) lock: many may hold it at once.
        #[arg(long)]
        shared: bool,
        /// Seconds to wait for a conflicting holder before giving up (exit 75, EAGAIN).
        #[arg(long, default_value_t = 30)]
        wait: u32,
    },
    /// Release the lock `dfs lock` took on PATH. Not holding one is an error.
    Unlock { path: PathBuf },
    /// List locks: on PATH, or every lock in the cell of the mount holding the current
    /// directory. Shows holder, mode, range, fencing token and lease expiry.
    Locks { path: Option<PathBuf> },
    /// Show the mount holding PATH (default: the current directory): its server, client id,
    /// callback channel, cache use and unstored files.
    Status { path: Option<PathBuf> },
    #[command(flatten)]
    Auth(login::AuthCommand),
    /// Transactions: run a batch of file operations as one atomic unit.
    #[command(after_help = tx::cli::FORMAT_HELP)]
    Tx {
        #[command(subcommand)]
        command: TxCommand,
    },
}

#[derive(Subcommand, Debug)]
enum TxCommand {
    /// Run the operations of BATCHFILE (`-` = stdin) as one transaction, print what it
    /// committed, or which line failed (then nothing changed).
    #[command(after_help = tx::cli::FORMAT_HELP)]
    Apply {
        batch: PathBuf,
        /// The server (HOST:PORT); default: the server of the dfs mount holding the
        /// current directory.
        #[arg(long, value_name = "HOST:PORT")]
        server: Option<String>,
        /// Seconds the commit waits for clients that have a replaced file open for writing.
        #[arg(long, default_value_t = 30)]
        wait: u32,
        /// Stage everything, then ask on stdin before committing.
        #[arg(long)]
        confirm: bool,
    },
    /// Show kind, version, size and inode of dfs paths (versions for expect-version).
    Stat {
        #[arg(required = true)]
        paths: Vec<String>,
        #[arg(long, value_name = "HOST:PORT")]
        server: Option<String>,
    },
}

/// The dfs mount point that contains `path`.
fn mount_of(path: &Path) -> Result<PathBuf, String> {
    let abs = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mounts = mountinfo::read().map_err(|e| e.to_string())?;
    mountinfo::dfs_mount_holding(&mounts, &abs)
        .map(|m| m.mount_point.clone())
        .ok_or_else(|| format!("{} is not on a dfs mount", abs.display()))
}

fn ino_of(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    if let Some(done) =
        dfs_common::cli_docs::generate_if_asked(<Args as clap::CommandFactory>::command)
    {
        return done;
    }
    let args = Args::parse();
    let json = args.json;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dfs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.command {
        Command::Tx { command } => rt.block_on(async {
            match command {
                TxCommand::Apply {
                    batch,
                    server,
                    wait,
                    confirm,
                } => tx::cli::cli_apply(&batch, server, wait, confirm, json).await,
                TxCommand::Stat { paths, server } => tx::cli::cli_stat(&paths, server, json).await,
            }
        }),
        other => rt.block_on(run(other, json)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("dfs: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn run(cmd: Command, json: bool) -> Result<(), (u8, String)> {
    let fail = |e: String| (1u8, e);
    let cmd = match cmd {
        Command::Auth(c) => return login::run(c, json).await.map_err(fail),
        other => other,
    };
    let (mount, req, path) = match &cmd {
        Command::Lock { path, shared, wait } => (
            mount_of(path).map_err(fail)?,
            ControlRequest::Lock {
                ino: ino_of(path).map_err(fail)?,
                shared: *shared,
                wait_secs: *wait,
            },
            Some(path.clone()),
        ),
        Command::Unlock { path } => (
            mount_of(path).map_err(fail)?,
            ControlRequest::Unlock {
                ino: ino_of(path).map_err(fail)?,
            },
            Some(path.clone()),
        ),
        Command::Locks { path } => {
            let here = path.clone().unwrap_or_else(|| PathBuf::from("."));
            let ino = match path {
                Some(p) => Some(ino_of(p).map_err(fail)?),
                None => None,
            };
            (
                mount_of(&here).map_err(fail)?,
                ControlRequest::Locks { ino },
                None,
            )
        }
        Command::Status { path } => {
            let here = path.clone().unwrap_or_else(|| PathBuf::from("."));
            (mount_of(&here).map_err(fail)?, ControlRequest::Status, None)
        }
        Command::Auth(_) => unreachable!("handled above"),
        Command::Tx { .. } => unreachable!("handled in main"),
    };
    let reply = ask(&mount, &req).await.map_err(|e| fail(e.to_string()))?;
    let shown = path
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match reply {
        ControlReply::Error(dfs_common::FsError::NotFound)
            if matches!(cmd, Command::Unlock { .. }) =>
        {
            Err((
                1,
                format!("you hold no lock taken with `dfs lock` on {shown}"),
            ))
        }
        ControlReply::Error(e) => {
            let code = if e.errno() == libc::EAGAIN { 75 } else { 1 };
            Err((code, e.to_string()))
        }
        ControlReply::Status(s) => {
            let cluster = cluster_of(&s.server).await;
            status::status(&mount, &s, cluster, json).map_err(fail)
        }
        other => status::reply(&shown, other, json).map_err(fail),
    }
}

/// The cluster behind the mount's server: members, copies, repair (`/v1/cluster/status`),
/// or why it is unknown.
async fn cluster_of(server: &str) -> Result<dfs_common::cluster::ClusterStatus, String> {
    let remote = dfs_client::remote::Remote::new(server);
    remote
        .get(dfs_common::cluster::STATUS_PATH)
        .await
        .map_err(|e| e.to_string())
}
