//! A realm for the security tests: a data dir made with `dfs-server init`, its server and
//! one mount, the users alice and bob (`dfs user add`, as the admin), `dfs login` and
//! commands and shell scripts run as a local uid (setpriv), and the credential caches and
//! service key a test reads to speak the wire itself.
//!
//! Must not: depend on the server or client crates (the realm is made and used through
//! the binaries).

use crate::mount::Mount;
use crate::procs::{bin, free_port};
use crate::server::Server;
use dfs_common::auth::{Credentials, Key};
use dfs_common::codec;
use serde::Deserialize;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The uid of alice, a user of the realm (password `alice-pw`).
pub const ALICE: u32 = 2101;
/// The uid of bob (password `bob-pw`).
pub const BOB: u32 = 2102;

/// A credential cache as `dfs login` writes it.
#[derive(Deserialize)]
pub struct CCache {
    pub server: String,
    pub tgt: Credentials,
    pub service: Credentials,
}

/// A realm made with `dfs-server init` (admin password `admin-pw`), its server, one
/// mount, and the users alice and bob.
pub struct Realm {
    pub mount: Mount,
    pub server: Server,
    pub tmp: tempfile::TempDir,
}

/// `args` run as `uid` (setpriv, no supplementary groups) with `stdin` and `env`.
pub fn run(args: &[&str], uid: u32, stdin: &str, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("setpriv");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

impl Realm {
    pub fn new(init_args: &[&str]) -> Realm {
        let tmp = tempfile::TempDir::new().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = tmp.path().join("data");
        let out = Command::new(bin("dfs-server"))
            .args([
                "init",
                "--realm",
                "TEST.DFS",
                "--password-stdin",
                "--iterations",
                "1000",
            ])
            .args(init_args)
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(b"admin-pw\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = Server::start(&data, free_port(), &[]);
        let mount = Mount::start(
            &server.addr(),
            &tmp.path().join("mnt"),
            &tmp.path().join("cache"),
            &[],
        );
        let cc = tmp.path().join("cc");
        std::fs::create_dir_all(&cc).unwrap();
        std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let r = Realm { mount, server, tmp };
        r.login(0, "admin", "admin-pw").unwrap();
        for (name, uid) in [("alice", ALICE), ("bob", BOB)] {
            let out = r.dfs(
                0,
                &[
                    "user",
                    "add",
                    name,
                    "--uid",
                    &uid.to_string(),
                    "--password-stdin",
                ],
                &format!("{name}-pw\n"),
            );
            assert!(
                out.status.success(),
                "user add: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        r
    }

    pub fn ccache(&self, uid: u32) -> PathBuf {
        self.tmp.path().join("cc").join(uid.to_string())
    }

    pub fn dfs(&self, uid: u32, args: &[&str], stdin: &str) -> std::process::Output {
        let dfs = bin("dfs");
        let mut all = vec![dfs.to_str().unwrap()];
        all.extend_from_slice(args);
        run(
            &all,
            uid,
            stdin,
            &[
                ("DFS_CCACHE", self.ccache(uid).display().to_string()),
                ("DFS_SERVER", self.server.addr()),
            ],
        )
    }

    pub fn login(&self, uid: u32, principal: &str, pw: &str) -> Result<String, String> {
        let out = self.dfs(
            uid,
            &["login", principal, "--password-stdin"],
            &format!("{pw}\n"),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// A shell command run as `uid`, in the mount.
    pub fn sh_as(&self, uid: u32, script: &str) -> std::process::Output {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .args(["bash", "-c", script])
            .current_dir(self.mount.path());
        cmd.output().unwrap()
    }

    pub fn creds(&self, uid: u32) -> CCache {
        let b = std::fs::read(self.ccache(uid)).unwrap();
        codec::decode(&b).unwrap()
    }

    pub fn service_key(&self) -> Key {
        let b = std::fs::read(self.tmp.path().join("data/realm/dfs.key")).unwrap();
        Key(b.try_into().unwrap())
    }
}
