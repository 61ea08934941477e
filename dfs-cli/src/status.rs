//! What the `dfs` command shows of a mount (status, locks, lock and unlock answers): text
//! for people, with sizes in binary units and durations in words (`show`), or
//! the same facts as one JSON document for scripts (`--json`).
//!
//! Owns: the layout of that output. Must not ask a mount or server anything.

use crate::show::{duration, json as print_json, size};
use dfs_client::control::ControlReply;
use dfs_client::MountStatus;
use dfs_common::cluster::{ClusterStatus, RaftStatus, ROLE_DIRECTORY};
use dfs_common::locks::LockInfo;
use std::path::Path;

/// `dfs status --json`.
#[derive(serde::Serialize)]
struct StatusView<'a> {
    mount: &'a Path,
    #[serde(flatten)]
    status: &'a MountStatus,
    /// The cluster behind the server, when it answered.
    cluster: Option<&'a ClusterStatus>,
    /// Why the cluster is unknown, when it did not.
    cluster_error: Option<&'a str>,
}

/// Prints `dfs status`: the mount and the cluster behind its server.
pub fn status(
    mount: &Path,
    s: &MountStatus,
    cluster: Result<ClusterStatus, String>,
    json: bool,
) -> Result<(), String> {
    if json {
        return print_json(&StatusView {
            mount,
            status: s,
            cluster: cluster.as_ref().ok(),
            cluster_error: cluster.as_ref().err().map(String::as_str),
        });
    }
    println!("mount:             {}", mount.display());
    println!("server:            {}", s.server);
    println!("client id:         {:#x}", s.client_id);
    println!(
        "callback channel:  {}",
        if s.callback_channel_up { "up" } else { "down" }
    );
    println!(
        "cached files:      {} ({})",
        s.cached_files,
        size(s.cached_bytes)
    );
    println!("unstored files:    {}", s.unstored_files);
    match cluster {
        Ok(st) => print_cluster(&st),
        Err(e) => println!("cluster:           unknown ({e})"),
    }
    Ok(())
}

fn print_cluster(st: &ClusterStatus) {
    if let Some(d) = &st.directory {
        print_directory(d);
    }
    if st.members.len() <= 1 && st.rounds == 0 {
        println!("cluster:           one server, no replication");
        return;
    }
    println!(
        "replication:       R={} (effective {}), W={}",
        st.replicas, st.effective_replicas, st.write_quorum
    );
    println!("members:");
    for m in &st.members {
        let role = if m.roles & ROLE_DIRECTORY != 0 {
            "directory,data"
        } else {
            "data"
        };
        let held = match (m.blobs, m.bytes) {
            (Some(b), Some(n)) => format!("{b} blobs, {}", size(n)),
            _ => "-".to_string(),
        };
        println!(
            "  {:24} {:14} {:8} for {:>12}  {}",
            m.addr,
            role,
            m.state.as_str(),
            duration(m.state_secs),
            held
        );
    }
    println!(
        "blobs:             {} referenced, {} under-replicated, {} without a live copy",
        st.referenced_blobs, st.under_replicated, st.missing
    );
    println!(
        "repair:            {} copies ordered, {} made, {} failed, {} pending; {} rounds{}",
        st.repairs_ordered,
        st.repairs_done,
        st.repairs_failed,
        st.repairs_pending,
        st.rounds,
        st.last_round_secs
            .map(|s| format!(", last {} ago", duration(s)))
            .unwrap_or_default()
    );
    println!(
        "scrub (this node): {} checked, {} bad; gossip packets refused: {}",
        st.scrubbed, st.scrub_bad, st.gossip_rejected
    );
}

/// The directory's Raft log as the mount's server sees it: who leads, and on the leader
/// how far each replica lags.
fn print_directory(d: &RaftStatus) {
    let leader = match (d.leader, &d.leader_addr) {
        (Some(id), Some(addr)) => format!("replica {id} at {addr}"),
        (Some(id), None) => format!("replica {id}"),
        _ => "none (an election is under way)".to_string(),
    };
    let index = |i: Option<u64>| i.map_or("-".to_string(), |i| i.to_string());
    println!(
        "directory:         replicated (Raft), leader {leader}, term {}",
        d.term
    );
    println!(
        "  this replica:    {} {}, log to {}, applied to {}",
        d.id,
        d.state.to_lowercase(),
        index(d.last_log),
        index(d.applied)
    );
    let voters: Vec<String> = d.voters.iter().map(|(id, a)| format!("{id}={a}")).collect();
    println!("  voters:          {}", voters.join(","));
    for r in &d.replicas {
        println!(
            "  replica {:<7} {:24} matched {:>8}, {} behind",
            r.id,
            r.addr,
            index(r.matched),
            r.lag
        );
    }
}

/// `dfs lock | unlock --json`.
#[derive(serde::Serialize)]
struct LockedView<'a> {
    path: &'a str,
    locked: bool,
    /// The fencing token of the lock taken.
    token: Option<u64>,
}

/// Prints a mount's answer to `dfs lock`, `unlock` or `locks` (`shown`: the path named).
pub fn reply(shown: &str, reply: ControlReply, json: bool) -> Result<(), String> {
    match reply {
        ControlReply::Locked { token } if json => print_json(&LockedView {
            path: shown,
            locked: true,
            token: Some(token),
        }),
        ControlReply::Locked { token } => {
            println!("locked {shown} (fencing token {token})");
            Ok(())
        }
        ControlReply::Unlocked if json => print_json(&LockedView {
            path: shown,
            locked: false,
            token: None,
        }),
        ControlReply::Unlocked => {
            println!("unlocked {shown}");
            Ok(())
        }
        ControlReply::Locks(locks) if json => print_json(&locks),
        ControlReply::Locks(locks) => {
            print_locks(&locks);
            Ok(())
        }
        ControlReply::Done if json => print_json(&serde_json::json!({ "done": true })),
        ControlReply::Done => {
            println!("done");
            Ok(())
        }
        other => Err(format!("unexpected answer from the mount: {other:?}")),
    }
}

fn print_locks(locks: &[LockInfo]) {
    println!(
        "{:>10} {:8} {:9} {:>21} {:28} {:>7} {:>9}",
        "INODE", "CLASS", "MODE", "RANGE", "HOLDER", "TOKEN", "EXPIRES"
    );
    for l in locks {
        let end = if l.range.end == u64::MAX {
            "EOF".to_string()
        } else {
            l.range.end.to_string()
        };
        println!(
            "{:>10} {:8} {:9} {:>21} {:28} {:>7} {:>8.1}s",
            l.ino,
            format!("{:?}", l.class),
            format!("{:?}", l.mode),
            format!("{}-{end}", l.range.start),
            format!("{} ({:#x})", l.label, l.client),
            l.token,
            l.expires_in_ms as f64 / 1000.0
        );
    }
}
