//! System calls the standard library lacks, for the tests: mknod/mkfifo, unix socket
//! binding, extended attributes (l-variants: they never follow a symlink), renameat2 and
//! truncate by path. Each returns the plain `io::Result` with the call's errno, and is
//! bounded like the other file-system operations (`fsops::op`).

use crate::fsops::op;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// mknod(2) with a full mode (`S_IFIFO | 0o644`, …) and device.
pub fn mknod(p: impl AsRef<Path>, mode: u32, dev: u64) -> io::Result<()> {
    let p = p.as_ref().to_path_buf();
    op(&format!("mknod {}", p.display()), move || {
        let c = c_path(&p);
        // SAFETY: a valid C string.
        check(unsafe { libc::mknod(c.as_ptr(), mode, dev) })
    })
}

/// makedev(3).
pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

/// Binds a unix stream socket at `p` (creates its inode), then closes the socket.
pub fn bind_socket(p: impl AsRef<Path>) -> io::Result<()> {
    let p = p.as_ref().to_path_buf();
    op(&format!("bind {}", p.display()), move || {
        std::os::unix::net::UnixListener::bind(&p).map(drop)
    })
}

/// lsetxattr(2); `flags` 0, `libc::XATTR_CREATE` or `libc::XATTR_REPLACE`.
pub fn set_xattr(p: impl AsRef<Path>, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    let (p, name, value) = (p.as_ref().to_path_buf(), name.to_string(), value.to_vec());
    op(&format!("setxattr {} {name}", p.display()), move || {
        let (c, n) = (c_path(&p), CString::new(name).expect("name without NUL"));
        // SAFETY: valid C strings and a buffer of the given length.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        };
        check(rc)
    })
}

/// lgetxattr(2) with a buffer of `cap` bytes (0: ask the size; the answer is then empty
/// and its length is returned as the second value).
pub fn get_xattr_sized(
    p: impl AsRef<Path>,
    name: &str,
    cap: usize,
) -> io::Result<(Vec<u8>, usize)> {
    let (p, name) = (p.as_ref().to_path_buf(), name.to_string());
    op(&format!("getxattr {} {name}", p.display()), move || {
        let (c, n) = (c_path(&p), CString::new(name).expect("name without NUL"));
        let mut buf = vec![0u8; cap];
        // SAFETY: valid C strings and a buffer of `cap` bytes.
        let rc = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), cap) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = rc as usize;
        buf.truncate(n.min(cap));
        Ok((buf, n))
    })
}

/// lgetxattr(2) of the whole value.
pub fn get_xattr(p: impl AsRef<Path>, name: &str) -> io::Result<Vec<u8>> {
    get_xattr_sized(p, name, 1 << 16).map(|(v, _)| v)
}

/// llistxattr(2): the names.
pub fn list_xattrs(p: impl AsRef<Path>) -> io::Result<Vec<String>> {
    let p = p.as_ref().to_path_buf();
    op(&format!("listxattr {}", p.display()), move || {
        let c = c_path(&p);
        let mut buf = vec![0u8; 1 << 16];
        // SAFETY: a valid C string and a buffer of the given length.
        let rc = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(rc as usize);
        Ok(buf
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect())
    })
}

/// lremovexattr(2).
pub fn remove_xattr(p: impl AsRef<Path>, name: &str) -> io::Result<()> {
    let (p, name) = (p.as_ref().to_path_buf(), name.to_string());
    op(&format!("removexattr {} {name}", p.display()), move || {
        let (c, n) = (c_path(&p), CString::new(name).expect("name without NUL"));
        // SAFETY: valid C strings.
        check(unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) })
    })
}

/// renameat2(2) with `RENAME_EXCHANGE`.
pub fn exchange(a: impl AsRef<Path>, b: impl AsRef<Path>) -> io::Result<()> {
    let (a, b) = (a.as_ref().to_path_buf(), b.as_ref().to_path_buf());
    op(
        &format!("exchange {} {}", a.display(), b.display()),
        move || {
            let (ca, cb) = (c_path(&a), c_path(&b));
            // SAFETY: valid C strings; AT_FDCWD with absolute or cwd-relative paths.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    ca.as_ptr(),
                    libc::AT_FDCWD,
                    cb.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            check(rc)
        },
    )
}

/// truncate(2) by path.
pub fn truncate(p: impl AsRef<Path>, len: u64) -> io::Result<()> {
    let p = p.as_ref().to_path_buf();
    op(&format!("truncate {}", p.display()), move || {
        let c = c_path(&p);
        // SAFETY: a valid C string.
        check(unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) })
    })
}
