//! dfs-mount: mounts a dfs server with FUSE, in the foreground, until SIGTERM/SIGINT (which
//! store unstored files and unmount) or until someone unmounts it.

use clap::Parser;
use dfs_client::{CacheManager, CacheOptions};
use dfs_fuse::fuse::{deliver_invalidations, DfsFs};
use fuser::{Config, MountOption, SessionACL};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Both daemons allocate and free many small buffers per request (database pages, HTTP
/// frames); mimalloc does that with less CPU than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Mount a dfs file system: whole files are fetched on open and stored on close, and kept
/// in a local cache that the server's callbacks keep valid.
#[derive(Parser, Debug)]
#[command(name = "dfs-mount", version)]
struct Args {
    /// The dfs server, HOST:PORT (e.g. 127.0.0.1:7070).
    server: String,
    /// Empty directory to mount on. A stale mount left there by a killed client is cleared.
    mountpoint: PathBuf,
    /// Directory of the on-disk cache. Unstored changes survive here across restarts and
    /// are stored when the server answers again. Default: /var/cache/dfs/HOST_PORT.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Most bytes of clean cached files kept on disk; least recently used ones are evicted
    /// first, open or unstored ones never.
    #[arg(long, default_value_t = 10 << 30)]
    cache_size: u64,
    /// Threads reading kernel requests. They only answer what needs no waiting (anything
    /// slower goes to the async runtime), and more readers of one /dev/fuse contend in the
    /// kernel: one thread answered warm opens with a quarter less CPU than four.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Let only the mounting user use the mount (default: every user, like AFS; the kernel
    /// still checks each file's owner, group and mode).
    #[arg(long)]
    owner_only: bool,
    /// Serve open files through plain read/write handlers instead of FUSE passthrough
    /// (passthrough lets the kernel use the cached copy directly, at local-disk speed).
    #[arg(long)]
    no_passthrough: bool,
    /// Seconds to wait at start for the server to answer before giving up.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Protection of signed requests in a realm: `integrity` (authenticated and
    /// tamper-evident) or `privacy` (also encrypted: file contents and directory bodies).
    /// Ignored in an open cell.
    #[arg(long, value_enum, default_value_t = Protection::Integrity)]
    protection: Protection,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Protection {
    Integrity,
    Privacy,
}

fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = mountpoint.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == target))
}

fn detach(mountpoint: &Path) -> std::io::Result<()> {
    let c = CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Clears a mount whose daemon is gone ("Transport endpoint is not connected").
fn clear_stale_mount(mountpoint: &Path) -> Result<(), String> {
    if !is_mounted(mountpoint) {
        return Ok(());
    }
    // stat may still answer from cached attributes on a dead mount; reading it cannot.
    match std::fs::read_dir(mountpoint).and_then(|mut d| d.next().transpose()) {
        Ok(_) => Err(format!(
            "{} is already mounted and alive; unmount it first",
            mountpoint.display()
        )),
        Err(e) => {
            log::warn!("clearing stale mount at {} ({e})", mountpoint.display());
            detach(mountpoint).map_err(|e| format!("cannot clear stale mount: {e}"))
        }
    }
}

fn main() -> ExitCode {
    // Before any thread: what libraries create in the cache is private too (the cache's
    // own files are created private, see `dfs_common::private_files`).
    dfs_common::private_files::restrict_umask();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfs-mount: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let mountpoint = std::path::absolute(&args.mountpoint).map_err(|e| e.to_string())?;
    let cache_dir = args.cache_dir.clone().unwrap_or_else(|| {
        PathBuf::from("/var/cache/dfs").join(args.server.replace([':', '/'], "_"))
    });
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
                Ok(_) | Err(dfs_common::FsError::Unauthenticated(_)) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!("server {} does not answer: {e}", args.server))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })?;
    if args.protection == Protection::Privacy {
        if rt.block_on(dfs_fuse::login::has_realm(&args.server)) {
            dfs_client::privacy::set_privacy(true);
            log::info!("protection level: privacy (bodies encrypted with the session key)");
        } else {
            log::info!(
                "--protection privacy ignored: {} is an open cell (no realm)",
                args.server
            );
        }
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
    config.acl = if args.owner_only {
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
        let left = rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(30), mgr.store_dirty()).await {
                Ok(left) => left,
                Err(_) => mgr.dirty_count(),
            }
        });
        if left > 0 {
            log::warn!("{left} file(s) could not be stored; they stay in {} and are stored on the next mount", cache_dir.display());
        }
        if let Err(e) = detach(&mountpoint) {
            log::warn!("unmount of {}: {e}", mountpoint.display());
        }
    } else {
        log::info!("{} was unmounted", mountpoint.display());
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
