//! The `dfs-server` binary: command line, tokio runtime, signals, and wiring of the
//! services. Must not implement any service itself.

use clap::Parser;
use dfs_common::Timestamp;
use dfs_server::auth::AnonymousAccess;
use dfs_server::blobs::{gc, journal, BlobStore};
use dfs_server::callbacks::Registry;
use dfs_server::cluster::key::ClusterKey;
use dfs_server::cluster::{repair, replicate, scrub, Cluster, ClusterSettings};
use dfs_server::http;
use dfs_server::http::limits::{self, ConnLimits};
use dfs_server::lock::{LockConfig, LockService};
use dfs_server::namespace::Namespace;
use dfs_server::services::{Services, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Both daemons allocate and free many small buffers per request (database pages, HTTP
/// frames); mimalloc does that with less CPU than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dfs server node: runs the directory, file and callback services of dfs (an AFS-style
/// distributed file system) in the foreground, serving HTTP/1.1 on one address.
///
/// SIGTERM or SIGINT stops it cleanly: no new connections, in-flight requests get about
/// five seconds to finish, the metadata database is closed, exit status 0.
/// Logging goes to stderr; set RUST_LOG (default: info).
///
/// `dfs-server init --realm NAME --data-dir DIR` creates a realm first (see
/// `dfs-server init --help`); a data dir with a realm requires tickets.
#[derive(Parser, Debug)]
#[command(name = "dfs-server", version)]
struct Args {
    /// Directory holding this node's data: the metadata database (meta.redb), the lock
    /// table (locks.redb) and the blob store (blobs/). Created if missing.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,

    /// Address to listen on (HOST:PORT; port 0 picks a free one, logged at start).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7070")]
    listen: String,

    /// Seconds an unreferenced blob (old contents of an overwritten or deleted file) is
    /// kept before the garbage collector deletes it.
    #[arg(long, value_name = "N", default_value_t = 300)]
    gc_grace_secs: u64,

    /// Largest file a store accepts, in bytes; a larger body is refused with 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1u64 << 40)]
    max_file_size: u64,

    /// Permission bits, in octal, of the root directory when a fresh namespace is
    /// created (owned by uid 0, gid 0). An existing namespace keeps its root as it is.
    #[arg(long, value_name = "OCTAL", default_value = "1777", value_parser = parse_octal)]
    root_mode: u32,

    /// Lock service: number of mutexes in the striped pool. A file id is hashed to one of
    /// them, so lock operations on different ids run in parallel; memory is O(N), not
    /// O(number of locks) (the lock table itself is on disk, DIR/locks.redb).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    lock_pool_size: u64,

    /// Lock service: seconds a lock is held after its grant or its holder's last renewal.
    /// A client that crashes or is cut off loses its locks this long after its last renewal.
    #[arg(long, value_name = "N", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    lock_lease_secs: u64,

    /// Lock service: longest time, in seconds, one acquire request waits for conflicting
    /// locks to go (a longer `wait_ms` is cut to this; clients ask again).
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    lock_max_wait_secs: u64,

    /// Transactions: seconds an open transaction lives after its client last renewed or
    /// used it. A client that disappears between staging and commit has its transaction
    /// aborted and its staged blobs released this long after it went.
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    tx_lease_secs: u64,

    /// Replication: other nodes of the cluster to join through (HOST:PORT, comma
    /// separated). Gossip runs over UDP on the same port as HTTP. Needs --cluster-key-file.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    peers: Vec<String>,

    /// Replication: file with the cluster's shared secret (at least 32 bytes, mode 0600,
    /// e.g. `head -c 32 /dev/urandom > cluster.key`). Gossip packets and node-to-node
    /// requests without it are refused. Setting it makes this node a cluster member.
    #[arg(long, value_name = "FILE")]
    cluster_key_file: Option<PathBuf>,

    /// Replication: this node's roles, comma separated: `directory,data` (the one node
    /// holding the namespace, locks and callbacks; it stores blobs too) or `data` (a node
    /// that only stores blobs).
    #[arg(long, value_name = "ROLES", default_value = "directory,data", value_parser = parse_roles)]
    roles: u8,

    /// Replication: the address other nodes reach this one at (default: the listen
    /// address; needed when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<SocketAddr>,

    /// Replication: copies kept of every blob (capped at the number of data nodes).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    replicas: u32,

    /// Replication: copies that must be durable before a store is acknowledged (default:
    /// a majority of R).
    #[arg(long, value_name = "W", value_parser = clap::value_parser!(u32).range(1..=16))]
    write_quorum: Option<u32>,

    /// Replication: seconds a node declared dead keeps its place before its blobs are
    /// copied to other nodes (a node that restarts sooner just catches up).
    #[arg(long, value_name = "N", default_value_t = 60)]
    dead_grace_secs: u64,

    /// Replication: seconds between repair rounds (anti-entropy) on the directory node.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    repair_interval_secs: u64,

    /// Replication: the scrubber re-hashes every local blob once per this many seconds.
    #[arg(long, value_name = "N", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    scrub_interval_secs: u64,
    /// Realm only: what callers without a ticket may do. `none`: nothing but what a mount
    /// does on its own (its callback channel, renewing and releasing its locks); `read`:
    /// also what changes nothing (lookups, listings, attributes, fetches), as the modes
    /// let `nobody` read; `write`: whatever the modes let `nobody` do. Ignored in an open
    /// cell, where nothing is authenticated.
    #[arg(long, value_name = "none|read|write", default_value = "none")]
    anonymous: AnonymousAccess,

    /// Connections: most open at once from everyone; more are answered 503 and closed
    /// (counted in the log). Lowered to fit the process's file descriptor limit.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,

    /// Connections: most open at once from one peer (an IPv4 address or an IPv6 /64).
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_PER_PEER, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_peer: u64,

    /// Connections: seconds from the first byte of a request to the end of its head.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_HEADER_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    header_timeout_secs: u64,

    /// Connections: seconds a connection waits for its next request before it is closed.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_IDLE_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout_secs: u64,

    /// Connections: seconds a request body may go without a byte, and an answer may wait
    /// for the client to take one (between bytes, never in all: large stores stream for
    /// as long as they move; lock waits and the callback channel are not cut).
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_BODY_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    body_timeout_secs: u64,
}

fn parse_roles(s: &str) -> Result<u8, String> {
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

fn main() -> ExitCode {
    // Before any thread: what libraries create for us (redb's files) is private too.
    dfs_common::private_files::restrict_umask();
    if std::env::args().nth(1).as_deref() == Some("init") {
        return dfs_server::kdc::cli::init_main();
    }
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dfs-server")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn unix_secs(t: Timestamp) -> u64 {
    t.secs.max(0) as u64
}

async fn run(args: Args) -> Result<(), String> {
    let data_dir = args.data_dir.clone();
    dfs_common::private_files::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    make_private(&data_dir).await?;
    let now = Timestamp::now();
    let db_path = data_dir.join("meta.redb");
    let root_mode = args.root_mode;
    let ns = tokio::task::spawn_blocking(move || Namespace::open(&db_path, root_mode, now))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open the metadata database: {e}"))?;
    let ns = Arc::new(ns);
    let blobs = Arc::new(
        BlobStore::open(&data_dir).map_err(|e| format!("cannot open the blob store: {e}"))?,
    );
    let directory = args.roles & dfs_common::cluster::ROLE_DIRECTORY != 0;
    if args.cluster_key_file.is_none() && (!args.peers.is_empty() || !directory) {
        return Err("--peers and --roles data need --cluster-key-file".into());
    }
    {
        let (ns, blobs) = (ns.clone(), blobs.clone());
        tokio::task::spawn_blocking(move || journal::replay(&blobs, &ns))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot replay the blob journal: {e}"))?;
    }
    // A data node has no namespace to judge orphans by; the directory's repair round
    // collects its garbage.
    if directory {
        let (ns, blobs, grace) = (ns.clone(), blobs.clone(), args.gc_grace_secs);
        tokio::task::spawn_blocking(move || gc::adopt_orphans(&blobs, &ns, grace, unix_secs(now)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot scan the blob store: {e}"))?;
    }
    let lock_config = LockConfig {
        pool_size: args.lock_pool_size as usize,
        lease: Duration::from_secs(args.lock_lease_secs),
        max_wait: Duration::from_secs(args.lock_max_wait_secs),
    };
    let lock_path = data_dir.join("locks.redb");
    let locks = tokio::task::spawn_blocking(move || LockService::open(&lock_path, lock_config))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open the lock database: {e}"))?;
    let callbacks = Arc::new(Registry::new(Registry::random_epoch()));
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    log::info!(
        "dfs-server listening on {addr}, data dir {}, epoch {:016x}",
        data_dir.display(),
        callbacks.epoch()
    );

    let settings = Settings {
        data_dir: data_dir.clone(),
        gc_grace_secs: args.gc_grace_secs,
        max_file_size: args.max_file_size,
    };
    let svc = Services::new(
        ns.clone(),
        blobs.clone(),
        callbacks.clone(),
        locks.clone(),
        settings,
    )
    .map_err(|e| format!("registered clients: {e}"))?;
    if directory {
        dfs_server::kdc::cli::enable_realm(&svc, &data_dir, args.anonymous)?;
    } else {
        log::info!("data node: serves blobs to members of its cluster only (cluster key)");
    }
    let advertise = args.advertise.unwrap_or(addr);
    let key = match &args.cluster_key_file {
        None => None,
        Some(path) => {
            if advertise.ip().is_unspecified() {
                return Err("listening on an unspecified address: give --advertise".into());
            }
            Some(ClusterKey::load(path)?)
        }
    };
    let mut seeds = Vec::new();
    for peer in &args.peers {
        let addr = tokio::net::lookup_host(peer.as_str())
            .await
            .ok()
            .and_then(|mut found| found.next())
            .ok_or_else(|| format!("--peers: cannot resolve {peer:?} (HOST:PORT)"))?;
        if addr != advertise {
            seeds.push(addr);
        }
    }
    let cluster = Cluster::new(ClusterSettings {
        advertise,
        roles: args.roles,
        seeds,
        key,
        replicas: args.replicas,
        write_quorum: args.write_quorum,
        dead_grace: Duration::from_secs(args.dead_grace_secs),
        repair_interval: Duration::from_secs(args.repair_interval_secs),
        scrub_interval: Duration::from_secs(args.scrub_interval_secs),
        gc_grace: Duration::from_secs(args.gc_grace_secs),
    });
    svc.set_cluster(cluster.clone());
    svc.tx.set_lease(Duration::from_secs(args.tx_lease_secs));
    let (stop_tx, stop_rx) = watch::channel(false);
    let lock_sweeper = locks.spawn_sweeper(stop_rx.clone());
    let tx_sweeper = dfs_server::tx::spawn_sweeper(svc.clone(), stop_rx.clone());
    let journal_task = journal::spawn(blobs.clone(), ns.clone(), stop_rx.clone());
    let gc_task = directory.then(|| {
        gc::spawn(
            blobs.clone(),
            ns.clone(),
            args.gc_grace_secs,
            stop_rx.clone(),
        )
    });
    let mut cluster_tasks = Vec::new();
    if cluster.is_clustered() {
        cluster.join(stop_rx.clone()).await?;
        replicate::spawn_puller(svc.clone(), stop_rx.clone());
        cluster_tasks.push(scrub::spawn(svc.clone(), stop_rx.clone()));
        if directory {
            cluster_tasks.push(repair::spawn(svc.clone(), stop_rx.clone()));
        }
        log::info!(
            "cluster member {advertise} (roles {}), {} replicas, seeds {:?}",
            if directory { "directory,data" } else { "data" },
            args.replicas,
            args.peers
        );
    }
    let sweeper = {
        let callbacks = callbacks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let n = callbacks.sweep(Instant::now());
                if n > 0 {
                    log::info!("forgot {n} clients away for over an hour");
                }
            }
        })
    };
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    // A database whose storage failed takes no more commits, and a clean shutdown would
    // write to it: exit at once, and let the restart recover from the log.
    tokio::spawn(async {
        let failure = dfs_server::storage_failure::wait().await;
        log::error!("{failure}; stopping so that a restart recovers from the log");
        std::process::exit(EXIT_STORAGE_FAILED);
    });

    let mut conn_limits = ConnLimits {
        max_connections: args.max_connections,
        max_per_peer: args.max_connections_per_peer,
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        body_timeout: Duration::from_secs(args.body_timeout_secs),
    };
    conn_limits.fit_to_fd_limit();
    log::info!(
        "connections: at most {} ({} per peer); timeouts: head {:?}, idle {:?}, body {:?}",
        conn_limits.max_connections,
        conn_limits.max_per_peer,
        conn_limits.header_timeout,
        conn_limits.idle_timeout,
        conn_limits.body_timeout
    );
    http::serve(listener, svc, conn_limits, stop_rx).await;

    sweeper.abort();
    let _ = journal_task.await;
    if let Some(gc_task) = gc_task {
        let _ = gc_task.await;
    }
    for t in cluster_tasks {
        let _ = t.await;
    }
    let _ = lock_sweeper.await;
    let _ = tx_sweeper.await;
    drop((blobs, callbacks));
    match Arc::try_unwrap(ns) {
        Ok(ns) => {
            drop(ns);
            log::info!("metadata database closed");
        }
        Err(_) => {
            log::warn!("metadata database still in use at exit; it will close with the process")
        }
    }
    Ok(())
}

/// Makes everything under the data dir private to this server (0700 directories, 0600
/// files), saying what was not.
async fn make_private(data_dir: &std::path::Path) -> Result<(), String> {
    let dir = data_dir.to_path_buf();
    let done = tokio::task::spawn_blocking(move || dfs_common::private_files::tighten(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot make the data dir private: {e}"))?;
    if done.changed_anything() {
        log::warn!(
            "{} directories and {} files under {} were open to other local users; they are \
             now 0700 and 0600",
            done.dirs,
            done.files,
            data_dir.display()
        );
    }
    if !done.others.is_empty() {
        log::warn!(
            "the data dir holds {} entries that are neither files nor directories, left as \
             they are: {:?}",
            done.others.len(),
            done.others
        );
    }
    Ok(())
}

/// The exit status after a database's storage failed (sysexits' EX_IOERR).
const EXIT_STORAGE_FAILED: i32 = 74;

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => log::info!("SIGINT received"),
    }
}
