//! What the operability tests share: the install script run into a temporary prefix, the
//! mount(8) helper put where mount(8) looks for it (and taken away again, also when the
//! test fails), Prometheus scrapes parsed with `prometheus-parse`, and a value read out
//! of one.
//!
//! Must not: leave anything in /sbin (the `HelperInSbin` guard restores what was there).

use crate::http::http;
use crate::procs::workspace_dir;
use crate::shell::run_timeout;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Runs `scripts/install.sh --no-build` with every directory under `root` (the helper in
/// `sbin`); panics with its output when it fails.
pub fn install_into(root: &Path, sbin: &Path) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_dir().join("scripts/install.sh"))
        .arg("--no-build")
        .arg("--prefix")
        .arg(root.join("prefix"))
        .arg("--sbin-dir")
        .arg(sbin)
        .arg("--unit-dir")
        .arg(root.join("units"))
        .arg("--etc-dir")
        .arg(root.join("etc"));
    let out = run_timeout(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "install.sh failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `/sbin/mount.fuse.dfs` while it lives: whatever was there before is put back on drop.
pub struct HelperInSbin {
    path: PathBuf,
    before: Option<PathBuf>,
}

impl HelperInSbin {
    /// Points /sbin/mount.fuse.dfs at `dfs_mount` (an installed dfs-mount).
    pub fn install(dfs_mount: &Path) -> HelperInSbin {
        let path = PathBuf::from("/sbin/mount.fuse.dfs");
        let before = std::fs::read_link(&path).ok();
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(dfs_mount, &path).expect("symlink /sbin/mount.fuse.dfs");
        HelperInSbin { path, before }
    }
}

impl Drop for HelperInSbin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(target) = &self.before {
            let _ = std::os::unix::fs::symlink(target, &self.path);
        }
    }
}

/// `GET /metrics` on `addr`, parsed; panics unless it is 200 and Prometheus text.
pub fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let r = http(addr, "GET", "/metrics", &[], b"").expect("GET /metrics");
    assert_eq!(r.status, 200, "GET /metrics on {addr}: {}", r.describe());
    let ct = r.header("content-type").unwrap_or_default().to_string();
    assert!(ct.starts_with("text/plain"), "content type {ct}");
    let text = r.body_text();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("metrics of {addr} do not parse: {e}\n{text}"))
}

/// The value of the sample `metric` whose labels include `labels` (0 when absent, as
/// Prometheus reads a series not yet seen); histograms give their count.
pub fn metric(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value;
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}
