//! Spare files: the emptied files of deleted blobs, kept to be renamed into place as new
//! temp files, so that the garbage collector's deletes and the stores' creates reuse
//! inodes instead of freeing one and allocating another for each small file.
//!
//! Why: on ext4 without a journal (this project's VMs), allocating an inode skips every
//! inode of the group freed in the last minute or more, looking each one up, and every
//! creator on that file system pays (the mounts' cache copies too). After an `rm -rf` of
//! 3,000 files through a mount and their collection, the next 3,000 creates cost the
//! server 20-30% and the mount 40-65% more CPU (`docs/design.md`, "Spare files").
//! Emptying a file and renaming it costs neither an inode free nor that scan.
//!
//! Owns: one directory of spares, named by number, and the list of them. Must not: hand
//! out a file that is not empty, or keep more than its limit (the rest are deleted). The
//! caller must not retire a file someone may still read: it is emptied, then reused.

use dfs_common::private_files;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct SpareFiles {
    dir: PathBuf,
    /// Numbers of the spares on hand (each is `dir/NUMBER`).
    free: Mutex<Vec<u64>>,
    next: AtomicU64,
    limit: usize,
}

impl SpareFiles {
    /// The spares in `dir` (created if missing), keeping at most `limit`: those a former
    /// run left are reused (emptied again on their way out), any beyond the limit deleted.
    pub fn open(dir: &Path, limit: usize) -> io::Result<SpareFiles> {
        private_files::create_dir_all(dir)?;
        let (mut free, mut next) = (Vec::new(), 0u64);
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let number = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok());
            match number {
                Some(n) if free.len() < limit && entry.file_type()?.is_file() => {
                    next = next.max(n + 1);
                    free.push(n);
                }
                _ => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(SpareFiles {
            dir: dir.to_path_buf(),
            free: Mutex::new(free),
            next: AtomicU64::new(next),
            limit,
        })
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(number.to_string())
    }

    /// Spares on hand.
    pub fn count(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Removes the file at `path` from its directory, as `fs::remove_file` would (the
    /// same errors, NotFound included), keeping its inode as an empty spare if there is
    /// room.
    pub fn retire(&self, path: &Path) -> io::Result<()> {
        if self.count() >= self.limit {
            return fs::remove_file(path);
        }
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let spare = self.path(number);
        fs::rename(path, &spare)?;
        // Empty it before it counts as a spare, so its blocks are free at once. If that
        // fails, delete it after all.
        let emptied = OpenOptions::new()
            .write(true)
            .open(&spare)
            .and_then(|f| f.set_len(0));
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if emptied.is_ok() && free.len() < self.limit {
            free.push(number);
        } else {
            drop(free);
            let _ = fs::remove_file(&spare);
        }
        Ok(())
    }

    /// A new empty file at `path`, opened for reading and writing: a spare renamed there
    /// if there is one (replacing whatever `path` named), else a newly created file
    /// (truncated, if `path` already named one).
    pub fn create(&self, path: &Path) -> io::Result<File> {
        let spare = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(spare) = spare.map(|n| self.path(n)) {
            if fs::rename(&spare, path).is_ok() {
                return OpenOptions::new()
                    .read(true)
                    .write(true)
                    .truncate(true)
                    .open(path);
            }
            // The spare is gone or unusable; create instead.
            let _ = fs::remove_file(&spare);
        }
        private_files::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_retired_file_is_reused_empty_under_its_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let spares = SpareFiles::open(&dir.path().join("spare"), 10).unwrap();
        let old = dir.path().join("old");
        fs::write(&old, b"old contents").unwrap();
        let inode = fs::metadata(&old).unwrap().ino();
        spares.retire(&old).unwrap();
        assert!(!old.exists());
        assert_eq!(spares.count(), 1);

        let new = dir.path().join("new");
        let mut f = spares.create(&new).unwrap();
        assert_eq!(
            fs::metadata(&new).unwrap().ino(),
            inode,
            "the inode was not reused"
        );
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert!(got.is_empty(), "a spare came back with contents");
        f.write_all(b"new").unwrap();
        assert_eq!(fs::read(&new).unwrap(), b"new");
        assert_eq!(spares.count(), 0);
        // With no spare left, create makes a new file.
        let other = dir.path().join("other");
        spares.create(&other).unwrap();
        assert!(other.exists());
    }

    #[test]
    fn retire_reports_a_missing_file_and_respects_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let spare_dir = dir.path().join("spare");
        let spares = SpareFiles::open(&spare_dir, 2).unwrap();
        let err = spares.retire(&dir.path().join("nothing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        for i in 0..4 {
            let p = dir.path().join(format!("f{i}"));
            fs::write(&p, b"x").unwrap();
            spares.retire(&p).unwrap();
            assert!(!p.exists());
        }
        assert_eq!(spares.count(), 2);
        assert_eq!(fs::read_dir(&spare_dir).unwrap().count(), 2);
        for e in fs::read_dir(&spare_dir).unwrap() {
            assert_eq!(e.unwrap().metadata().unwrap().len(), 0, "a spare kept data");
        }
        // A second run finds them, and keeps no more than its own limit.
        drop(spares);
        let again = SpareFiles::open(&spare_dir, 1).unwrap();
        assert_eq!(again.count(), 1);
        assert_eq!(fs::read_dir(&spare_dir).unwrap().count(), 1);
    }
}
