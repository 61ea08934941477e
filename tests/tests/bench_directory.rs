//! Measurements of the replicated directory for `scripts/bench-directory.sh` (#23), not
//! tests: every function here is `#[ignore]`d and prints its figures. In one run, side by
//! side, on fresh setups: one standalone node; three nodes with the directory on one of
//! them (`--roles directory,data` and `data`, as before #23); three nodes that all hold a
//! replica of the directory's Raft log. Each gets a mount that creates `BENCH_FILES`
//! (2,000) files of 4 KiB and writes one file of `BENCH_BIG_MIB` (1,024) MiB, both
//! through the mount with close (the store) included; the order of the setups rotates
//! between `BENCH_RUNS` (1) runs.

use dfs_tests::*;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One setup: its servers and the addresses a mount is given.
enum Setup {
    Single(tempfile::TempDir, Server),
    Cluster(Cluster),
}

impl Setup {
    fn start(kind: &str) -> Setup {
        match kind {
            "single" => {
                let dir = tempfile::TempDir::new_in(bench_tmp()).expect("tempdir");
                let server = Server::start(&dir.path().join("node"), free_port(), &[]);
                Setup::Single(dir, server)
            }
            "one-directory" => Setup::Cluster(Cluster::start(3, &[])),
            "raft-directory" => Setup::Cluster(Cluster::start_replicated_directory(3, &[])),
            other => panic!("no setup {other}"),
        }
    }

    fn servers(&self) -> String {
        match self {
            Setup::Single(_, s) => s.addr(),
            Setup::Cluster(c) => c.addrs().join(","),
        }
    }

    fn dir(&self) -> &std::path::Path {
        match self {
            Setup::Single(d, _) => d.path(),
            Setup::Cluster(c) => c.dir(),
        }
    }
}

fn bench_tmp() -> std::path::PathBuf {
    std::env::var_os("BENCH_TMPDIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

/// Creates `n` files of 4 KiB under `dir`; returns the time taken.
fn create_files(dir: &std::path::Path, n: usize) -> Duration {
    let data = vec![7u8; 4096];
    let started = Instant::now();
    for i in 0..n {
        std::fs::write(dir.join(format!("f{i}")), &data)
            .unwrap_or_else(|e| panic!("create f{i}: {e}"));
    }
    started.elapsed()
}

/// Writes one file of `mib` MiB (from memory, 1 MiB writes) and closes it.
fn write_big(path: &std::path::Path, mib: usize) -> Duration {
    use std::io::Write;
    let block = urandom(1 << 20);
    let started = Instant::now();
    let mut f = std::fs::File::create(path).expect("create big file");
    for _ in 0..mib {
        f.write_all(&block).expect("write big file");
    }
    f.sync_all().expect("fsync big file");
    drop(f);
    started.elapsed()
}

#[test]
#[ignore = "a measurement: run by scripts/bench-directory.sh"]
fn measure_directory_costs() {
    let files = env_or("BENCH_FILES", 2000);
    let big = env_or("BENCH_BIG_MIB", 1024);
    let runs = env_or("BENCH_RUNS", 1);
    let kinds = ["single", "one-directory", "raft-directory"];
    let mut rows: Vec<(String, usize, f64, f64)> = Vec::new();
    for run in 0..runs {
        for k in 0..kinds.len() {
            let kind = kinds[(run + k) % kinds.len()];
            let setup = Setup::start(kind);
            if let Setup::Cluster(c) = &setup {
                if kind == "raft-directory" {
                    wait_for("a directory leader", Duration::from_secs(30), || {
                        let st = c.try_status(0)?;
                        st.directory
                            .and_then(|d| d.leader)
                            .ok_or_else(|| "no leader yet".to_string())
                    });
                }
            }
            let mnt = setup.dir().join("mnt");
            let m = Mount::start(&setup.servers(), &mnt, &setup.dir().join("cache"), &[]);
            let dir = m.path().join("small");
            dfs_tests::mkdir(&dir).expect("mkdir");
            let small = create_files(&dir, files);
            let seq = write_big(&m.path().join("big"), big);
            let rate = files as f64 / small.as_secs_f64();
            let mib_s = big as f64 / seq.as_secs_f64();
            eprintln!("run {run} {kind}: {rate:.0} creates/s, {mib_s:.0} MiB/s");
            rows.push((kind.to_string(), run, rate, mib_s));
            drop(m);
        }
    }
    println!("| setup | run | {files} x 4 KiB creates/s | {big} MiB write MiB/s |");
    println!("|---|---|---|---|");
    for (kind, run, rate, mib_s) in &rows {
        println!("| {kind} | {run} | {rate:.0} | {mib_s:.0} |");
    }
    let median = |kind: &str, f: fn(&(String, usize, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().filter(|r| r.0 == kind).map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for kind in ["one-directory", "raft-directory"] {
        println!(
            "{kind} vs single: creates {:.2}x, 1 GiB write {:.2}x",
            median(kind, |r| r.2) / median("single", |r| r.2),
            median(kind, |r| r.3) / median("single", |r| r.3)
        );
    }
}
