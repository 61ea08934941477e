//! The mount's side of its local control socket: serving the `dfs` command's requests
//! (take and drop locks the mount then keeps renewing, show status, file credentials in
//! the mount's `CredentialStore`, which its HTTP port signs with), each for the caller's
//! uid as the kernel tells it (SO_PEERCRED), never the message's. The messages, the
//! socket's place and framing are `dfs_client::control`'s.
//!
//! Owns: answering requests. Must not hold policy: it forwards to the cache manager.

use dfs_client::auth::CredentialStore;
use dfs_client::control::{
    own_socket_dir, read_msg, socket_name, write_msg, ControlReply, ControlRequest,
    SYSTEM_SOCKET_DIR,
};
use dfs_client::port::Who;
use dfs_client::CacheManager;
use dfs_common::locks::{LockClass, LockMode, LockRange, LockRequest, ReleaseRequest};
use dfs_common::FsError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;

/// The lock owner of locks taken with the `dfs` command by `uid`: one per user per client,
/// so that `dfs unlock` by the same user releases what `dfs lock` took.
fn cli_owner(uid: u32) -> u64 {
    (1 << 63) | uid as u64
}

/// Serves the control socket of `mountpoint` until the runtime stops; `dfs login` files
/// credentials in `credentials` (the store the mount's port signs with).
pub fn serve(
    mgr: Arc<CacheManager>,
    credentials: Arc<CredentialStore>,
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
            let (mgr, credentials) = (mgr.clone(), credentials.clone());
            let server = server.clone();
            tokio::spawn(async move {
                let uid = match stream.peer_cred() {
                    Ok(c) => c.uid(),
                    Err(_) => return,
                };
                let reply = match read_msg::<ControlRequest>(&mut stream).await {
                    // The mount acts for the caller, with their credentials (SO_PEERCRED uid).
                    Ok(req) => handle(&mgr, &credentials, &server, uid, req).await,
                    Err(e) => ControlReply::Error(e),
                };
                let _ = write_msg(&mut stream, &reply).await;
            });
        }
    });
    Ok(path)
}

async fn handle(
    mgr: &CacheManager,
    credentials: &CredentialStore,
    server: &str,
    uid: u32,
    req: ControlRequest,
) -> ControlReply {
    let who = Who::user(uid);
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
            mgr.lock_acquire(&who, req, wait)
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
            mgr.lock_release(&who, req)
                .await
                .map(|_| ControlReply::Unlocked)
        }
        ControlRequest::Locks { ino } => mgr
            .lock_list(&who, ino, 10_000)
            .await
            .map(ControlReply::Locks),
        ControlRequest::Status => Ok(ControlReply::Status(mgr.status(server))),
        ControlRequest::Login(creds) => {
            credentials.set(uid, creds);
            Ok(ControlReply::Done)
        }
        ControlRequest::Logout => {
            credentials.remove(uid);
            Ok(ControlReply::Done)
        }
    };
    // The `dfs` command gets the error as the path API reports it.
    result.unwrap_or_else(|e| ControlReply::Error(e.into()))
}
