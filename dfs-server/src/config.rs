//! The settings of a node: every `dfs-server` option, from the command line and from a
//! TOML file (`--config FILE`, whose keys are the long options), the command line winning;
//! and `--print-config`, the merged settings as a file `--config` reads back.
//!
//! The file is read by turning its table into long options placed before the command
//! line's (clap keeps the last occurrence of an option), so a setting in the file is
//! checked by the same parser as on the command line, and an unknown key is an error.
//!
//! Owns: `Args`, reading the file, printing the settings. Must not start anything.

use crate::auth::AnonymousAccess;
use crate::net::limits;
use clap::{CommandFactory, Parser};
use dfs_common::logging::LogFormat;
use serde::{Serialize, Serializer};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// dfs server node: runs the directory, file and callback services of dfs (an AFS-style
/// distributed file system) in the foreground, serving HTTP/1.1 on one address.
///
/// SIGTERM or SIGINT stops it cleanly: no new connections, in-flight requests get about
/// five seconds to finish, the metadata database is closed, exit status 0.
/// Logging goes to stderr; set RUST_LOG (default: info).
///
/// `dfs-server init --realm NAME --data-dir DIR` creates a realm first (see
/// `dfs-server init --help`); a data dir with a realm requires tickets.
#[derive(Parser, Debug, Serialize)]
#[command(name = "dfs-server", version, args_override_self = true)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    /// Read options from FILE, a TOML table whose keys are these long options (e.g.
    /// `data-dir = "/var/lib/dfs/a"`, `peers = ["b:7070", "c:7070"]`); options on the
    /// command line override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the effective settings (the config file and the command line merged, with
    /// every default) as TOML that --config reads back, and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Directory holding this node's data: the metadata database (meta.redb), the lock
    /// table (locks.redb) and the blob store (blobs/). Created if missing.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Address to listen on (HOST:PORT; port 0 picks a free one, logged at start).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7070")]
    pub listen: String,

    /// Seconds an unreferenced blob (old contents of an overwritten or deleted file) is
    /// kept before the garbage collector deletes it.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub gc_grace_secs: u64,

    /// Largest file a store accepts, in bytes; a larger body is refused with 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1u64 << 40)]
    pub max_file_size: u64,

    /// Permission bits, in octal, of the root directory when a fresh namespace is
    /// created (owned by uid 0, gid 0). An existing namespace keeps its root as it is.
    #[arg(long, value_name = "OCTAL", default_value = "1777", value_parser = parse_octal)]
    #[serde(serialize_with = "octal_text")]
    pub root_mode: u32,

    /// Lock service: number of mutexes in the striped pool. A file id is hashed to one of
    /// them, so lock operations on different ids run in parallel; memory is O(N), not
    /// O(number of locks) (the lock table itself is on disk, DIR/locks.redb).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub lock_pool_size: u64,

    /// Lock service: seconds a lock is held after its grant or its holder's last renewal.
    /// A client that crashes or is cut off loses its locks this long after its last renewal.
    #[arg(long, value_name = "N", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub lock_lease_secs: u64,

    /// Lock service: longest time, in seconds, one acquire request waits for conflicting
    /// locks to go (a longer `wait_ms` is cut to this; clients ask again).
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub lock_max_wait_secs: u64,

    /// Transactions: seconds an open transaction lives after its client last renewed or
    /// used it. A client that disappears between staging and commit has its transaction
    /// aborted and its staged blobs released this long after it went.
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub tx_lease_secs: u64,

    /// Replication: other nodes of the cluster to join through (HOST:PORT, comma
    /// separated). Gossip runs over UDP on the same port as HTTP. Needs --cluster-key-file.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// Replication: file with the cluster's shared secret (at least 32 bytes, mode 0600,
    /// e.g. `head -c 32 /dev/urandom > cluster.key`). Gossip packets and node-to-node
    /// requests without it are refused. Setting it makes this node a cluster member.
    #[arg(long, value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,

    /// Replication: this node's roles, comma separated: `directory,data` (the one node
    /// holding the namespace, locks and callbacks; it stores blobs too) or `data` (a node
    /// that only stores blobs).
    #[arg(long, value_name = "ROLES", default_value = "directory,data", value_parser = parse_roles)]
    #[serde(serialize_with = "roles_text")]
    pub roles: u8,

    /// Replication: the address other nodes reach this one at (default: the listen
    /// address; needed when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<SocketAddr>,

    /// Replicated directory: the voters of the directory's Raft log, ID=IP:PORT comma
    /// separated (the same list on every voter; each a member of the cluster). With
    /// --directory-id, this node holds a replica of the directory.
    #[arg(long, value_name = "ID=IP:PORT,...", value_delimiter = ',')]
    pub directory_voters: Vec<String>,

    /// Replicated directory: this node's id among --directory-voters.
    #[arg(long, value_name = "ID", requires = "directory_voters")]
    pub directory_id: Option<u64>,

    /// Replication: copies kept of every blob (capped at the number of data nodes).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub replicas: u32,

    /// Replication: copies that must be durable before a store is acknowledged (default:
    /// a majority of R).
    #[arg(long, value_name = "W", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub write_quorum: Option<u32>,

    /// Replication: seconds a node declared dead keeps its place before its blobs are
    /// copied to other nodes (a node that restarts sooner just catches up).
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub dead_grace_secs: u64,

    /// Replication: seconds between repair rounds (anti-entropy) on the directory node.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub repair_interval_secs: u64,

    /// Replication: the scrubber re-hashes every local blob once per this many seconds.
    #[arg(long, value_name = "N", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub scrub_interval_secs: u64,
    /// Realm only: what callers without a ticket may do. `none`: nothing but what a mount
    /// does on its own (its callback channel, renewing and releasing its locks); `read`:
    /// also what changes nothing (lookups, listings, attributes, fetches), as the modes
    /// let `nobody` read; `write`: whatever the modes let `nobody` do. Ignored in an open
    /// cell, where nothing is authenticated.
    #[arg(long, value_name = "none|read|write", default_value = "none")]
    #[serde(serialize_with = "display_text")]
    pub anonymous: AnonymousAccess,

    /// Connections: most open at once from everyone; more are answered 503 and closed
    /// (counted in the log). Lowered to fit the process's file descriptor limit.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Connections: most open at once from one peer (an IPv4 address or an IPv6 /64).
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_PER_PEER, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_peer: u64,

    /// Connections: seconds from the first byte of a request to the end of its head.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_HEADER_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_timeout_secs: u64,

    /// Connections: seconds a connection waits for its next request before it is closed.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_IDLE_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,

    /// Connections: seconds a request body may go without a byte, and an answer may wait
    /// for the client to take one (between bytes, never in all: large stores stream for
    /// as long as they move; lock waits and the callback channel are not cut).
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_BODY_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub body_timeout_secs: u64,

    /// Log lines as `text` or `json` (one object per line). Levels: RUST_LOG (default info).
    #[arg(long, value_name = "text|json", default_value = "text")]
    pub log_format: LogFormat,

    /// Metrics: also serve `GET /metrics` to anyone on this second address (e.g.
    /// 127.0.0.1:9100), for a Prometheus scraper, which cannot hold tickets.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,

    /// Metrics: `GET /metrics` on the node's own address needs no ticket (in a realm it
    /// otherwise needs an admin's; an open cell serves it to anyone).
    #[arg(long)]
    pub metrics_anonymous: bool,
}

pub fn parse_roles(s: &str) -> Result<u8, String> {
    use dfs_common::cluster::{ROLE_DATA, ROLE_DIRECTORY};
    let mut roles = 0;
    for r in s.split(',').map(str::trim) {
        roles |= match r {
            "directory" => ROLE_DIRECTORY,
            "data" => ROLE_DATA,
            _ => return Err(format!("unknown role {r:?} (roles: directory, data)")),
        };
    }
    if roles & ROLE_DATA == 0 {
        return Err("every node stores blobs: include the data role".into());
    }
    Ok(roles)
}

fn parse_octal(s: &str) -> Result<u32, String> {
    let v = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|e| format!("not an octal mode: {e}"))?;
    if v > 0o7777 {
        return Err("mode must be at most 7777".into());
    }
    Ok(v)
}

fn roles_text<S: Serializer>(roles: &u8, s: S) -> Result<S::Ok, S::Error> {
    use dfs_common::cluster::ROLE_DIRECTORY;
    s.serialize_str(if roles & ROLE_DIRECTORY != 0 {
        "directory,data"
    } else {
        "data"
    })
}

fn octal_text<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:o}"))
}

fn display_text<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// Options that only make sense on a command line.
const COMMAND_LINE_ONLY: &[&str] = &["config", "print-config", "help", "version"];

/// The `--config FILE` of `argv`, if any (found before parsing: the file's options go in
/// front of the command line's).
fn config_file_of(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The long options a TOML table stands for (`key = value` -> `--key=value`; a list is
/// joined with commas, `true` is the bare flag, `false` leaves it out).
pub fn options_of_table(table: &toml::Table) -> Result<Vec<OsString>, String> {
    let cmd = Args::command();
    let mut out = Vec::new();
    for (key, value) in table {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .filter(|_| !COMMAND_LINE_ONLY.contains(&key.as_str()))
            .ok_or_else(|| {
                format!("unknown setting {key:?} (the keys are dfs-server's long options)")
            })?;
        let flag = !arg.get_action().takes_values();
        let text = |v: &toml::Value| -> Result<String, String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(n) => Ok(n.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => Err(format!("{key}: a {} is not a setting", other.type_str())),
            }
        };
        match (flag, value) {
            (true, toml::Value::Boolean(true)) => out.push(format!("--{key}").into()),
            (true, toml::Value::Boolean(false)) => {}
            (true, _) => return Err(format!("{key} is true or false")),
            (false, toml::Value::Array(items)) if items.is_empty() => {}
            (false, toml::Value::Array(items)) => {
                let parts: Result<Vec<String>, String> = items.iter().map(text).collect();
                out.push(format!("--{key}={}", parts?.join(",")).into());
            }
            (false, v) => out.push(format!("--{key}={}", text(v)?).into()),
        }
    }
    Ok(out)
}

/// Parses `argv` (with argv[0]) after the options of its `--config` file, if any.
pub fn parse(argv: Vec<OsString>) -> Result<Args, clap::Error> {
    let usage = |msg: String| Args::command().error(clap::error::ErrorKind::InvalidValue, msg);
    let mut merged: Vec<OsString> = argv.iter().take(1).cloned().collect();
    if let Some(file) = config_file_of(&argv) {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| usage(format!("--config {}: {e}", file.display())))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| usage(format!("--config {}: {e}", file.display())))?;
        let from_file = options_of_table(&table)
            .map_err(|e| usage(format!("--config {}: {e}", file.display())))?;
        merged.extend(from_file);
    }
    merged.extend(argv.into_iter().skip(1));
    Args::try_parse_from(merged)
}

/// The settings as TOML that `--config` reads back.
pub fn to_toml(args: &Args) -> Result<String, String> {
    toml::to_string(args).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn printed_settings_read_back_the_same() {
        let a = parse(argv(&[
            "dfs-server",
            "--data-dir",
            "/d",
            "--peers",
            "a:1,b:2",
            "--roles",
            "data",
            "--root-mode",
            "755",
            "--anonymous",
            "read",
            "--metrics-anonymous",
            "--cluster-key-file",
            "/k",
        ]))
        .unwrap();
        let text = to_toml(&a).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let mut again = argv(&["dfs-server"]);
        again.extend(options_of_table(&table).unwrap());
        let b = Args::try_parse_from(again).unwrap();
        assert_eq!(to_toml(&b).unwrap(), text);
        assert_eq!(b.peers, ["a:1", "b:2"]);
        assert_eq!(b.root_mode, 0o755);
        assert!(b.metrics_anonymous);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let t: toml::Table = "no-such-option = 1".parse().unwrap();
        assert!(options_of_table(&t).is_err());
        let t: toml::Table = "config = \"/x\"".parse().unwrap();
        assert!(options_of_table(&t).is_err());
        let t: toml::Table = "metrics-anonymous = 3".parse().unwrap();
        assert!(options_of_table(&t).is_err());
    }
}
