//! The one reader of `/proc/self/mountinfo`: its lines as `Mount`s (mount id, mount point,
//! file system type, source) with the kernel's octal escapes (`\040` for a space …)
//! undone, which of them are dfs mounts, and the dfs mount that holds a path. Used by the
//! `dfs` command, `dfs-mount` and the integration tests.
//!
//! Owns: the format of mountinfo. Must not mount, unmount or talk to a mount.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl Mount {
    /// The server (`HOST:PORT`) of a dfs mount: fuser's own mount(2) shows fstype "fuse",
    /// mount(8) "fuse.dfs"; the source `dfs:HOST:PORT` says it is ours.
    pub fn dfs_server(&self) -> Option<&str> {
        if self.fstype != "fuse" && self.fstype != "fuse.dfs" {
            return None;
        }
        self.source.strip_prefix("dfs:")
    }
}

/// Undoes the octal escapes (`\040` for a space …) of a mountinfo field.
pub fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn unescape_string(field: &str) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// The mounts of mountinfo's text; lines it cannot read are left out.
pub fn parse(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut halves = line.splitn(2, " - ");
        let left: Vec<&str> = halves.next().unwrap_or("").split(' ').collect();
        let Some(right) = halves.next() else {
            continue;
        };
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 {
            continue;
        }
        out.push(Mount {
            id: left[0].parse().unwrap_or(0),
            mount_point: PathBuf::from(OsStr::from_bytes(&unescape(left[4]))),
            fstype: unescape_string(right.first().copied().unwrap_or_default()),
            source: unescape_string(right.get(1).copied().unwrap_or_default()),
        });
    }
    out
}

/// The mounts of this process's mount namespace.
pub fn read() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The dfs mounts among `mounts`.
pub fn dfs_mounts(mounts: &[Mount]) -> Vec<&Mount> {
    mounts.iter().filter(|m| m.dfs_server().is_some()).collect()
}

/// The dfs mount among `mounts` that holds the absolute path `abs`: the one with the
/// longest mount point above it.
pub fn dfs_mount_holding<'a>(mounts: &'a [Mount], abs: &Path) -> Option<&'a Mount> {
    dfs_mounts(mounts)
        .into_iter()
        .filter(|m| abs.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
36 35 98:0 / /mnt/a\\040b rw,noatime shared:1 - fuse dfs:10.0.0.1:7000 rw,user_id=0\n\
37 35 98:0 / /mnt/c rw - ext4 /dev/vda rw\n\
38 36 0:50 / /mnt/a\\040b/inner rw - fuse.dfs dfs:h2:7001 rw\n\
39 35 0:51 / /mnt/other rw - fuse sshfs#x rw\n\
garbage line\n";

    #[test]
    fn escapes_are_undone() {
        assert_eq!(unescape("/mnt/a\\040b"), b"/mnt/a b");
        assert_eq!(unescape("tab\\011x\\134y"), b"tab\tx\\y");
        // Not an escape: too short or not octal.
        assert_eq!(unescape("a\\04"), b"a\\04");
        assert_eq!(unescape("a\\089"), b"a\\089");
    }

    #[test]
    fn fields_are_read() {
        let mounts = parse(TEXT);
        assert_eq!(mounts.len(), 4, "the garbage line is left out");
        assert_eq!(
            mounts[0],
            Mount {
                id: 36,
                mount_point: PathBuf::from("/mnt/a b"),
                fstype: "fuse".into(),
                source: "dfs:10.0.0.1:7000".into(),
            }
        );
        assert_eq!(mounts[1].fstype, "ext4");
        assert_eq!(mounts[2].id, 38);
    }

    #[test]
    fn dfs_mounts_are_told_by_type_and_source() {
        let mounts = parse(TEXT);
        let dfs: Vec<_> = dfs_mounts(&mounts).iter().map(|m| m.id).collect();
        assert_eq!(dfs, vec![36, 38]);
        assert_eq!(mounts[0].dfs_server(), Some("10.0.0.1:7000"));
        assert_eq!(mounts[1].dfs_server(), None);
        assert_eq!(mounts[3].dfs_server(), None, "fuse, but not ours");
    }

    #[test]
    fn the_deepest_dfs_mount_holds_a_path() {
        let mounts = parse(TEXT);
        let at = |p: &str| dfs_mount_holding(&mounts, Path::new(p)).map(|m| m.id);
        assert_eq!(at("/mnt/a b/x"), Some(36));
        assert_eq!(at("/mnt/a b/inner/y"), Some(38));
        assert_eq!(at("/mnt/a"), None);
        assert_eq!(at("/mnt/c/z"), None, "not a dfs mount");
    }
}
