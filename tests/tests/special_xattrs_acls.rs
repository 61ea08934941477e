//! Special files, extended attributes and POSIX ACLs on a mount, used as local programs
//! use them (issue #20 items 3-5): each kind of inode created, listed, stat'ed, renamed,
//! linked and removed; a fifo and a socket working between two local processes; every
//! error Linux gives for xattrs (EEXIST, ENODATA, ERANGE, E2BIG, EOPNOTSUPP, EPERM,
//! EACCES); ACLs set with setfacl, enforced for other users by the kernel, kept in step
//! with chmod, and default ACLs inherited by new files and directories.
//!
//! Other users are played by `setpriv` (uids 1234 and 1235, no supplementary groups).

use dfs_tests::{
    bind_socket, get_xattr, get_xattr_sized, list_xattrs, makedev, mknod, remove_xattr, set_xattr,
    sh_ok, sh_timeout, Fixture,
};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

fn errno_of<T: std::fmt::Debug>(r: io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// Runs `script` as uid/gid `uid` (no supplementary groups) in `dir`; returns whether it
/// succeeded and its stderr.
fn as_user(dir: &Path, uid: u32, script: &str) -> (bool, String) {
    let full = format!("setpriv --reuid {uid} --regid {uid} --clear-groups bash -c '{script}'");
    let out = sh_timeout(dir, &full, Duration::from_secs(60));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fifos_sockets_and_device_nodes_are_inodes_like_any_other() {
    let fx = Fixture::new();
    let m = fx.mnt();
    mknod(m.join("fifo"), libc::S_IFIFO | 0o640, 0).unwrap();
    mknod(m.join("chr"), libc::S_IFCHR | 0o600, makedev(1, 3)).unwrap();
    mknod(m.join("blk"), libc::S_IFBLK | 0o600, makedev(7, 42)).unwrap();
    bind_socket(m.join("sock")).unwrap();
    assert_eq!(
        errno_of(mknod(m.join("fifo"), libc::S_IFIFO | 0o640, 0)),
        Some(libc::EEXIST)
    );
    let kinds = |p: &str| fs::symlink_metadata(m.join(p)).unwrap();
    assert!(kinds("fifo").file_type().is_fifo());
    assert_eq!(kinds("fifo").mode() & 0o7777, 0o640);
    assert!(kinds("chr").file_type().is_char_device());
    assert_eq!(kinds("chr").rdev(), makedev(1, 3));
    assert!(kinds("blk").file_type().is_block_device());
    assert_eq!(kinds("blk").rdev(), makedev(7, 42));
    assert!(kinds("sock").file_type().is_socket());
    let mut names: Vec<String> = fs::read_dir(m)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["blk", "chr", "fifo", "sock"]);

    // Renamed, linked and removed like files; the link shares the inode.
    fs::rename(m.join("fifo"), m.join("pipe")).unwrap();
    fs::hard_link(m.join("pipe"), m.join("pipe2")).unwrap();
    assert_eq!(kinds("pipe").nlink(), 2);
    assert_eq!(kinds("pipe").ino(), kinds("pipe2").ino());
    fs::remove_file(m.join("pipe2")).unwrap();
    assert_eq!(kinds("pipe").nlink(), 1);

    // A fifo on the mount is a pipe between local processes.
    let writer = {
        let p = m.join("pipe");
        std::thread::spawn(move || fs::write(p, b"through the fifo"))
    };
    let mut got = Vec::new();
    fs::File::open(m.join("pipe"))
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(got, b"through the fifo");

    // A unix socket bound on the mount takes connections locally.
    fs::remove_file(m.join("sock")).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(m.join("sock")).unwrap();
    let mut client = std::os::unix::net::UnixStream::connect(m.join("sock")).unwrap();
    client.write_all(b"hello").unwrap();
    let (mut served, _) = listener.accept().unwrap();
    let mut buf = [0u8; 5];
    served.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");

    for p in ["pipe", "chr", "blk", "sock"] {
        fs::remove_file(m.join(p)).unwrap();
    }
    assert_eq!(fs::read_dir(m).unwrap().count(), 0);
}

#[test]
fn extended_attributes_follow_linuxs_rules_and_errors() {
    let fx = Fixture::new();
    let m = fx.mnt();
    let f = m.join("f");
    fs::write(&f, b"contents").unwrap();
    assert_eq!(errno_of(get_xattr(&f, "user.a")), Some(libc::ENODATA));
    set_xattr(&f, "user.a", b"one", 0).unwrap();
    set_xattr(&f, "user.b", b"", 0).unwrap();
    assert_eq!(get_xattr(&f, "user.a").unwrap(), b"one");
    assert_eq!(get_xattr(&f, "user.b").unwrap(), b"");
    let mut names = list_xattrs(&f).unwrap();
    names.sort();
    assert_eq!(names, ["user.a", "user.b"]);

    // Create and replace flags.
    assert_eq!(
        errno_of(set_xattr(&f, "user.a", b"x", libc::XATTR_CREATE)),
        Some(libc::EEXIST)
    );
    assert_eq!(
        errno_of(set_xattr(&f, "user.c", b"x", libc::XATTR_REPLACE)),
        Some(libc::ENODATA)
    );
    set_xattr(&f, "user.a", b"two", libc::XATTR_REPLACE).unwrap();
    assert_eq!(get_xattr(&f, "user.a").unwrap(), b"two");

    // Sizes: the size query, a buffer too small, a value or a name too large.
    assert_eq!(get_xattr_sized(&f, "user.a", 0).unwrap().1, 3);
    assert_eq!(
        errno_of(get_xattr_sized(&f, "user.a", 2)),
        Some(libc::ERANGE)
    );
    assert_eq!(
        errno_of(set_xattr(&f, "user.big", &vec![7u8; 65537], 0)),
        Some(libc::E2BIG)
    );
    let long = format!("user.{}", "n".repeat(251));
    assert_eq!(errno_of(set_xattr(&f, &long, b"x", 0)), Some(libc::ERANGE));
    set_xattr(&f, "user.max", &vec![7u8; 65536], 0).unwrap();
    assert_eq!(get_xattr(&f, "user.max").unwrap().len(), 65536);

    // Namespaces: unknown ones are not supported; user.* is for files and directories.
    assert_eq!(
        errno_of(set_xattr(&f, "nonsense.a", b"x", 0)),
        Some(libc::EOPNOTSUPP)
    );
    std::os::unix::fs::symlink("f", m.join("link")).unwrap();
    assert_eq!(
        errno_of(set_xattr(m.join("link"), "user.a", b"x", 0)),
        Some(libc::EPERM)
    );
    set_xattr(&f, "trusted.admin", b"root may", 0).unwrap();
    set_xattr(m, "user.on_the_root", b"dirs too", 0).unwrap();

    // Other users: read access to read user.*, write access to set it; trusted.* is
    // root's.
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let (read, err) = as_user(m, 1234, "getfattr --only-values -n user.a f");
    assert!(read, "uid 1234 reads user.a of a 0644 file: {err}");
    let (set, err) = as_user(m, 1234, "setfattr -n user.a -v three f");
    assert!(!set && err.contains("Permission denied"), "{err}");
    let (set, err) = as_user(m, 1234, "setfattr -n trusted.x -v y f");
    assert!(!set && err.contains("Operation not permitted"), "{err}");

    // Removal, and what is removed is gone for good.
    remove_xattr(&f, "user.b").unwrap();
    assert_eq!(errno_of(remove_xattr(&f, "user.b")), Some(libc::ENODATA));
    assert_eq!(errno_of(get_xattr(&f, "user.b")), Some(libc::ENODATA));

    // cp -a keeps them; the copy's are its own.
    sh_ok(m, "cp -a f g && setfattr -n user.a -v changed g");
    assert_eq!(get_xattr(m.join("g"), "user.a").unwrap(), b"changed");
    assert_eq!(get_xattr(&f, "user.a").unwrap(), b"two");
    assert_eq!(get_xattr(m.join("g"), "user.max").unwrap().len(), 65536);

    // A remount asks the server: nothing lived only in the cache.
    drop(fx.mount);
    let again = dfs_tests::Mount::start(
        &fx.server.addr(),
        &fx.tmp.path().join("mnt2"),
        &fx.tmp.path().join("cache2"),
        &[],
    );
    assert_eq!(get_xattr(again.join("f"), "user.a").unwrap(), b"two");
    assert_eq!(
        get_xattr(again.path(), "user.on_the_root").unwrap(),
        b"dirs too"
    );
}

#[test]
fn acls_are_enforced_kept_in_step_with_the_mode_and_inherited() {
    let fx = Fixture::new();
    let m = fx.mnt();
    fs::write(m.join("secret"), b"for 1234 only\n").unwrap();
    fs::set_permissions(m.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let (read, _) = as_user(m, 1234, "cat secret");
    assert!(!read, "uid 1234 read a 0600 root file with no ACL");
    sh_ok(m, "setfacl -m u:1234:r secret");
    let (read, err) = as_user(m, 1234, "cat secret");
    assert!(read, "uid 1234 is named in the ACL: {err}");
    let (read, _) = as_user(m, 1235, "cat secret");
    assert!(!read, "uid 1235 is not named in the ACL");
    let acl = sh_ok(m, "getfacl -cp secret");
    assert!(acl.contains("user:1234:r--"), "{acl}");
    // The group bits of the mode are the ACL's mask: chmod g-r takes 1234's read away.
    assert_eq!(
        fs::metadata(m.join("secret")).unwrap().mode() & 0o777,
        0o640
    );
    sh_ok(m, "chmod g-r secret");
    let acl = sh_ok(m, "getfacl -cp secret");
    assert!(acl.contains("mask::---"), "{acl}");
    let (read, _) = as_user(m, 1234, "cat secret");
    assert!(!read, "the mask (chmod g-r) still let uid 1234 read");
    sh_ok(m, "setfacl -b secret");
    assert!(!sh_ok(m, "getfacl -cp secret").contains("1234"));

    // Default ACLs: inherited by files and directories made in the directory, the umask
    // ignored (POSIX.1e), and by the subdirectory as its own default.
    sh_ok(
        m,
        "mkdir shared && setfacl -d -m u:1234:rwx,g::rx,o::- shared",
    );
    sh_ok(m, "umask 077 && touch shared/file && mkdir shared/sub");
    let file_acl = sh_ok(m, "getfacl -cp shared/file");
    assert!(file_acl.contains("user:1234:rwx"), "{file_acl}");
    let (wrote, err) = as_user(m, 1234, "echo inherited > shared/file");
    assert!(
        wrote,
        "uid 1234 writes a file its inherited ACL opens: {err}"
    );
    let sub_acl = sh_ok(m, "getfacl -cp shared/sub");
    assert!(
        sub_acl.contains("user:1234:rwx") && sub_acl.contains("default:user:1234:rwx"),
        "{sub_acl}"
    );
    let (wrote, err) = as_user(m, 1234, "echo from 1234 > shared/sub/new");
    assert!(
        wrote,
        "uid 1234 writes in a directory its inherited ACL opens: {err}"
    );
    assert_eq!(fs::read(m.join("shared/sub/new")).unwrap(), b"from 1234\n");
    let (wrote, _) = as_user(m, 1235, "echo x > shared/sub/other");
    assert!(!wrote, "uid 1235 wrote where no ACL lets it");
}
