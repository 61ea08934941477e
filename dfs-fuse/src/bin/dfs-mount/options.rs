//! The command line of `dfs-mount`: its long options, and the mount(8) helper's calling
//! convention (`mount.fuse.dfs SOURCE DIR [-o OPT,...] [-n] [-s] [-v] [-t fuse.dfs]`)
//! turned into those long options, so an fstab line, `mount -t fuse.dfs` and a command
//! line all reach the same settings.
//!
//! Owns: `Args`, the translation of `-o` options and which of mount(8)'s own options are
//! accepted and ignored. Must not mount anything.

use clap::{CommandFactory, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

/// Mount a dfs file system: whole files are fetched on open and stored on close, and kept
/// in a local cache that the server's callbacks keep valid.
///
/// As a mount helper (started as `mount.fuse.dfs` by mount(8), or given `-o` options) it
/// detaches once the file system is mounted and logs to CACHE_DIR/mount.log (or
/// --log-file); `-f` keeps it in the foreground. Every long option can be given as a
/// mount option, with `_` or `-`: `-o cache_dir=/var/cache/dfs,protection=privacy`.
/// mount(8)'s generic options (`_netdev`, `rw`, `nofail`, `defaults`, `auto`, `noauto`,
/// `user`, `users`, `nouser`, `nodev`, `nosuid`, `exec`, `noexec`, `atime`, `noatime`,
/// `relatime`, `x-*`, `comment=*`) are accepted and ignored.
#[derive(Parser, Debug)]
#[command(name = "dfs-mount", version)]
pub struct Args {
    /// The dfs server, HOST:PORT (e.g. 127.0.0.1:7070).
    pub server: String,
    /// Empty directory to mount on. A stale mount left there by a killed client is cleared.
    pub mountpoint: PathBuf,
    /// Directory of the on-disk cache. Unstored changes survive here across restarts and
    /// are stored when the server answers again. Default: /var/cache/dfs/HOST_PORT
    /// (a user other than root: ~/.cache/dfs/HOST_PORT).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of clean cached files kept on disk; least recently used ones are evicted
    /// first, open or unstored ones never.
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 30)]
    pub cache_size: u64,
    /// Threads reading kernel requests. They only answer what needs no waiting (anything
    /// slower goes to the async runtime), and more readers of one /dev/fuse contend in the
    /// kernel: one thread answered warm opens with a quarter less CPU than four.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Let only the mounting user use the mount (default: every user, like AFS; the kernel
    /// still checks each file's owner, group and mode). A user other than root mounting
    /// without `user_allow_other` in /etc/fuse.conf gets this.
    #[arg(long)]
    pub owner_only: bool,
    /// Serve open files through plain read/write handlers instead of FUSE passthrough
    /// (passthrough lets the kernel use the cached copy directly, at local-disk speed).
    #[arg(long)]
    pub no_passthrough: bool,
    /// Seconds to wait at start for the server to answer before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub connect_timeout: u64,
    /// Protection of signed requests in a realm: `integrity` (authenticated and
    /// tamper-evident) or `privacy` (also encrypted: file contents and directory bodies).
    /// Ignored in an open cell.
    #[arg(long, value_enum, default_value_t = Protection::Integrity)]
    pub protection: Protection,
    /// Stay in the foreground when started as a mount helper (or with `-o` options).
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Detach once mounted, as a mount helper does (the default when started as
    /// mount.fuse.dfs or given `-o` options).
    #[arg(long, conflicts_with = "foreground")]
    pub background: bool,
    /// Append the log to FILE instead of stderr (a detached mount: CACHE_DIR/mount.log).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Log lines as `text` or `json` (one object per line). Levels: RUST_LOG (default info).
    #[arg(long, value_name = "text|json", default_value = "text")]
    pub log_format: dfs_common::logging::LogFormat,
    /// Serve Prometheus metrics of this mount at http://ADDR/metrics (e.g. 127.0.0.1:9101).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    Integrity,
    Privacy,
}

/// mount(8)'s options that mean nothing to dfs-mount (the kernel mount is always nodev
/// and nosuid; a dfs mount is always read-write).
const IGNORED: &[&str] = &[
    "_netdev",
    "rw",
    "nofail",
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "nodev",
    "nosuid",
    "dev",
    "suid",
    "exec",
    "noexec",
    "async",
    "atime",
    "noatime",
    "relatime",
    "nodiratime",
    "strictatime",
    "lazytime",
    // FUSE's own, which dfs-mount always sets (or decides: --owner-only).
    "allow_other",
    "default_permissions",
    "subtype",
    "fsname",
];

/// The parsed command line, and whether it came in a mount helper's shape.
pub struct Parsed {
    pub args: Args,
    /// Started as `mount.*` or given `-o` options: detach once mounted (unless `-f`).
    pub as_helper: bool,
    /// mount(8)'s options that were accepted and ignored (logged once the log is up).
    pub ignored: Vec<String>,
}

/// Parses `argv` (with argv[0]). Errors carry the message for the terminal.
pub fn parse(argv: Vec<OsString>) -> Result<Parsed, clap::Error> {
    let invoked_as = argv
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let mut as_helper = invoked_as.starts_with("mount.");
    let mut out: Vec<OsString> = vec!["dfs-mount".into()];
    let mut ignored = Vec::new();
    let mut rest = argv.into_iter().skip(1);
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy().into_owned();
        match text.as_str() {
            "--" => {
                out.push(arg);
                out.extend(rest.by_ref());
            }
            "-o" => {
                let list = rest
                    .next()
                    .ok_or_else(|| usage("-o needs a list of options"))?;
                as_helper = true;
                mount_options(&list.to_string_lossy(), &mut out, &mut ignored)?;
            }
            o if o.starts_with("-o") => {
                as_helper = true;
                mount_options(&o[2..], &mut out, &mut ignored)?;
            }
            // mount(8)'s helper flags: no mtab (there is none), sloppy, verbose.
            "-n" | "-s" | "-v" => {}
            "-t" => {
                let t = rest.next().ok_or_else(|| usage("-t needs a type"))?;
                let t = t.to_string_lossy();
                if !matches!(t.as_ref(), "fuse.dfs" | "dfs") {
                    return Err(usage(&format!(
                        "dfs-mount mounts file systems of type fuse.dfs, not {t}"
                    )));
                }
            }
            _ => out.push(arg),
        }
    }
    let args = Args::try_parse_from(out)?;
    Ok(Parsed {
        args,
        as_helper,
        ignored,
    })
}

fn usage(msg: &str) -> clap::Error {
    Args::command().error(clap::error::ErrorKind::InvalidValue, msg)
}

/// Turns one `-o` list into long options (`cache_dir=X` -> `--cache-dir=X`).
fn mount_options(
    list: &str,
    out: &mut Vec<OsString>,
    ignored: &mut Vec<String>,
) -> Result<(), clap::Error> {
    let cmd = Args::command();
    for opt in list.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        if IGNORED.contains(&key) || key.starts_with("x-") || key == "comment" {
            ignored.push(opt.to_string());
            continue;
        }
        if key == "ro" {
            return Err(usage(
                "mount option ro: dfs mounts are read-write (use permissions to keep writers out)",
            ));
        }
        let long = key.replace('_', "-");
        let known = cmd.get_arguments().find(|a| {
            a.get_long() == Some(long.as_str()) && !matches!(long.as_str(), "help" | "version")
        });
        let Some(arg) = known else {
            let names: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !matches!(*l, "help" | "version"))
                .map(|l| l.replace('-', "_"))
                .collect();
            return Err(usage(&format!(
                "unknown mount option {key:?} (dfs options: {}; mount(8)'s generic ones are \
                 ignored)",
                names.join(", ")
            )));
        };
        let takes_value = arg.get_action().takes_values();
        match (takes_value, value) {
            (true, Some(v)) => out.push(format!("--{long}={v}").into()),
            (true, None) => {
                return Err(usage(&format!(
                    "mount option {key} needs a value: {key}=..."
                )))
            }
            (false, None) => out.push(format!("--{long}").into()),
            (false, Some(_)) => {
                return Err(usage(&format!("mount option {key} takes no value")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn helper_options_become_long_options() {
        let p = parse(argv(&[
            "/sbin/mount.fuse.dfs",
            "h:1",
            "/mnt",
            "-o",
            "rw,_netdev,cache_dir=/c,cache-size=5,protection=privacy,owner_only,x-systemd.automount",
            "-n",
            "-t",
            "fuse.dfs",
        ]))
        .unwrap();
        assert!(p.as_helper);
        assert_eq!(p.args.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(p.args.cache_size, 5);
        assert_eq!(p.args.protection, Protection::Privacy);
        assert!(p.args.owner_only);
        assert_eq!(p.ignored, ["rw", "_netdev", "x-systemd.automount"]);
    }

    #[test]
    fn plain_command_line_stays_in_the_foreground() {
        let p = parse(argv(&["dfs-mount", "h:1", "/mnt", "--cache-dir", "/c"])).unwrap();
        assert!(!p.as_helper);
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [
            "bogus",
            "cache_dir",
            "owner_only=1",
            "ro",
            "cache_size=lots",
        ] {
            let r = parse(argv(&["dfs-mount", "h:1", "/mnt", "-o", bad]));
            assert!(r.is_err(), "{bad} was accepted");
        }
        assert!(parse(argv(&["dfs-mount", "h:1", "/mnt", "-t", "ext4"])).is_err());
    }
}
