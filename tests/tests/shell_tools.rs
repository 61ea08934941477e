//! Everyday tools on a dfs mount: cp, tar, mv, rm, append, truncate, chmod, touch, links,
//! git, an editor-style save, unusual names, and the errno of common mistakes. Each test
//! has its own server and mount (`Fixture`); shell steps are bounded by `sh_ok`.

use dfs_tests::{
    list, lstat, metadata, mkdir, op, pseudo_random, read, remove_file, rename, sh_ok, write,
    Fixture,
};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A local tree with nested and empty directories, text, binary, empty and multi-MiB
/// files, an executable and a symlink.
fn make_tree(root: &Path) {
    let d = |p: &str| fs::create_dir_all(root.join(p)).unwrap();
    let f = |p: &str, data: &[u8]| fs::write(root.join(p), data).unwrap();
    d("a/b/c");
    d("empty-dir");
    d("bin");
    f("README.txt", b"dfs test tree\nline two\n");
    f("empty", b"");
    f("with space.txt", b"spaces in names\n");
    f("a/data.bin", &pseudo_random(100 * 1024 + 3, 1));
    f("a/b/big.bin", &pseudo_random(3 * 1024 * 1024 + 17, 2));
    f("a/b/c/deep.txt", "deep\n".repeat(1000).as_bytes());
    f("bin/run.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a/b/c/deep.txt", root.join("link-to-deep")).unwrap();
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn cp_r_tree_in_and_back_out() {
    let fx = Fixture::new();
    let (l, m) = (fx.local(), fx.mnt().to_path_buf());
    make_tree(&l.join("tree"));
    sh_ok(
        &l,
        &format!(
            "cp -r {lt} {mt}\n\
             diff -r {lt} {mt}\n\
             test -x {mt}/bin/run.sh\n\
             test \"$(readlink {mt}/link-to-deep)\" = a/b/c/deep.txt\n\
             cp -r {mt} {lb}\n\
             diff -r {lt} {lb}\n",
            lt = q(&l.join("tree")),
            mt = q(&m.join("tree")),
            lb = q(&l.join("back")),
        ),
    );
}

#[test]
fn cp_a_preserves_modes_sizes_and_times() {
    let fx = Fixture::new();
    let (l, m) = (fx.local(), fx.mnt().to_path_buf());
    make_tree(&l.join("tree"));
    // Directory sizes differ between file systems; everything else must match.
    let listing =
        "find . \\( -type d -printf '%P d %m %T@\\n' \\) -o -printf '%P %y %m %s %T@\\n' | sort";
    let out = sh_ok(
        &l,
        &format!(
            "export TZ=UTC\n\
             touch -h -d '2010-01-01 00:00:00' {lt}/link-to-deep\n\
             touch -d '2011-01-01 00:00:00.123456789' {lt}/a/b/c/deep.txt\n\
             cp -a {lt} {mt}\n\
             (cd {lt} && {listing}) > {l}/want\n\
             (cd {mt} && {listing}) > {l}/got\n\
             diff {l}/want {l}/got\n\
             cat {l}/got\n",
            lt = q(&l.join("tree")),
            mt = q(&m.join("tree")),
            l = q(&l),
        ),
    );
    assert!(out.contains("a/b/c/deep.txt f 644 5000 1293840000.1234567890"));
}

#[test]
fn tar_create_on_mount_and_extract_on_mount() {
    let fx = Fixture::new();
    let (l, m) = (fx.local(), fx.mnt().to_path_buf());
    make_tree(&l.join("tree"));
    sh_ok(
        &l,
        &format!(
            "tar -C {l} -cf {m}/t.tar tree\n\
             mkdir {m}/x\n\
             tar -C {m}/x -xf {m}/t.tar\n\
             diff -r {l}/tree {m}/x/tree\n\
             tar -C {m}/x -czf {l}/back.tgz tree\n\
             mkdir {l}/y\n\
             tar -C {l}/y -xzf {l}/back.tgz\n\
             diff -r {l}/tree {l}/y/tree\n\
             tar -tf {m}/t.tar > {l}/list\n\
             grep -qx 'tree/a/b/c/deep.txt' {l}/list\n",
            l = q(&l),
            m = q(&m),
        ),
    );
}

#[test]
fn mv_files_and_directories() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    sh_ok(
        &m,
        "echo one > f1\n\
         echo two > f2\n\
         mv f1 f2\n\
         test ! -e f1\n\
         test \"$(cat f2)\" = one\n\
         mkdir -p d1/sub\n\
         echo x > d1/sub/x\n\
         mv d1 d2\n\
         test ! -e d1\n\
         test \"$(cat d2/sub/x)\" = x\n\
         mkdir d3\n\
         mv d2 d3/\n\
         test \"$(cat d3/d2/sub/x)\" = x\n\
         mv f2 d3/d2/sub/\n\
         test \"$(cat d3/d2/sub/f2)\" = one\n\
         mkdir e1 e2\n\
         echo q > e1/q\n\
         mv -T e1 e2\n\
         test ! -e e1\n\
         test \"$(cat e2/q)\" = q\n\
         echo over > e2/q2\n\
         mv e2/q2 e2/q\n\
         test \"$(cat e2/q)\" = over\n\
         test \"$(ls e2)\" = q\n",
    );
    assert_eq!(list(&m).unwrap(), ["d3", "e2"]);
    assert_eq!(list(m.join("d3/d2/sub")).unwrap(), ["f2", "x"]);
    // Rename over an existing file through the syscall: the old target is gone.
    write(m.join("src"), b"new").unwrap();
    write(m.join("dst"), b"old contents").unwrap();
    rename(m.join("src"), m.join("dst")).expect("rename over existing file");
    assert_eq!(read(m.join("dst")).unwrap(), b"new");
    assert_eq!(
        lstat(m.join("src")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
}

#[test]
fn rm_r_and_readdir_of_more_than_one_page() {
    let fx = Fixture::new();
    let (l, m) = (fx.local(), fx.mnt().to_path_buf());
    make_tree(&l.join("tree"));
    sh_ok(
        &m,
        &format!(
            "cp -r {lt} tree\n\
             rm -r tree\n\
             test ! -e tree\n\
             mkdir many\n\
             for i in $(seq 1 1500); do : > many/f$i; done\n\
             test \"$(ls many | wc -l)\" = 1500\n\
             test \"$(ls many | sort | uniq | wc -l)\" = 1500\n\
             rm -r many\n\
             test -z \"$(ls -A)\"\n",
            lt = q(&l.join("tree")),
        ),
    );
    assert!(list(&m).unwrap().is_empty());
}

#[test]
fn append_with_shell_redirection() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    sh_ok(
        &m,
        "printf 'one\\n' > f\n\
         printf 'two\\n' >> f\n\
         printf 'three' >> f\n\
         head -c 1048576 /dev/zero | tr '\\0' 'z' > big\n\
         printf '!' >> big\n",
    );
    assert_eq!(read(m.join("f")).unwrap(), b"one\ntwo\nthree");
    let big = read(m.join("big")).unwrap();
    assert_eq!(big.len(), 1024 * 1024 + 1);
    assert!(big[..1024 * 1024].iter().all(|&b| b == b'z'));
    assert_eq!(big[1024 * 1024], b'!');
}

#[test]
fn truncate_shrinks_and_grows() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let data = pseudo_random(10_000, 7);
    write(m.join("f"), &data).unwrap();
    sh_ok(&m, "truncate -s 100 f");
    assert_eq!(read(m.join("f")).unwrap(), &data[..100]);
    assert_eq!(metadata(m.join("f")).unwrap().len(), 100);
    sh_ok(&m, "truncate -s 5000 f");
    let mut want = data[..100].to_vec();
    want.resize(5000, 0);
    assert_eq!(read(m.join("f")).unwrap(), want);
    assert_eq!(metadata(m.join("f")).unwrap().len(), 5000);
    sh_ok(&m, "truncate -s 0 f && test ! -s f");
    assert_eq!(read(m.join("f")).unwrap(), b"");
    // truncate(1) creates a missing file.
    sh_ok(&m, "truncate -s 3 newfile");
    assert_eq!(read(m.join("newfile")).unwrap(), [0, 0, 0]);
}

#[test]
fn chmod_changes_mode() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let out = sh_ok(
        &m,
        "touch f\n\
         mkdir d\n\
         chmod 640 f\n\
         chmod 750 d\n\
         stat -c '%a' f d\n\
         chmod u+x,o+r f\n\
         stat -c '%a' f\n",
    );
    assert_eq!(out, "640\n750\n744\n");
    assert_eq!(metadata(m.join("f")).unwrap().mode() & 0o7777, 0o744);
    let d = metadata(m.join("d")).unwrap();
    assert!(d.is_dir());
    assert_eq!(d.mode() & 0o7777, 0o750);
}

#[test]
fn touch_d_sets_mtime() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    // 2001-02-03 04:05:06 UTC
    const T: i64 = 981_173_106;
    let out = sh_ok(
        &m,
        "echo x > f\n\
         mkdir d\n\
         TZ=UTC touch -d '2001-02-03 04:05:06' f d\n\
         TZ=UTC touch -d '2001-02-03 04:05:06' new\n\
         stat -c '%Y' f d new\n",
    );
    assert_eq!(out, format!("{T}\n{T}\n{T}\n"));
    assert_eq!(metadata(m.join("f")).unwrap().mtime(), T);
    assert_eq!(read(m.join("f")).unwrap(), b"x\n");
}

#[test]
fn symlink_and_readlink() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let out = sh_ok(
        &m,
        "mkdir sub\n\
         echo target > sub/t.txt\n\
         ln -s sub/t.txt link\n\
         ln -s sub dirlink\n\
         ln -s /nonexistent/x dangling\n\
         readlink link dirlink dangling\n\
         cat link\n\
         ls dirlink\n",
    );
    assert_eq!(
        out, "sub/t.txt\nsub\n/nonexistent/x\ntarget\nt.txt\n",
        "readlink/cat/ls through symlinks"
    );
    assert!(lstat(m.join("link")).unwrap().file_type().is_symlink());
    let target = op("read_link", {
        let p = m.join("link");
        move || fs::read_link(p)
    })
    .unwrap();
    assert_eq!(target, PathBuf::from("sub/t.txt"));
    assert_eq!(
        metadata(m.join("dangling")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
}

#[test]
fn hard_link_with_ln() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    write(m.join("f"), b"shared data").unwrap();
    let r = op("link", {
        let (a, b) = (m.join("f"), m.join("h"));
        move || fs::hard_link(a, b)
    });
    if let Err(e) = &r {
        panic!(
            "hard link f -> h failed: {e} (errno {:?}); hard links are expected to work",
            e.raw_os_error()
        );
    }
    let (f, h) = (
        metadata(m.join("f")).unwrap(),
        metadata(m.join("h")).unwrap(),
    );
    assert_eq!(f.ino(), h.ino(), "a hard link shares the inode");
    assert_eq!((f.nlink(), h.nlink()), (2, 2));
    assert_eq!(read(m.join("h")).unwrap(), b"shared data");
    // Through `ln` too.
    sh_ok(&m, "ln f h2 && test \"$(cat h2)\" = 'shared data'");
    assert_eq!(metadata(m.join("f")).unwrap().nlink(), 3);
    // A write through one name shows through the others.
    write(m.join("h"), b"changed via h").unwrap();
    assert_eq!(read(m.join("f")).unwrap(), b"changed via h");
    assert_eq!(read(m.join("h2")).unwrap(), b"changed via h");
    remove_file(m.join("f")).unwrap();
    remove_file(m.join("h2")).unwrap();
    let h = metadata(m.join("h")).unwrap();
    assert_eq!(h.nlink(), 1);
    assert_eq!(read(m.join("h")).unwrap(), b"changed via h");
}

#[test]
fn git_init_add_commit_log() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let out = sh_ok(
        &m,
        "g() { git -c user.name=dfs-test -c user.email=dfs@test.invalid \
               -c 'safe.directory=*' -c init.defaultBranch=main \"$@\"; }\n\
         g init -q repo\n\
         cd repo\n\
         echo hello > a.txt\n\
         mkdir src\n\
         echo 'fn main() {}' > src/main.rs\n\
         g add .\n\
         g commit -q -m first\n\
         echo more >> a.txt\n\
         g mv src/main.rs src/lib.rs\n\
         g commit -q -am second\n\
         test -z \"$(g status --porcelain)\"\n\
         g fsck --no-progress\n\
         g log --format=%s\n",
    );
    assert!(
        out.ends_with("second\nfirst\n"),
        "git log printed {out:?}, want second then first"
    );
}

#[test]
fn editor_style_save_write_fsync_rename() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    write(m.join("doc.txt"), b"original text\n").unwrap();
    assert_eq!(read(m.join("doc.txt")).unwrap(), b"original text\n");
    let dir = m.clone();
    op("editor save", move || -> std::io::Result<()> {
        let tmp = dir.join(".doc.txt.swp");
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(b"edited text\nwith a second line\n")?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join("doc.txt"))?;
        // Editors fsync the directory after the rename.
        fs::File::open(&dir)?.sync_all()
    })
    .expect("write temp, fsync, rename over original");
    assert_eq!(
        read(m.join("doc.txt")).unwrap(),
        b"edited text\nwith a second line\n"
    );
    assert_eq!(list(&m).unwrap(), ["doc.txt"]);
    assert_eq!(
        sh_ok(&m, "cat doc.txt"),
        "edited text\nwith a second line\n"
    );
}

#[test]
fn names_with_spaces_and_non_ascii() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let name = "héllo wörld ☃.txt";
    write(m.join(name), "snow ☃\n").unwrap();
    assert!(list(&m).unwrap().contains(&name.to_string()));
    assert_eq!(read(m.join(name)).unwrap(), "snow ☃\n".as_bytes());
    mkdir(m.join("dïr with spaces")).unwrap();
    rename(m.join(name), m.join("dïr with spaces").join(name)).unwrap();
    let out = sh_ok(
        &m,
        "ls 'dïr with spaces'\n\
         cat 'dïr with spaces/héllo wörld ☃.txt'\n\
         cp 'dïr with spaces/héllo wörld ☃.txt' 'copy ✓ ü.txt'\n\
         ls\n",
    );
    assert_eq!(
        out,
        "héllo wörld ☃.txt\nsnow ☃\ncopy ✓ ü.txt\ndïr with spaces\n"
    );
}

#[test]
fn non_utf8_names_round_trip() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let name = std::ffi::OsStr::from_bytes(b"latin1-caf\xe9");
    write(m.join(name), b"bytes").unwrap();
    let names = op("readdir", {
        let m = m.clone();
        move || -> Vec<Vec<u8>> {
            fs::read_dir(&m)
                .unwrap()
                .map(|e| e.unwrap().file_name().as_bytes().to_vec())
                .collect()
        }
    });
    assert_eq!(names, vec![b"latin1-caf\xe9".to_vec()]);
    assert_eq!(read(m.join(name)).unwrap(), b"bytes");
}

#[test]
fn errors_have_the_right_errno() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    mkdir(m.join("dir")).unwrap();
    write(m.join("dir/inside"), b"x").unwrap();
    mkdir(m.join("empty")).unwrap();
    write(m.join("file"), b"x").unwrap();

    let mut bad = Vec::new();
    let mut expect = |what: &str, want: i32, r: std::io::Result<()>| match r {
        Err(e) if e.raw_os_error() == Some(want) => {}
        other => bad.push(format!("{what}: want errno {want}, got {other:?}")),
    };
    let p = |s: &str| m.join(s);
    let f = |what: &'static str, f: Box<dyn FnOnce() -> std::io::Result<()> + Send>| op(what, f);

    // ENOENT
    let (a, b) = (p("missing"), p("missing/x"));
    expect(
        "open missing",
        libc::ENOENT,
        f("open", Box::new(move || fs::File::open(a).map(drop))),
    );
    expect(
        "create in missing dir",
        libc::ENOENT,
        f("create", Box::new(move || fs::write(b, b"x"))),
    );
    let a = p("missing");
    expect(
        "unlink missing",
        libc::ENOENT,
        f("unlink", Box::new(move || fs::remove_file(a))),
    );
    let a = p("missing");
    expect(
        "rmdir missing",
        libc::ENOENT,
        f("rmdir", Box::new(move || fs::remove_dir(a))),
    );
    // EEXIST
    let a = p("dir");
    expect(
        "mkdir existing dir",
        libc::EEXIST,
        f("mkdir", Box::new(move || fs::create_dir(a))),
    );
    let a = p("file");
    expect(
        "mkdir over file",
        libc::EEXIST,
        f("mkdir", Box::new(move || fs::create_dir(a))),
    );
    let a = p("file");
    expect(
        "O_CREAT|O_EXCL existing",
        libc::EEXIST,
        f(
            "open excl",
            Box::new(move || {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(a)
                    .map(drop)
            }),
        ),
    );
    let a = p("file");
    expect(
        "symlink over file",
        libc::EEXIST,
        f(
            "symlink",
            Box::new(move || std::os::unix::fs::symlink("x", a)),
        ),
    );
    // ENOTEMPTY
    let a = p("dir");
    expect(
        "rmdir non-empty",
        libc::ENOTEMPTY,
        f("rmdir", Box::new(move || fs::remove_dir(a))),
    );
    let (a, b) = (p("empty"), p("dir"));
    expect(
        "rename dir over non-empty dir",
        libc::ENOTEMPTY,
        f("rename", Box::new(move || fs::rename(a, b))),
    );
    // ENOTDIR
    let a = p("file/x");
    expect(
        "open file/x",
        libc::ENOTDIR,
        f("open", Box::new(move || fs::File::open(a).map(drop))),
    );
    let a = p("file/sub");
    expect(
        "mkdir file/sub",
        libc::ENOTDIR,
        f("mkdir", Box::new(move || fs::create_dir(a))),
    );
    let a = p("file");
    expect(
        "readdir file",
        libc::ENOTDIR,
        f("readdir", Box::new(move || fs::read_dir(a).map(drop))),
    );
    let a = p("file");
    expect(
        "rmdir file",
        libc::ENOTDIR,
        f("rmdir", Box::new(move || fs::remove_dir(a))),
    );
    let (a, b) = (p("empty"), p("file"));
    expect(
        "rename dir over file",
        libc::ENOTDIR,
        f("rename", Box::new(move || fs::rename(a, b))),
    );
    // EISDIR
    let a = p("dir");
    expect(
        "open dir for write",
        libc::EISDIR,
        f(
            "open",
            Box::new(move || OpenOptions::new().write(true).open(a).map(drop)),
        ),
    );
    let a = p("dir");
    expect(
        "unlink dir",
        libc::EISDIR,
        f("unlink", Box::new(move || fs::remove_file(a))),
    );
    let (a, b) = (p("file"), p("empty"));
    expect(
        "rename file over dir",
        libc::EISDIR,
        f("rename", Box::new(move || fs::rename(a, b))),
    );
    // ENAMETOOLONG (256 bytes; 255 is the limit and must work)
    let long = "n".repeat(256);
    let a = p(&long);
    expect(
        "create 256-byte name",
        libc::ENAMETOOLONG,
        f("create", Box::new(move || fs::write(a, b"x"))),
    );
    let a = p(&long);
    expect(
        "mkdir 256-byte name",
        libc::ENAMETOOLONG,
        f("mkdir", Box::new(move || fs::create_dir(a))),
    );
    let (a, b) = (p("file"), p(&long));
    expect(
        "rename to 256-byte name",
        libc::ENAMETOOLONG,
        f("rename", Box::new(move || fs::rename(a, b))),
    );

    let ok = p(&"n".repeat(255));
    if let Err(e) = write(&ok, b"x") {
        bad.push(format!("create 255-byte name: want success, got {e}"));
    }
    // Nothing above may have changed the tree.
    let names = list(&m).unwrap();
    let want = ["dir", "empty", "file", &"n".repeat(255)];
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    if names != want {
        bad.push(format!("tree afterwards: {names:?}, want {want:?}"));
    }
    assert!(bad.is_empty(), "wrong errors:\n{}", bad.join("\n"));
}

/// `ls -l` serves sizes from a cached listing plus readdirplus: after the same mount
/// rewrites a file (a change that breaks no promise of its own), the listing must not push
/// the old size back into the kernel.
#[test]
fn ls_l_after_rewriting_a_listed_file_shows_the_new_size() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let out = sh_ok(
        &m,
        "mkdir d && echo 1 > d/f && ls -l d >/dev/null\n\
         echo 123456789 > d/f\n\
         ls -l d | awk '/ f$/ {print $5}'\n\
         stat -c %s d/f\n",
    );
    let sizes: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        sizes,
        ["10", "10"],
        "ls -l / stat sizes after rewrite: {out:?}"
    );
}
