//! The mount point: is something mounted there, clearing a stale mount a killed client
//! left, detaching ours at the end, and what a user other than root may ask of FUSE.
//!
//! Owns: umount2 of dfs-mount and which mounts it looks for (mountinfo is read by
//! `dfs_common::mountinfo`). Must not start a session.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn is_mounted(mountpoint: &Path) -> bool {
    dfs_common::mountinfo::read()
        .unwrap_or_default()
        .iter()
        .any(|m| m.mount_point == mountpoint)
}

/// Detaches the mount at `mountpoint` (root: umount2; another user: `fusermount3 -uz`).
pub fn detach(mountpoint: &Path) -> std::io::Result<()> {
    if !is_root() {
        let st = std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(mountpoint)
            .status()?;
        return if st.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("fusermount3 -uz: {st}")))
        };
    }
    let c = CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Clears a mount whose daemon is gone ("Transport endpoint is not connected").
pub fn clear_stale_mount(mountpoint: &Path) -> Result<(), String> {
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

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// May this (non-root) user let other users into a mount (`allow_other`)? fusermount3
/// allows it only with `user_allow_other` in /etc/fuse.conf.
pub fn user_may_allow_other() -> bool {
    std::fs::read_to_string("/etc/fuse.conf").is_ok_and(|conf| {
        conf.lines()
            .any(|l| l.split('#').next().unwrap_or("").trim() == "user_allow_other")
    })
}
