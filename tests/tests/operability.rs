//! Operability (#26) with real processes: mounting through mount(8) (`-t fuse.dfs` and an
//! fstab line) and unmounting with umount(8), mount errors on the terminal; the metrics
//! of a node and of a mount moving by the amounts a known workload implies; a node's
//! settings from a TOML file and back through `--print-config`; the shipped systemd units
//! checked by `systemd-analyze verify`.

use dfs_tests::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn run(cmd: &mut Command) -> Output {
    let mut owned = Command::new(cmd.get_program());
    owned.args(cmd.get_args());
    run_timeout(owned, Duration::from_secs(60))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Detaches whatever is still mounted at its paths when dropped (a failed test).
struct Unmounts(Vec<PathBuf>);

impl Drop for Unmounts {
    fn drop(&mut self) {
        for p in &self.0 {
            detach_all(p);
        }
    }
}

/// The pids of the processes whose command line names `path`.
fn processes_naming(path: &Path) -> Vec<u32> {
    let needle = path.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn mount_t_fuse_dfs_and_an_fstab_line_mount_and_umount_unmounts() {
    let tmp = tempfile::TempDir::new().unwrap();
    let root = tmp.path();
    let server = Server::start(&root.join("data"), free_port(), &[]);
    install_into(root, &root.join("sbin"));
    let installed = root.join("prefix/bin/dfs-mount");
    assert_eq!(
        fs::read_link(root.join("sbin/mount.fuse.dfs")).unwrap(),
        installed,
        "install.sh links the helper to the installed dfs-mount"
    );
    let _helper = HelperInSbin::install(&installed);
    let (mnt1, mnt2, mnt3) = (root.join("m1"), root.join("m2"), root.join("m3"));
    for m in [&mnt1, &mnt2, &mnt3] {
        fs::create_dir_all(m).unwrap();
    }
    let _unmounts = Unmounts(vec![mnt1.clone(), mnt2.clone(), mnt3.clone()]);

    // mount -t fuse.dfs: detached once mounted, with the options of an admin's command.
    let opts = format!(
        "cache_dir={},cache_size=1000000000,protection=privacy,_netdev,nofail,rw",
        root.join("cache1").display()
    );
    let out = run(Command::new("mount")
        .args(["-t", "fuse.dfs", &server.addr()])
        .arg(&mnt1)
        .args(["-o", &opts]));
    assert!(out.status.success(), "mount -t fuse.dfs: {}", text(&out));
    assert!(is_mounted(&mnt1), "mount returned 0 with nothing mounted");
    fs::write(mnt1.join("hello"), b"from mount -t").unwrap();
    assert!(
        root.join("cache1/mount.log").is_file(),
        "a detached mount logs into its cache dir"
    );

    // An fstab line, mounted with mount -T FILE -a.
    let fstab = root.join("fstab");
    fs::write(
        &fstab,
        format!(
            "# dfs\n{} {} fuse.dfs cache_dir={},_netdev,defaults 0 0\n",
            server.addr(),
            mnt2.display(),
            root.join("cache2").display()
        ),
    )
    .unwrap();
    let out = run(Command::new("mount").arg("-T").arg(&fstab).arg("-a"));
    assert!(out.status.success(), "mount -T fstab -a: {}", text(&out));
    assert!(is_mounted(&mnt2));
    assert_eq!(fs::read(mnt2.join("hello")).unwrap(), b"from mount -t");

    // umount unmounts, and the daemons go with their mounts.
    for m in [&mnt1, &mnt2] {
        let out = run(Command::new("umount").arg(m));
        assert!(
            out.status.success(),
            "umount {}: {}",
            m.display(),
            text(&out)
        );
        assert!(!is_mounted(m), "{} still mounted after umount", m.display());
        wait_for(
            "the dfs-mount of an unmounted file system to exit",
            Duration::from_secs(10),
            || match processes_naming(m).as_slice() {
                [] => Ok(()),
                pids => Err(format!("{pids:?} still name {}", m.display())),
            },
        );
    }

    // Errors reach the terminal, with a non-zero exit, and nothing is mounted.
    let out = run(Command::new("mount")
        .args(["-t", "fuse.dfs", &server.addr()])
        .arg(&mnt3)
        .args(["-o", "cache_size=1,no_such_option=3"]));
    assert!(!out.status.success(), "an unknown option was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown mount option \"no_such_option\""),
        "{}",
        text(&out)
    );
    let out = run(Command::new("mount")
        .args(["-t", "fuse.dfs", "127.0.0.1:1"])
        .arg(&mnt3)
        .args([
            "-o",
            &format!(
                "connect_timeout=1,cache_dir={}",
                root.join("cache3").display()
            ),
        ]));
    assert!(!out.status.success(), "a mount of no server succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1 does not answer"),
        "the daemon's error is shown before it detaches: {}",
        text(&out)
    );
    let out = run(Command::new(&installed)
        .arg(server.addr())
        .arg(&mnt3)
        .args(["-o", "ro"]));
    assert!(!out.status.success(), "-o ro was accepted: {}", text(&out));
    assert!(!is_mounted(&mnt3));
}

#[test]
fn metrics_of_a_node_and_a_mount_move_with_a_known_workload() {
    let tmp = tempfile::TempDir::new().unwrap();
    let server_metrics = format!("127.0.0.1:{}", free_port());
    let mount_metrics = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        &tmp.path().join("data"),
        free_port(),
        &["--metrics-listen", &server_metrics],
    );
    let mount = Mount::start(
        &server.addr(),
        &tmp.path().join("mnt"),
        &tmp.path().join("cache"),
        &["--metrics-listen", &mount_metrics],
    );
    fs::create_dir(mount.join("d")).unwrap();
    let (s0, m0) = (scrape(&server_metrics), scrape(&mount_metrics));
    const FILES: usize = 100;
    const SIZE: usize = 1000;
    for i in 0..FILES {
        fs::write(mount.join(format!("d/f{i}")), vec![b'x'; SIZE]).unwrap();
    }
    let (s1, m1) = (scrape(&server_metrics), scrape(&mount_metrics));
    let delta_s =
        |name: &str, labels: &[(&str, &str)]| metric(&s1, name, labels) - metric(&s0, name, labels);
    let delta_m =
        |name: &str, labels: &[(&str, &str)]| metric(&m1, name, labels) - metric(&m0, name, labels);

    let creates = delta_s("dfs_server_dir_requests_total", &[("op", "create_open")])
        + delta_s("dfs_server_dir_requests_total", &[("op", "create")]);
    assert_eq!(creates, FILES as f64, "server: one create per file");
    assert_eq!(
        delta_s(
            "dfs_server_requests_total",
            &[("route", "store"), ("status", "200")]
        ),
        FILES as f64,
        "server: one store per file"
    );
    assert_eq!(
        delta_s("dfs_server_request_seconds_count", &[("route", "store")]),
        FILES as f64,
        "server: a latency per store"
    );
    assert_eq!(
        delta_s("dfs_server_blob_in_bytes_total", &[]),
        (FILES * SIZE) as f64
    );
    let fsyncs = delta_s("dfs_server_fsyncs_total", &[]);
    assert!(
        fsyncs >= 1.0 && fsyncs <= 2.0 * FILES as f64,
        "fsyncs {fsyncs}"
    );
    assert!(delta_s("dfs_server_commits_total", &[]) >= 2.0 * FILES as f64);
    assert!(metric(&s1, "dfs_server_connections", &[]) >= 1.0);
    // Replication, read when scraped: one node, one copy of each blob, nothing to repair.
    for name in [
        "dfs_server_cluster_members_alive",
        "dfs_server_cluster_blobs_under_replicated",
        "dfs_server_cluster_repairs_pending",
        "dfs_server_scrub_checked",
    ] {
        assert!(
            s1.samples.iter().any(|x| x.metric == name),
            "{name} is not exposed"
        );
    }
    assert_eq!(
        metric(&s1, "dfs_server_cluster_replicas_effective", &[]),
        1.0
    );
    assert_eq!(
        metric(&s1, "dfs_server_cluster_blobs_under_replicated", &[]),
        0.0
    );

    assert_eq!(
        delta_m("dfs_mount_fuse_requests_total", &[("op", "create")]),
        FILES as f64,
        "mount: one FUSE create per file"
    );
    assert_eq!(
        delta_m("dfs_mount_fuse_request_seconds_count", &[("op", "create")]),
        FILES as f64,
        "mount: a latency per create"
    );
    assert_eq!(
        delta_m("dfs_mount_stored_bytes_total", &[]),
        (FILES * SIZE) as f64
    );
    assert_eq!(metric(&m1, "dfs_mount_callback_channel_up", &[]), 1.0);
    // Every file was stored at its close; a copy written through passthrough stays marked
    // unstored until the kernel's RELEASE, which comes after close() returned.
    wait_for(
        "the mount counts no unstored file",
        Duration::from_secs(10),
        || {
            let n = metric(&scrape(&mount_metrics), "dfs_mount_unstored_files", &[]);
            if n == 0.0 {
                Ok(())
            } else {
                Err(format!("{n} unstored"))
            }
        },
    );
    assert!(metric(&m1, "dfs_mount_cache_bytes", &[]) >= (FILES * SIZE) as f64);

    // Reading them back on this mount: answered from the cache.
    for i in 0..FILES {
        assert_eq!(fs::read(mount.join(format!("d/f{i}"))).unwrap().len(), SIZE);
    }
    let m2 = scrape(&mount_metrics);
    let hits = metric(
        &m2,
        "dfs_mount_cache_total",
        &[("kind", "open"), ("result", "hit")],
    ) - metric(
        &m1,
        "dfs_mount_cache_total",
        &[("kind", "open"), ("result", "hit")],
    );
    assert_eq!(hits, FILES as f64, "warm opens are cache hits");
    assert_eq!(
        metric(&m2, "dfs_mount_fetched_bytes_total", &[]),
        metric(&m1, "dfs_mount_fetched_bytes_total", &[]),
        "nothing fetched"
    );

    // Every series the shipped Grafana dashboard plots is one the node or mount exposes.
    let base = |n: &str| {
        ["_bucket", "_count", "_sum"]
            .iter()
            .fold(n.to_string(), |n, s| {
                n.strip_suffix(s).map(str::to_string).unwrap_or(n)
            })
    };
    let exposed: std::collections::HashSet<String> = s1
        .samples
        .iter()
        .chain(&m2.samples)
        .map(|x| base(&x.metric))
        .collect();
    let dashboard =
        fs::read_to_string(workspace_dir().join("docs/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let exprs = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .filter_map(|t| t["expr"].as_str());
    let mut plotted = 0;
    for expr in exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("dfs_server_") || word.starts_with("dfs_mount_") {
                plotted += 1;
                assert!(
                    exposed.contains(&base(word)),
                    "the dashboard plots {word}, which nothing exposes ({expr})"
                );
            }
        }
    }
    assert!(plotted > 20, "the dashboard plots {plotted} series");

    // The node's own port: an open cell serves /metrics to anyone.
    let own = scrape(&server.addr());
    assert!(metric(&own, "dfs_server_requests_total", &[("route", "metrics")]) >= 0.0);
}

#[test]
fn settings_come_from_a_toml_file_and_print_config_reads_back() {
    let tmp = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let data = tmp.path().join("data");
    let file = tmp.path().join("node.toml");
    fs::write(
        &file,
        format!(
            "data-dir = {data:?}\nlisten = \"127.0.0.1:{port}\"\ngc-grace-secs = 42\n\
             peers = []\nroot-mode = \"755\"\nmetrics-anonymous = true\nlog-format = \"json\"\n"
        ),
    )
    .unwrap();
    let server_bin = bin("dfs-server");
    let printed = run(Command::new(&server_bin).arg("--config").arg(&file).args([
        "--gc-grace-secs",
        "7",
        "--print-config",
    ]));
    assert!(printed.status.success(), "{}", text(&printed));
    let first = String::from_utf8(printed.stdout.clone()).unwrap();
    let table: toml::Table = first.parse().expect("--print-config prints TOML");
    assert_eq!(
        table["gc-grace-secs"].as_integer(),
        Some(7),
        "the command line wins"
    );
    assert_eq!(
        table["listen"].as_str(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(table["root-mode"].as_str(), Some("755"));
    assert_eq!(table["metrics-anonymous"].as_bool(), Some(true));
    assert_eq!(
        table["lock-lease-secs"].as_integer(),
        Some(15),
        "defaults are shown"
    );

    let again_file = tmp.path().join("printed.toml");
    fs::write(&again_file, &first).unwrap();
    let again = run(Command::new(&server_bin)
        .arg("--config")
        .arg(&again_file)
        .arg("--print-config"));
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        String::from_utf8(again.stdout).unwrap(),
        first,
        "a round trip changes nothing"
    );

    fs::write(
        tmp.path().join("bad.toml"),
        "data-dir = \"/x\"\nno-such-setting = 1\n",
    )
    .unwrap();
    let bad = run(Command::new(&server_bin)
        .arg("--config")
        .arg(tmp.path().join("bad.toml"))
        .arg("--print-config"));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no-such-setting"),
        "{}",
        text(&bad)
    );

    // A node runs from the file alone (the harness adds --data-dir and --listen: the same).
    let server = Server::start(&data, port, &["--config", &again_file.to_string_lossy()]);
    let r = http(&server.addr(), "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(
        r.status,
        200,
        "metrics-anonymous from the file: {}",
        r.describe()
    );
    let log = fs::read_to_string(server.log_path()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with('{') && serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "log-format json from the file:\n{log}"
    );
}

#[test]
fn shipped_systemd_units_pass_systemd_analyze_verify() {
    let tmp = tempfile::TempDir::new().unwrap();
    install_into(tmp.path(), &tmp.path().join("sbin"));
    let units = tmp.path().join("units");
    // The examples are installed as *.example; verify them under their unit names.
    for u in ["mnt-dfs.mount", "mnt-dfs.automount"] {
        fs::copy(units.join(format!("{u}.example")), units.join(u)).unwrap();
    }
    let service = fs::read_to_string(units.join("dfs-server@.service")).unwrap();
    let bin_dir = tmp.path().join("prefix/bin");
    assert!(
        service.contains(&format!(
            "ExecStart={}/dfs-server --config /etc/dfs/%i.toml",
            bin_dir.display()
        )),
        "ExecStart names the installed binary:\n{service}"
    );
    assert!(service.contains("Type=notify"));
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(units.join("dfs-server@node1.service"))
        .arg(units.join("mnt-dfs.mount"))
        .arg(units.join("mnt-dfs.automount")));
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        text(&out)
    );
    assert!(
        out.stderr.is_empty(),
        "systemd-analyze verify warned: {}",
        text(&out)
    );
    for page in ["dfs-server.1", "dfs-mount.1", "dfs.1"] {
        let p = tmp.path().join("prefix/share/man/man1").join(page);
        assert!(
            fs::metadata(&p).map(|m| m.len() > 200).unwrap_or(false),
            "{} missing",
            p.display()
        );
    }
    assert!(tmp
        .path()
        .join("prefix/share/bash-completion/completions/dfs")
        .is_file());
}
