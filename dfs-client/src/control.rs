//! The protocol of a mount's local control socket, shared by the `dfs` command (which
//! asks) and `dfs-mount` (which answers, in `dfs-fuse::control`): the messages, where each
//! mount's socket lives (`/run/dfs/<mountpoint with / as _>.sock`; a mount of a user other
//! than root: in `$XDG_RUNTIME_DIR/dfs/`, else `/tmp/dfs-UID/`), their length-prefixed
//! bincode framing, and `ask`, one request and its reply.
//!
//! Owns: the wire of the control socket. Must not serve it or decide anything a request
//! asks (the mount does, with the caller's uid from SO_PEERCRED, never from the message).

use crate::MountStatus;
use dfs_common::locks::LockInfo;
use dfs_common::{codec, FsError, Ino};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

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
pub const SYSTEM_SOCKET_DIR: &str = "/run/dfs";

/// Where the mounts of the calling user put their control sockets: root's in `/run/dfs`
/// (reachable by every user), another user's in their own runtime directory.
pub fn own_socket_dir() -> PathBuf {
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

pub fn socket_name(mountpoint: &Path) -> String {
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

pub async fn read_msg<T: serde::de::DeserializeOwned>(s: &mut UnixStream) -> Result<T, FsError> {
    let len = s.read_u32().await? as usize;
    if len > 1 << 20 {
        return Err(FsError::TooLarge(format!("control message of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    codec::decode(&buf)
}

pub async fn write_msg<T: Serialize>(s: &mut UnixStream, msg: &T) -> Result<(), FsError> {
    let bytes = codec::encode(msg);
    s.write_u32(bytes.len() as u32).await?;
    s.write_all(&bytes).await?;
    Ok(())
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
