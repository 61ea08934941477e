//! The mount's local control socket: how the `dfs` command talks to a running `dfs-mount`
//! (take and drop locks the mount then keeps renewing, show status). One Unix socket per
//! mount at `/run/dfs/<mountpoint with / as _>.sock` (a mount of a user other than root:
//! in `$XDG_RUNTIME_DIR/dfs/`, else `/tmp/dfs-UID/`); each request is one length-prefixed
//! bincode message, and the caller's uid comes from the kernel (SO_PEERCRED), never from
//! the message. Must not hold policy: it forwards to the cache manager.

use dfs_client::CacheManager;
pub use dfs_client::MountStatus;
use dfs_common::locks::{LockClass, LockInfo, LockMode, LockRange, LockRequest, ReleaseRequest};
use dfs_common::{codec, FsError, Ino};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Take an advisory lock on `ino` for the calling user, kept until `Unlock`.
    Lock {
        ino: Ino,
        shared: bool,
        wait_secs: u32,
    },
    Unlock {
        ino: Ino,
    },
    Locks {
        ino: Option<Ino>,
    },
    Status,
    /// Use these credentials for the calling uid (from `dfs login`).
    Login(dfs_common::auth::Credentials),
    /// Forget the calling uid's credentials.
    Logout,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ControlReply {
    Locked { token: u64 },
    Unlocked,
    Locks(Vec<LockInfo>),
    Status(MountStatus),
    Error(FsError),
    Done,
}

/// Where root's mounts put their control sockets.
const SYSTEM_SOCKET_DIR: &str = "/run/dfs";

/// Where the mounts of the calling user put their control sockets: root's in `/run/dfs`
/// (reachable by every user), another user's in their own runtime directory.
fn own_socket_dir() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from(SYSTEM_SOCKET_DIR);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("dfs"),
        _ => PathBuf::from(format!("/tmp/dfs-{uid}")),
    }
}

fn socket_name(mountpoint: &Path) -> String {
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    format!("{name}.sock")
}

/// Where the control socket of the mount at `mountpoint` lives: root's mount's socket if
/// there is one, else the calling user's own.
pub fn socket_path(mountpoint: &Path) -> PathBuf {
    let system = Path::new(SYSTEM_SOCKET_DIR).join(socket_name(mountpoint));
    if system.exists() {
        return system;
    }
    own_socket_dir().join(socket_name(mountpoint))
}

/// The lock owner of locks taken with the `dfs` command by `uid`: one per user per client,
/// so that `dfs unlock` by the same user releases what `dfs lock` took.
fn cli_owner(uid: u32) -> u64 {
    (1 << 63) | uid as u64
}

async fn read_msg<T: serde::de::DeserializeOwned>(s: &mut UnixStream) -> Result<T, FsError> {
    let len = s.read_u32().await? as usize;
    if len > 1 << 20 {
        return Err(FsError::TooLarge(format!("control message of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    codec::decode(&buf)
}

async fn write_msg<T: Serialize>(s: &mut UnixStream, msg: &T) -> Result<(), FsError> {
    let bytes = codec::encode(msg);
    s.write_u32(bytes.len() as u32).await?;
    s.write_all(&bytes).await?;
    Ok(())
}

/// Serves the control socket of `mountpoint` until the runtime stops.
pub fn serve(
    mgr: Arc<CacheManager>,
    mountpoint: &Path,
    server: String,
) -> Result<PathBuf, FsError> {
    let dir = own_socket_dir();
    let path = dir.join(socket_name(mountpoint));
    std::fs::create_dir_all(&dir)?;
    // Every user reaches root's sockets (this daemon's umask is 077); a user's mount is
    // that user's alone (fusermount3 mounts it for its owner only).
    let mode = std::fs::metadata(&dir)?.permissions();
    if dir == Path::new(SYSTEM_SOCKET_DIR)
        && std::os::unix::fs::PermissionsExt::mode(&mode) & 0o005 != 0o005
    {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    // Every user may ask; what they may do is decided by their uid (SO_PEERCRED).
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let mgr = mgr.clone();
            let server = server.clone();
            tokio::spawn(async move {
                let uid = match stream.peer_cred() {
                    Ok(c) => c.uid(),
                    Err(_) => return,
                };
                let reply = match read_msg::<ControlRequest>(&mut stream).await {
                    // The mount acts for the caller, with their credentials (SO_PEERCRED uid).
                    Ok(req) => dfs_client::auth::as_uid(uid, handle(&mgr, &server, uid, req)).await,
                    Err(e) => ControlReply::Error(e),
                };
                let _ = write_msg(&mut stream, &reply).await;
            });
        }
    });
    Ok(path)
}

async fn handle(mgr: &CacheManager, server: &str, uid: u32, req: ControlRequest) -> ControlReply {
    let result = match req {
        ControlRequest::Lock {
            ino,
            shared,
            wait_secs,
        } => {
            let req = LockRequest {
                ino,
                class: LockClass::Advisory,
                mode: if shared {
                    LockMode::Shared
                } else {
                    LockMode::Exclusive
                },
                range: LockRange::WHOLE,
                owner: cli_owner(uid),
                pid: 0,
                label: dfs_client::cache::locks::label_for(uid),
                wait_ms: 0,
            };
            let wait = Duration::from_secs(wait_secs as u64);
            mgr.lock_acquire(req, wait)
                .await
                .map(|token| ControlReply::Locked { token })
        }
        ControlRequest::Unlock { ino } => {
            let req = ReleaseRequest {
                ino,
                class: LockClass::Advisory,
                owner: cli_owner(uid),
                range: None,
            };
            mgr.lock_release(req).await.map(|_| ControlReply::Unlocked)
        }
        ControlRequest::Locks { ino } => mgr.lock_list(ino, 10_000).await.map(ControlReply::Locks),
        ControlRequest::Status => Ok(ControlReply::Status(mgr.status(server))),
        ControlRequest::Login(creds) => {
            dfs_client::auth::set_credentials(uid, creds);
            Ok(ControlReply::Done)
        }
        ControlRequest::Logout => {
            dfs_client::auth::drop_credentials(uid);
            Ok(ControlReply::Done)
        }
    };
    result.unwrap_or_else(ControlReply::Error)
}

/// Sends one request to the mount at `mountpoint` (used by the `dfs` command).
pub async fn ask(mountpoint: &Path, req: &ControlRequest) -> Result<ControlReply, FsError> {
    let path = socket_path(mountpoint);
    let mut stream = UnixStream::connect(&path).await.map_err(|e| {
        FsError::Unavailable(format!(
            "no dfs-mount answers at {} ({e}); is {} mounted?",
            path.display(),
            mountpoint.display()
        ))
    })?;
    write_msg(&mut stream, req).await?;
    read_msg(&mut stream).await
}
