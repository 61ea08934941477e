//! Every kind of change made on mount A is seen on mount B within 1 s of A's call
//! returning, although B had everything involved cached (issue #20): creates after B saw
//! ENOENT, unlink, rename over a file (an editor's save) and over an empty directory,
//! RENAME_EXCHANGE, directory rename, chmod, chown, utimes, truncate, append, link,
//! symlink, mknod (fifo, device, socket), setxattr, removexattr and setfacl.
//!
//! Each case works in a directory of its own: A sets it up, B looks at every path of the
//! case (stat, contents, listing, link target, extended attributes and ACL: its kernel and
//! its daemon now cache them), A changes it, and B must then show what A shows, polled
//! every 10 ms. All cases run on one server and pair of mounts; every failure is reported
//! at the end.

use dfs_tests::{
    bind_socket, exchange, get_xattr, list_xattrs, makedev, mknod, remove_xattr, seen_within,
    set_xattr, sh_ok, truncate, Pair,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

/// Everything a program can learn about `p` without opening it for writing, in one line:
/// its kind, permissions, owner, size, link count, times, contents (regular files),
/// target (symlinks), names (directories) and extended attributes with their values (so
/// an ACL too), or the errno of lstat.
fn view(p: &Path) -> String {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) => return format!("{:?}", e.kind()),
    };
    let ft = m.file_type();
    let mut v = format!(
        "{:o} uid {} gid {} size {} nlink {} mtime {}.{} ctime {}.{} rdev {}",
        m.mode(),
        m.uid(),
        m.gid(),
        m.size(),
        m.nlink(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.rdev()
    );
    if ft.is_file() {
        v += &format!(
            " contents {:?}",
            fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned())
        );
    } else if ft.is_symlink() {
        v += &format!(" target {:?}", fs::read_link(p));
    } else if ft.is_dir() {
        let mut names: Vec<String> = fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        v += &format!(" names {names:?}");
    }
    if let Ok(mut names) = list_xattrs(p) {
        names.sort();
        for n in names {
            let value = get_xattr(p, &n).map(|b| dfs_tests::hex(&b));
            v += &format!(" xattr {n}={value:?}");
        }
    }
    v
}

struct Case {
    name: &'static str,
    /// Paths of the case, relative to its directory.
    paths: &'static [&'static str],
    /// Run on A before B looks.
    setup: fn(&Path),
    /// The change, on A.
    change: fn(&Path),
}

fn put(p: &Path, data: &str) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "create after B saw ENOENT",
            paths: &["x"],
            setup: |_| {},
            change: |d| put(&d.join("x"), "new file"),
        },
        Case {
            name: "unlink",
            paths: &["f"],
            setup: |d| put(&d.join("f"), "doomed"),
            change: |d| fs::remove_file(d.join("f")).unwrap(),
        },
        Case {
            name: "rename over a file (an editor's save)",
            paths: &["f", ".f.tmp"],
            setup: |d| put(&d.join("f"), "old contents"),
            change: |d| {
                put(&d.join(".f.tmp"), "new contents");
                fs::rename(d.join(".f.tmp"), d.join("f")).unwrap();
            },
        },
        Case {
            name: "rename over an empty directory",
            paths: &["d1", "d2", "d1/in", "d2/in"],
            setup: |d| {
                fs::create_dir(d.join("d1")).unwrap();
                put(&d.join("d1/in"), "inside");
                fs::create_dir(d.join("d2")).unwrap();
            },
            change: |d| fs::rename(d.join("d1"), d.join("d2")).unwrap(),
        },
        Case {
            name: "RENAME_EXCHANGE",
            paths: &["x", "y", "y/in"],
            setup: |d| {
                put(&d.join("x"), "file x");
                fs::create_dir(d.join("y")).unwrap();
                put(&d.join("y/in"), "in y");
            },
            change: |d| exchange(d.join("x"), d.join("y")).unwrap(),
        },
        Case {
            name: "directory rename",
            paths: &["d", "d/f", "e", "e/f"],
            setup: |d| {
                fs::create_dir(d.join("d")).unwrap();
                put(&d.join("d/f"), "moves along");
            },
            change: |d| fs::rename(d.join("d"), d.join("e")).unwrap(),
        },
        Case {
            name: "chmod",
            paths: &["f"],
            setup: |d| put(&d.join("f"), "x"),
            change: |d| {
                fs::set_permissions(d.join("f"), fs::Permissions::from_mode(0o4710)).unwrap()
            },
        },
        Case {
            name: "chown",
            paths: &["f"],
            setup: |d| put(&d.join("f"), "x"),
            change: |d| std::os::unix::fs::chown(d.join("f"), Some(1234), Some(5678)).unwrap(),
        },
        Case {
            name: "utimes",
            paths: &["f"],
            setup: |d| put(&d.join("f"), "x"),
            change: |d| {
                let f = fs::File::options().write(true).open(d.join("f")).unwrap();
                let t = UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
                f.set_times(
                    fs::FileTimes::new()
                        .set_modified(t)
                        .set_accessed(SystemTime::now()),
                )
                .unwrap();
            },
        },
        Case {
            name: "truncate",
            paths: &["f"],
            setup: |d| put(&d.join("f"), "0123456789"),
            change: |d| truncate(d.join("f"), 3).unwrap(),
        },
        Case {
            name: "append",
            paths: &["f"],
            setup: |d| put(&d.join("f"), "first\n"),
            change: |d| {
                let mut f = fs::File::options().append(true).open(d.join("f")).unwrap();
                f.write_all(b"second\n").unwrap();
            },
        },
        Case {
            name: "link",
            paths: &["f", "g"],
            setup: |d| put(&d.join("f"), "two names"),
            change: |d| fs::hard_link(d.join("f"), d.join("g")).unwrap(),
        },
        Case {
            name: "symlink",
            paths: &["s"],
            setup: |_| {},
            change: |d| std::os::unix::fs::symlink("some/where", d.join("s")).unwrap(),
        },
        Case {
            name: "mknod (fifo, character device, socket)",
            paths: &["p", "c", "sock"],
            setup: |_| {},
            change: |d| {
                mknod(d.join("p"), libc::S_IFIFO | 0o640, 0).unwrap();
                mknod(d.join("c"), libc::S_IFCHR | 0o600, makedev(1, 3)).unwrap();
                bind_socket(d.join("sock")).unwrap();
            },
        },
        Case {
            name: "setxattr",
            paths: &["f"],
            setup: |d| put(&d.join("f"), "x"),
            change: |d| set_xattr(d.join("f"), "user.colour", b"blue", 0).unwrap(),
        },
        Case {
            name: "removexattr",
            paths: &["f"],
            setup: |d| {
                put(&d.join("f"), "x");
                set_xattr(d.join("f"), "user.colour", b"blue", 0).unwrap();
            },
            change: |d| remove_xattr(d.join("f"), "user.colour").unwrap(),
        },
        Case {
            name: "setfacl",
            paths: &["f"],
            setup: |d| put(&d.join("f"), "x"),
            change: |d| {
                sh_ok(d, "setfacl -m u:1234:rw,g:5678:r f");
            },
        },
    ]
}

#[test]
fn every_kind_of_change_on_a_is_seen_on_b_within_a_second() {
    let t = Pair::new();
    let mut failures = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let dir = format!("case{i}");
        let (da, db) = (t.a.join(&dir), t.b.join(&dir));
        fs::create_dir(&da).unwrap();
        (case.setup)(&da);
        // B looks at everything (twice: the second look is served from its caches).
        for _ in 0..2 {
            for p in case.paths {
                view(&db.join(p));
            }
        }
        let before: Vec<String> = case.paths.iter().map(|p| view(&db.join(p))).collect();
        let want_before: Vec<String> = case.paths.iter().map(|p| view(&da.join(p))).collect();
        if before != want_before {
            failures.push(format!(
                "{}: before the change B shows {before:?}, A {want_before:?}",
                case.name
            ));
            continue;
        }
        (case.change)(&da);
        let since = Instant::now();
        // What B shows must come to equal what A shows (both looked at again each time:
        // A's kernel, too, learns some of its own change's effects, such as the ctime the
        // server gave a store, a moment after its call returned).
        let views = |root: &Path| {
            case.paths
                .iter()
                .map(|p| view(&root.join(p)))
                .collect::<Vec<_>>()
        };
        let seen = seen_within(since, VISIBLE_WITHIN, &true, || views(&da) == views(&db));
        let seen = seen.map_err(|_| format!("A shows {:?}, B {:?}", views(&da), views(&db)));
        match seen {
            Ok(took) => eprintln!("{}: seen on B after {took:?}", case.name),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "changes not seen on the other mount within {VISIBLE_WITHIN:?}:\n{}",
        failures.join("\n")
    );
}
