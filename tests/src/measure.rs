//! Small measurement helpers: SHA-256 of files and bytes, RSS and peak RSS of a process,
//! deterministic and random test data, and bounded polling.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Hex SHA-256 of a file's contents (streamed, 1 MiB at a time).
pub fn sha256_file(p: &Path) -> io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = dfs_common::hash::BlobHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().to_hex())
}

/// Hex SHA-256 of bytes.
pub fn sha256(data: &[u8]) -> String {
    dfs_common::hash::blob_id_of(data).to_hex()
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Current resident set size of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size of `pid` in KiB (VmHWM).
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// Deterministic pseudo-random bytes (xorshift64*), for binary test files.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Polls `f` every `every` until it returns `Some` or `limit` passes.
pub fn poll<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

/// `len` bytes from /dev/urandom.
pub fn urandom(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    b
}

/// Polls `f` every 200 ms until it answers `Ok` or `limit` passes; then panics with `what`
/// and the last `Err` (which should say what was still wrong). Returns the value and how
/// long it took.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return (v, start.elapsed()),
            Err(last) if start.elapsed() >= limit => {
                panic!("{what}: not reached within {limit:?}; last state:\n{last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_is_deterministic_and_sized() {
        assert_eq!(pseudo_random(13, 1), pseudo_random(13, 1));
        assert_ne!(pseudo_random(64, 1), pseudo_random(64, 2));
        assert_eq!(pseudo_random(1001, 3).len(), 1001);
    }
}
