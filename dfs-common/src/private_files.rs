//! Files a daemon keeps at rest are its own: the server's data dir (blobs, databases and
//! their logs, spares, the realm) and a mount's cache (copies of files, set-aside copies,
//! partial fetches, its index) hold other users' file contents, so no other local user may
//! read them, whatever the permissions of the files they came from.
//!
//! The rule: directories 0700, files 0600, whatever the umask the daemon was started with.
//! Files and directories the daemons create go through `options`, `create`, `create_dir`
//! and `create_dir_all` here (the umask can only take bits away from these modes); files a
//! library creates for them (redb's databases) are covered by `restrict_umask`, which each
//! daemon calls first thing; and `tighten` walks the tree at start and fixes anything
//! looser (left by an older release, or by hand), reporting what it changed.
//!
//! Owns: the two modes and those helpers. Must not decide where anything is stored.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory a daemon keeps.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file a daemon keeps.
pub const FILE_MODE: u32 = 0o600;

/// `OpenOptions` that create files with `FILE_MODE` (the caller adds read, write, create…).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates (or truncates) `path` for writing, as `File::create` does, but private.
pub fn create(path: &Path) -> io::Result<File> {
    options().write(true).create(true).truncate(true).open(path)
}

/// Creates directory `path` (its parent must exist), private.
pub fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(path)
}

/// Creates `path` and any missing parents, each new one private.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Sets this process's umask to 077, so that files and directories made for it by code
/// that does not use these helpers (libraries) are private too. Call it before any thread
/// starts: the umask is one per process.
pub fn restrict_umask() {
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// What `tighten` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    /// Directories set to `DIR_MODE`.
    pub dirs: u64,
    /// Files set to `FILE_MODE`.
    pub files: u64,
    /// Entries of other kinds (sockets, fifos, devices), left as they are; symlinks are
    /// not followed and not counted.
    pub others: Vec<PathBuf>,
}

impl Tightened {
    pub fn changed_anything(&self) -> bool {
        self.dirs > 0 || self.files > 0
    }
}

/// Sets every directory under `root` (itself included) to `DIR_MODE` and every file to
/// `FILE_MODE` where they differ. Refuses a `root` that is not a directory of this user's,
/// or that is shared (sticky, like /tmp): a daemon's data belongs in a directory of its
/// own, and tightening a shared one would lock its other users out.
pub fn tighten(root: &Path) -> io::Result<Tightened> {
    let meta = fs::symlink_metadata(root)?;
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: {why}; give the daemon a directory of its own",
                root.display()
            ),
        ))
    };
    if !meta.is_dir() {
        return refuse("not a directory");
    }
    if meta.uid() != me {
        return refuse(&format!(
            "owned by uid {}, not by this process's {me}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o1000 != 0 {
        return refuse("a shared directory (sticky bit)");
    }
    let mut done = Tightened::default();
    let mut todo = vec![(root.to_path_buf(), meta)];
    while let Some((path, meta)) = todo.pop() {
        let mode = meta.mode() & 0o7777;
        if meta.is_dir() {
            if mode != DIR_MODE {
                fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))?;
                done.dirs += 1;
            }
            for entry in fs::read_dir(&path)? {
                let entry = entry?;
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    // Removed while we looked (a temporary file): nothing to protect.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                todo.push((entry.path(), meta));
            }
        } else if meta.is_file() {
            if mode != FILE_MODE {
                match fs::set_permissions(&path, Permissions::from_mode(FILE_MODE)) {
                    Ok(()) => done.files += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        } else if !meta.file_type().is_symlink() {
            done.others.push(path);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn new_files_and_dirs_are_private_and_loose_ones_are_tightened() {
        let dir = tempfile::TempDir::new().unwrap();
        let tmp = dir.path().join("root");
        let deep = tmp.join("a/b");
        create_dir_all(&deep).unwrap();
        create(&deep.join("f")).unwrap();
        for p in [&tmp, &tmp.join("a"), &deep] {
            assert_eq!(mode(p) & !DIR_MODE, 0, "{}", p.display());
        }
        assert_eq!(mode(&deep.join("f")) & !FILE_MODE, 0);
        fs::set_permissions(&tmp, Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&deep, Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(deep.join("f"), Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", deep.join("link")).unwrap();
        let done = tighten(&tmp).unwrap();
        assert_eq!((done.dirs, done.files), (2, 1), "{done:?}");
        assert!(done.others.is_empty());
        assert_eq!((mode(&tmp), mode(&deep)), (DIR_MODE, DIR_MODE));
        assert_eq!(mode(&deep.join("f")), FILE_MODE);
        assert_ne!(
            mode(Path::new("/etc/passwd")),
            FILE_MODE,
            "a symlink was followed"
        );
        assert_eq!(tighten(&tmp).unwrap(), Tightened::default());
    }

    #[test]
    fn shared_or_foreign_roots_are_refused() {
        assert!(tighten(Path::new("/tmp")).is_err());
        assert!(tighten(Path::new("/nonexistent-dfs-dir")).is_err());
    }
}
