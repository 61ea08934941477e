//! The `dfs-server` binary: settings (`dfs_server::config`), logging, tokio runtime,
//! signals, readiness for the service manager, and wiring of the services. Must not
//! implement any service itself.

use dfs_common::tasks::{self, Vital};
use dfs_common::Timestamp;
use dfs_server::blobs::{gc, journal, BlobStore};
use dfs_server::callbacks::Registry;
use dfs_server::cluster::key::ClusterKey;
use dfs_server::cluster::{repair, replicate, scrub, Cluster, ClusterSettings};
use dfs_server::config::Args;
use dfs_server::lock::{LockConfig, LockService};
use dfs_server::namespace::Namespace;
use dfs_server::net::limits::{ConnLimits, Gate};
use dfs_server::raft::{node, Replica};
use dfs_server::services::{Services, Settings};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Both daemons allocate and free many small buffers per request (database pages, HTTP
/// frames); mimalloc does that with less CPU than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread: what libraries create for us (redb's files) is private too.
    dfs_common::private_files::restrict_umask();
    if let Some(done) =
        dfs_common::cli_docs::generate_if_asked(<Args as clap::CommandFactory>::command)
    {
        return done;
    }
    match std::env::args().nth(1).as_deref() {
        Some("init") => return dfs_server::kdc::cli::init_main(),
        Some("admin") => return dfs_server::raft::admin::admin_main(),
        _ => {}
    }
    let args = match dfs_server::config::parse(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    if args.print_config {
        return match dfs_server::config::to_toml(&args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dfs-server: cannot print the settings: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = dfs_common::logging::init(args.log_format, None) {
        eprintln!("dfs-server: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
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

/// The replication service of this node (standalone without a cluster key).
async fn open_cluster(args: &Args, addr: std::net::SocketAddr) -> Result<Arc<Cluster>, String> {
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
    Ok(Cluster::new(ClusterSettings {
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
    }))
}

/// The namespace this node serves: its own database, or its replica of the directory's
/// Raft log when `--directory-id` is given.
async fn open_namespace(
    args: &Args,
    now: Timestamp,
    cluster: &Arc<Cluster>,
) -> Result<(Arc<Namespace>, Option<Arc<Replica>>), String> {
    let data_dir = &args.data_dir;
    let Some(id) = args.directory_id else {
        let (db_path, root_mode) = (data_dir.join("meta.redb"), args.root_mode);
        let ns = tokio::task::spawn_blocking(move || Namespace::open(&db_path, root_mode, now))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot open the metadata database: {e}"))?;
        return Ok((Arc::new(ns), None));
    };
    let voters = node::parse_voters(&args.directory_voters)?;
    if voters.get(&id) != Some(&cluster.settings.advertise) {
        return Err(format!(
            "--directory-id {id}: --directory-voters must name this node's address {} as {id}",
            cluster.settings.advertise
        ));
    }
    if !cluster.is_clustered() {
        return Err("--directory-voters needs --cluster-key-file".into());
    }
    if data_dir.join("meta.redb").exists() && !data_dir.join("raft-log.redb").exists() {
        return Err(format!(
            "{} holds a directory that is not replicated; a replica starts from an empty data dir",
            data_dir.display()
        ));
    }
    let replica = node::start_node(id, &voters, data_dir, args.root_mode, cluster.peers.clone())
        .await
        .map_err(|e| format!("cannot start the directory replica: {e}"))?;
    log::info!("directory replica {id} of {} voters", voters.len());
    Ok((replica.ns.clone(), Some(Arc::new(replica))))
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
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let cluster = open_cluster(&args, addr).await?;
    let (ns, replica) = open_namespace(&args, now, &cluster).await?;
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
        if let Some(security) = dfs_server::kdc::cli::open_realm(&data_dir, args.anonymous)? {
            let _ = svc.security.set(security);
        }
    } else {
        log::info!("data node: serves blobs to members of its cluster only (cluster key)");
    }
    svc.set_cluster(cluster.clone());
    if let Some(replica) = replica {
        svc.coherence.set_replica(replica);
    }
    svc.tx.set_lease(Duration::from_secs(args.tx_lease_secs));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Without the sweepers no lease or transaction ever expires, without the journal task
    // small blobs are never checkpointed: a node without one is no use (Vital::Yes).
    let lock_sweeper = tasks::watch(
        "lock sweeper",
        locks.spawn_sweeper(stop_rx.clone()),
        Vital::Yes,
    );
    let tx_sweeper = tasks::watch(
        "transaction sweeper",
        dfs_server::tx::spawn_sweeper(svc.transactions(), stop_rx.clone()),
        Vital::Yes,
    );
    let journal_task = tasks::watch(
        "blob journal",
        journal::spawn(blobs.clone(), ns.clone(), stop_rx.clone()),
        Vital::Yes,
    );
    let gc_task = directory.then(|| {
        let gc = gc::spawn(
            blobs.clone(),
            ns.clone(),
            args.gc_grace_secs,
            stop_rx.clone(),
        );
        tasks::watch("blob gc", gc, Vital::No)
    });
    let mut cluster_tasks = Vec::new();
    if cluster.is_clustered() {
        cluster.join(stop_rx.clone()).await?;
        replicate::spawn_puller(svc.replication(), stop_rx.clone());
        let scrub = scrub::spawn(svc.replication(), stop_rx.clone());
        cluster_tasks.push(tasks::watch("scrubber", scrub, Vital::No));
        if directory {
            let repair = repair::spawn(svc.replication(), stop_rx.clone());
            cluster_tasks.push(tasks::watch("repair", repair, Vital::No));
        }
        log::info!(
            "cluster member {} (roles {}), {} replicas, seeds {:?}",
            cluster.settings.advertise,
            if directory { "directory,data" } else { "data" },
            args.replicas,
            args.peers
        );
    }
    let sweeper = {
        let callbacks = callbacks.clone();
        let sweeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let n = callbacks.sweep(Instant::now());
                if n > 0 {
                    log::info!("forgot {n} clients away for over an hour");
                }
            }
        });
        let abort = sweeper.abort_handle();
        tasks::watch("client sweeper", sweeper, Vital::No);
        abort
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
    let gate = Gate::new(conn_limits);
    let registry = {
        let (open, refused) = (gate.clone(), gate.tally.clone());
        let (callbacks, cluster) = (callbacks.clone(), cluster.clone());
        Arc::new(dfs_server::metrics::registry(
            move || callbacks.queued_frames() as i64,
            Arc::new(move || cluster.status()),
            move || open.open() as i64,
            move || refused.refused_total() as i64,
        ))
    };
    dfs_server::metrics::install(registry.clone(), args.metrics_anonymous);
    if let Some(addr) = &args.metrics_listen {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on --metrics-listen {addr}: {e}"))?;
        log::info!(
            "metrics at http://{}/metrics",
            metrics_listener.local_addr().map_err(|e| e.to_string())?
        );
        tokio::spawn(dfs_server::metrics::serve_plain(
            metrics_listener,
            registry,
            stop_rx.clone(),
        ));
    }
    // A service manager (systemd's Type=notify) learns the node serves; without one
    // (no NOTIFY_SOCKET) this does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    dfs_server::api::serve(listener, svc, gate, stop_rx).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);

    sweeper.abort();
    // The watchers log a task's panic (and end the process if it was vital); they
    // themselves only end, so there is nothing left to drop here.
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
