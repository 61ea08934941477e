//! A 1 GiB file through a mount: written with dd (bs=1M), read back on the same mount and on
//! a fresh mount with an empty cache (so it really comes from the server), compared by
//! SHA-256 with the local source. Blob bodies stream, so the peak RSS (VmHWM) of the server
//! and of both clients must stay below 512 MiB. Run with --nocapture to see the numbers.

use dfs_tests::{hwm_kib, sh_ok_timeout, sha256_file, timed, Fixture, Mount};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SIZE_MIB: u64 = 1024;
const LIMIT_KIB: u64 = 512 * 1024;
const LONG: Duration = Duration::from_secs(600);

fn find_named(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_named(&p, name) {
                return Some(f);
            }
        } else if e.file_name().to_string_lossy() == name {
            return Some(p);
        }
    }
    None
}

fn mbps(t: Duration) -> f64 {
    SIZE_MIB as f64 / t.as_secs_f64()
}

fn sha_bounded(p: PathBuf) -> String {
    timed(&format!("sha256 of {}", p.display()), LONG, move || {
        sha256_file(&p)
    })
    .expect("read the big file")
}

#[test]
fn one_gib_file_round_trips_with_bounded_memory() {
    let fx = Fixture::new();
    let l = fx.local();
    let src = l.join("src");
    let on_mount = fx.mnt().join("big");

    sh_ok_timeout(
        &l,
        &format!("dd if=/dev/urandom of=src bs=1M count={SIZE_MIB} status=none"),
        LONG,
    );
    let want = sha256_file(&src).unwrap();

    let t = Instant::now();
    sh_ok_timeout(
        &l,
        &format!("dd if=src of='{}' bs=1M status=none", on_mount.display()),
        LONG,
    );
    let write_time = t.elapsed();
    eprintln!(
        "write 1 GiB (dd bs=1M, incl. store on close): {write_time:.1?} = {:.0} MiB/s",
        mbps(write_time)
    );

    // The server holds it as one blob named by its hash.
    let blob = find_named(&fx.server.data_dir().join("blobs"), &want)
        .unwrap_or_else(|| panic!("no blob named {want} under the server's blobs/"));
    assert_eq!(
        std::fs::metadata(&blob).unwrap().len(),
        SIZE_MIB << 20,
        "blob size"
    );

    let t = Instant::now();
    let got = sha_bounded(on_mount.clone());
    eprintln!(
        "read back on the writing mount: {:.1?} = {:.0} MiB/s",
        t.elapsed(),
        mbps(t.elapsed())
    );
    assert_eq!(got, want, "sha256 read back on the writing mount");

    // A second mount with an empty cache fetches the whole file from the server.
    let fresh = Mount::start(
        &fx.server.addr(),
        &fx.tmp.path().join("mnt2"),
        &fx.tmp.path().join("cache2"),
        &[],
    );
    let t = Instant::now();
    let got = sha_bounded(fresh.join("big"));
    eprintln!(
        "cold read on a fresh mount (fetch from server): {:.1?} = {:.0} MiB/s",
        t.elapsed(),
        mbps(t.elapsed())
    );
    assert_eq!(got, want, "sha256 read on a fresh mount");

    let server = hwm_kib(fx.server.pid()).expect("server VmHWM");
    let client = hwm_kib(fx.mount.pid()).expect("client VmHWM");
    let client2 = hwm_kib(fresh.pid()).expect("fresh client VmHWM");
    eprintln!(
        "peak RSS (VmHWM): server {} MiB, writing client {} MiB, fresh client {} MiB",
        server / 1024,
        client / 1024,
        client2 / 1024
    );
    assert!(
        server < LIMIT_KIB,
        "server peak RSS {server} KiB >= 512 MiB"
    );
    assert!(
        client < LIMIT_KIB,
        "client peak RSS {client} KiB >= 512 MiB"
    );
    assert!(
        client2 < LIMIT_KIB,
        "fresh client peak RSS {client2} KiB >= 512 MiB"
    );
}
