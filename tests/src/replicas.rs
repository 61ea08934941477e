//! What the replication tests share: mounts of node 0 of a `Cluster`, files of mixed sizes
//! written through them and read back, the convergence check, and the common bounds.
//!
//! "Converged" means node 0's status shows no under-replicated or missing blob, every node
//! alive, and every written file's blob, re-hashed from disk, on every node (with R = N).
//! Convergence times are printed (`scripts/test.sh -- --nocapture`).

use crate::cluster::{all_alive, status_line, Cluster};
use crate::fsops::{read, write};
use crate::measure::{pseudo_random, sha256, wait_for};
use crate::mount::Mount;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bound for a healed or restarted node to catch up.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// Bound for the failure detector to notice a killed or cut-off node.
pub const DETECT: Duration = Duration::from_secs(45);
pub const MIB: usize = 1 << 20;

/// A file a test wrote through the mount.
pub struct Written {
    pub name: String,
    pub len: usize,
    pub sha: String,
}

pub fn mount_on(c: &Cluster, name: &str) -> Mount {
    Mount::start(
        &c.addr(0),
        &c.dir().join(format!("mnt-{name}")),
        &c.dir().join(format!("cache-{name}")),
        &[],
    )
}

/// splitmix64: the deterministic sizes of the test files.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Size of file `k` of a mixed set: mostly 0–64 KiB (every 25th empty), every 20th
/// 1–4 MiB, two in 200 of 8–16 MiB.
pub fn mixed_size(k: usize, seed: u64) -> usize {
    let r = mix(seed.wrapping_mul(1_000_003) ^ k as u64) as usize;
    if k % 100 == 37 {
        8 * MIB + r % (8 * MIB)
    } else if k % 20 == 3 {
        MIB + r % (3 * MIB)
    } else if k.is_multiple_of(25) {
        0
    } else {
        r % (64 << 10)
    }
}

/// Writes files `{prefix}-{k}.bin` for k in `range` (sizes from `mixed_size`, contents
/// pseudo-random); every close must succeed.
pub fn write_files(
    mnt: &Path,
    prefix: &str,
    range: std::ops::Range<usize>,
    seed: u64,
) -> Vec<Written> {
    write_sized(mnt, prefix, range, seed, |k| mixed_size(k, seed))
}

/// `write_files` with the size of file `k` given by `size(k)`.
pub fn write_sized(
    mnt: &Path,
    prefix: &str,
    range: std::ops::Range<usize>,
    seed: u64,
    size: impl Fn(usize) -> usize,
) -> Vec<Written> {
    let t = Instant::now();
    let mut out = Vec::new();
    for k in range {
        let name = format!("{prefix}-{k:03}.bin");
        let data = pseudo_random(size(k), seed * 1_000_003 + k as u64);
        write(mnt.join(&name), &data).unwrap_or_else(|e| panic!("write+close {name}: {e}"));
        out.push(Written {
            name,
            len: data.len(),
            sha: sha256(&data),
        });
    }
    let bytes: usize = out.iter().map(|f| f.len).sum();
    eprintln!(
        "wrote {} {prefix}-* files ({:.1} MiB) in {:?}",
        out.len(),
        bytes as f64 / MIB as f64,
        t.elapsed()
    );
    out
}

/// Reads every file through `m` and compares length and SHA-256.
pub fn read_back(m: &Mount, files: &[Written], when: &str) {
    let mut wrong = Vec::new();
    for f in files {
        match read(m.join(&f.name)) {
            Ok(b) if b.len() == f.len && sha256(&b) == f.sha => {}
            Ok(b) => wrong.push(format!("{}: {} bytes, sha {}", f.name, b.len(), sha256(&b))),
            Err(e) => wrong.push(format!("{}: {e}", f.name)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{when}: {} of {} files read back wrong through a fresh mount:\n{}",
        wrong.len(),
        files.len(),
        wrong.join("\n")
    );
}

/// `Ok` once node 0 reports everything replicated with every node alive, and every
/// non-empty file's blob is on every node with the right contents.
pub fn converged(c: &Cluster, files: &[Written]) -> Result<(), String> {
    let st = c.try_status(0)?;
    if st.under_replicated != 0 || st.missing != 0 || !all_alive(&st, &c.addrs()) {
        return Err(status_line(&st));
    }
    let blobs: Vec<&Written> = files.iter().filter(|f| f.len > 0).collect();
    for i in 0..c.len() {
        let absent = blobs
            .iter()
            .filter(|f| !c.blob_path(i, &f.sha).is_file())
            .count();
        if absent > 0 {
            return Err(format!(
                "node {i} lacks {absent} of {} blobs; {}",
                blobs.len(),
                status_line(&st)
            ));
        }
    }
    for i in 0..c.len() {
        if let Some(f) = blobs.iter().find(|f| !c.blob_ok(i, &f.sha)) {
            return Err(format!("node {i}'s copy of {} ({}) is bad", f.name, f.sha));
        }
    }
    Ok(())
}

/// Waits (bounded by `CONVERGE`) until `converged`; returns how long it took.
pub fn wait_converged(c: &Cluster, files: &[Written], what: &str) -> Duration {
    let ((), t) = wait_for(what, CONVERGE, || converged(c, files));
    eprintln!("{what}: converged in {t:?}; {}", status_line(&c.status(0)));
    t
}

/// Every node's store re-hashes clean.
pub fn assert_stores_clean(c: &Cluster) {
    for i in 0..c.len() {
        let (count, bad) = c.verify_store(i);
        assert!(
            bad.is_empty(),
            "node {i}: {} of {count} blobs do not hash to their name: {bad:?}",
            bad.len()
        );
    }
}

/// The distinct blob ids (hex) of the non-empty files.
pub fn blob_ids(files: &[Written]) -> Vec<String> {
    let mut ids: Vec<String> = (files.iter().filter(|f| f.len > 0))
        .map(|f| f.sha.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
