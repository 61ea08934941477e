//! dfs-mount: mounts a dfs server with FUSE until SIGTERM/SIGINT (which store unstored
//! files and unmount) or until someone unmounts it. In the foreground from a command
//! line; detached, reporting the outcome on the terminal first, as a mount helper
//! (`mount -t fuse.dfs`, an fstab line: see `options`).
//!
//! Owns: the process (options, detaching, logging, runtime, signals) and the order of
//! start-up and shut-down. Must not implement the file system (`dfs_fuse`).

mod daemon;
mod mountpoint;
mod options;

use daemon::StatusPipe;
use dfs_client::{CacheManager, CacheOptions};
use dfs_fuse::fuse::{deliver_invalidations, DfsFs};
use fuser::{Config, MountOption, SessionACL};
use mountpoint::{clear_stale_mount, detach, is_root, user_may_allow_other};
use options::{Args, Protection};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Both daemons allocate and free many small buffers per request (database pages, HTTP
/// frames); mimalloc does that with less CPU than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread: what libraries create in the cache is private too (the cache's
    // own files are created private, see `dfs_common::private_files`).
    dfs_common::private_files::restrict_umask();
    if let Some(done) =
        dfs_common::cli_docs::generate_if_asked(<Args as clap::CommandFactory>::command)
    {
        return done;
    }
    let parsed = match options::parse(std::env::args_os().collect()) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.print();
            // clap's help and version are not failures; everything else is.
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let args = parsed.args;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| default_cache_dir(&args.server));
    let detached = (parsed.as_helper || args.background) && !args.foreground;
    let log_file = args
        .log_file
        .clone()
        .or_else(|| detached.then(|| cache_dir.join("mount.log")));
    let mut status = if detached {
        match daemon::detach() {
            Ok(pipe) => pipe,
            Err(e) => {
                eprintln!("dfs-mount: cannot detach: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        StatusPipe::none()
    };
    if let Some(file) = &log_file {
        if let Some(dir) = file.parent() {
            let _ = dfs_common::private_files::create_dir_all(dir);
        }
    }
    if let Err(e) = dfs_common::logging::init(args.log_format, log_file.as_deref()) {
        let why = format!("cannot open the log: {e}");
        status.failed(&why);
        eprintln!("dfs-mount: {why}");
        return ExitCode::FAILURE;
    }
    if !parsed.ignored.is_empty() {
        log::debug!("mount options ignored: {}", parsed.ignored.join(","));
    }
    match run(args, cache_dir, &mut status) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            status.failed(&e);
            log::error!("{e}");
            eprintln!("dfs-mount: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long the daemon keeps storing unstored files when it ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Stores the files whose changes the server has not acknowledged yet (their store at
/// close failed), showing progress, for at most `DRAIN_LIMIT`; what is left stays in the
/// cache and is stored by the next mount.
fn drain(rt: &tokio::runtime::Runtime, mgr: &std::sync::Arc<CacheManager>, cache_dir: &Path) {
    use dfs_client::progress::{Progress, Unit};
    let total = mgr.dirty_count();
    if total == 0 {
        return;
    }
    log::info!("storing {total} unstored file(s) before exiting");
    let progress = Progress::new(
        "dfs-mount: storing unstored files",
        Unit::Items,
        total as u64,
    );
    let left = rt.block_on(async {
        let store = mgr.store_dirty();
        tokio::pin!(store);
        let limit = tokio::time::sleep(DRAIN_LIMIT);
        tokio::pin!(limit);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                left = &mut store => break left,
                _ = &mut limit => break mgr.dirty_count(),
                _ = tick.tick() => progress.set(total.saturating_sub(mgr.dirty_count()) as u64),
            }
        }
    });
    let stored = total.saturating_sub(left) as u64;
    if left > 0 {
        progress.finish(stored, &format!("{left} left"));
        log::warn!(
            "{left} file(s) could not be stored; they stay in {} and are stored on the next mount",
            cache_dir.display()
        );
    } else {
        progress.finish(stored, "all stored");
        log::info!("stored {total} unstored file(s)");
    }
}

/// /var/cache/dfs/HOST_PORT for root, ~/.cache/dfs/HOST_PORT (XDG) for other users.
fn default_cache_dir(server: &str) -> PathBuf {
    let name = server.replace([':', '/'], "_");
    if is_root() {
        return PathBuf::from("/var/cache/dfs").join(name);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("dfs").join(name)
}

fn run(args: Args, cache_dir: PathBuf, status: &mut StatusPipe) -> Result<(), String> {
    let mountpoint = std::path::absolute(&args.mountpoint).map_err(|e| e.to_string())?;
    clear_stale_mount(&mountpoint)?;
    if !mountpoint.is_dir() {
        return Err(format!("{} is not a directory", mountpoint.display()));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dfs-client")
        .build()
        .map_err(|e| e.to_string())?;
    let _enter = rt.enter();
    let opts = CacheOptions {
        cache_bytes: args.cache_size,
        ..CacheOptions::default()
    };
    let mgr = CacheManager::new(&args.server, &cache_dir, opts)
        .map_err(|e| format!("cache at {}: {e}", cache_dir.display()))?;
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.connect_timeout);
        loop {
            match mgr.getattr(dfs_common::ROOT_INO).await {
                // A realm that admits no anonymous callers answers, too: users log in.
                Ok(_)
                | Err(dfs_client::CacheError::Fs(dfs_common::FsError::Unauthenticated(_))) => {
                    return Ok(())
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!("server {} does not answer: {e}", args.server))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })?;
    if args.protection == Protection::Privacy {
        if rt.block_on(dfs_client::remote::Remote::new(&args.server).has_realm()) {
            dfs_client::privacy::set_privacy(true);
            log::info!("protection level: privacy (bodies encrypted with the session key)");
        } else {
            log::info!(
                "--protection privacy ignored: {} is an open cell (no realm)",
                args.server
            );
        }
    }
    if let Some(addr) = &args.metrics_listen {
        let bound = rt
            .block_on(dfs_fuse::metrics::serve(addr, mgr.clone()))
            .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
        log::info!("metrics at http://{bound}/metrics");
    }
    dfs_client::spawn_background(&mgr);

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("dfs:{}", args.server)),
        MountOption::Subtype("dfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    let owner_only = args.owner_only || (!is_root() && !user_may_allow_other());
    if owner_only && !args.owner_only {
        log::info!(
            "mounting as a user other than root without user_allow_other in /etc/fuse.conf: \
             only you can use this mount (fusermount3 mounts it for you)"
        );
    }
    config.acl = if owner_only {
        SessionACL::Owner
    } else {
        SessionACL::All
    };
    config.n_threads = Some(args.threads.max(1));
    config.clone_fd = true;
    let fs = DfsFs::new(mgr.clone(), rt.handle().clone(), !args.no_passthrough);
    let session = fuser::spawn_mount(fs, &mountpoint, &config)
        .map_err(|e| format!("mount at {}: {e}", mountpoint.display()))?;
    deliver_invalidations(&mgr, session.notifier());
    let control = dfs_fuse::control::serve(mgr.clone(), &mountpoint, args.server.clone())
        .map_err(|e| format!("control socket: {e}"))?;
    log::info!(
        "dfs {} mounted at {} (cache {}, client {:#x})",
        args.server,
        mountpoint.display(),
        cache_dir.display(),
        mgr.client_id()
    );
    status.mounted();

    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let joiner = std::thread::spawn(move || {
        let r = session.join();
        let _ = ended_tx.send(());
        r
    });
    let signalled = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        Ok::<bool, String>(tokio::select! {
            _ = term.recv() => true,
            _ = int.recv() => true,
            _ = ended_rx => false,
        })
    })?;
    if signalled {
        log::info!("signal received: storing unstored files, then unmounting");
        drain(&rt, &mgr, &cache_dir);
        if let Err(e) = detach(&mountpoint) {
            log::warn!("unmount of {}: {e}", mountpoint.display());
        }
    } else {
        log::info!("{} was unmounted", mountpoint.display());
        // Files whose store failed at close are still ours to store, mount or not.
        drain(&rt, &mgr, &cache_dir);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !joiner.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&control);
    if let Err(e) = mgr.persist_cache_index() {
        log::warn!("{e}: the next mount may fetch cached files again");
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
