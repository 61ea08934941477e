//! `dfs-server admin`: the directory's voters as an operation, for an admin on a server
//! host (it signs with the cluster key, as the nodes do): show the log state, add a
//! voter (it catches up as a learner first), remove one. A node that does not lead
//! answers with the leader's address, and the command asks the leader.
//!
//! Owns: the subcommand's arguments and its output. Must not change anything itself (the
//! leader does, `raft::node::change_members`).

use crate::cluster::key::ClusterKey;
use crate::cluster::peer::PeerClient;
use clap::{Parser, Subcommand};
use dfs_common::cluster::{MembershipChange, RaftStatus};
use dfs_common::FsError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Shows or changes the voters of a replicated directory.
#[derive(Parser, Debug)]
#[command(name = "dfs-server admin")]
struct AdminArgs {
    /// The cluster's key file (the one every node is started with).
    #[arg(long, value_name = "FILE")]
    cluster_key_file: PathBuf,
    /// A directory node to ask (IP:PORT); a follower sends the command to the leader.
    #[arg(long, value_name = "IP:PORT")]
    node: SocketAddr,
    /// Longest wait for a new voter to catch up and the change to commit.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout_secs: u64,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// The log state: term, leader, voters, each replica's matched index and lag.
    Status,
    /// Adds the node ID=IP:PORT as a voter (started with --directory-voters naming it and
    /// --directory-id ID, it waits until it is added).
    AddVoter {
        #[arg(value_name = "ID=IP:PORT")]
        voter: String,
    },
    /// Removes voter ID.
    RemoveVoter {
        #[arg(value_name = "ID")]
        id: u64,
    },
}

/// Runs `dfs-server admin ARGS...` (the first argument is `admin`).
pub fn admin_main() -> ExitCode {
    let args = AdminArgs::parse_from(std::env::args().skip(1));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dfs-server admin: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(status) => {
            print_status(&status);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dfs-server admin: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &AdminArgs) -> Result<RaftStatus, String> {
    let key = ClusterKey::load(&args.cluster_key_file)?;
    let change = match &args.action {
        Action::Status => MembershipChange::Show,
        Action::AddVoter { voter } => {
            let voters = super::node::parse_voters(std::slice::from_ref(voter))?;
            let (id, addr) = voters.into_iter().next().ok_or("no voter given")?;
            MembershipChange::AddVoter {
                id,
                addr: addr.to_string(),
            }
        }
        Action::RemoveVoter { id } => MembershipChange::RemoveVoter { id: *id },
    };
    let peers = PeerClient::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), Some(key), "admin");
    let ttl = Duration::from_secs(args.timeout_secs);
    let mut node = args.node;
    // A follower names the leader; an election may be under way: a few tries.
    for _ in 0..20 {
        match peers.members(node, &change, ttl).await {
            Ok(status) => return Ok(status),
            Err(FsError::NotLeader(leader)) if change != MembershipChange::Show => {
                eprintln!("{node} does not lead the directory (leader: {leader:?})");
                match leader.parse() {
                    Ok(addr) => node = addr,
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            Err(e) => return Err(format!("{node}: {e}")),
        }
    }
    Err("no leader answered".into())
}

fn print_status(s: &RaftStatus) {
    let index = |i: Option<u64>| i.map_or("-".to_string(), |i| i.to_string());
    let leader = match (s.leader, &s.leader_addr) {
        (Some(id), Some(addr)) => format!("{id} at {addr}"),
        _ => "none (an election is under way)".into(),
    };
    println!("term {}, leader {leader}", s.term);
    println!(
        "answered by replica {} ({}): log to {}, applied to {}",
        s.id,
        s.state.to_lowercase(),
        index(s.last_log),
        index(s.applied)
    );
    let voters: Vec<String> = s.voters.iter().map(|(id, a)| format!("{id}={a}")).collect();
    println!("voters: {}", voters.join(","));
    for r in &s.replicas {
        println!(
            "  replica {} at {}: matched {}, {} behind",
            r.id,
            r.addr,
            index(r.matched),
            r.lag
        );
    }
}
