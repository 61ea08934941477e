//! Blob garbage collection: with `--gc-grace-secs 1`, the blob of an overwritten (or
//! removed) file disappears from DATA/blobs within a minute, while the current blob stays.
//! (Small blobs reach DATA/blobs at the journal's next checkpoint, within a second.)

use dfs_tests::{poll, pseudo_random, remove_file, sha256, write, Fixture};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const GC_WITHIN: Duration = Duration::from_secs(60);

/// Every blob file under `dir` (recursively), skipping temporary files and directories.
fn blob_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Temp files, and spares (emptied files of deleted blobs, kept for reuse).
        if name.contains("tmp") || name == "spare" {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            out.extend(blob_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn overwritten_blob_is_collected_current_one_stays() {
    let fx = Fixture::with_server_args(&["--gc-grace-secs", "1"]);
    let blobs = fx.server.data_dir().join("blobs");
    let first = pseudo_random(200_000, 21);
    let second = pseudo_random(300_000, 22);
    let (h1, h2) = (sha256(&first), sha256(&second));

    write(fx.mnt().join("f.bin"), &first).unwrap();
    assert_eq!(
        names(&blob_files(&blobs)),
        std::slice::from_ref(&h1),
        "after the first store, blobs/ holds exactly its blob"
    );
    let p1 = blob_files(&blobs)[0].clone();
    assert_eq!(
        p1.parent().unwrap().file_name().unwrap().to_string_lossy(),
        h1[..2],
        "blob path is blobs/<2 hex>/<64 hex>"
    );

    write(fx.mnt().join("f.bin"), &second).unwrap();
    let t = Instant::now();
    let done = poll(GC_WITHIN, Duration::from_millis(500), || {
        let now = names(&blob_files(&blobs));
        (now == std::slice::from_ref(&h2)).then_some(())
    });
    assert!(
        done.is_some(),
        "after {GC_WITHIN:?}, blobs/ holds {:?}; want only the current blob {h2}",
        names(&blob_files(&blobs))
    );
    eprintln!("old blob collected after {:?}", t.elapsed());
    assert_eq!(dfs_tests::read(fx.mnt().join("f.bin")).unwrap(), second);
}

#[test]
fn removed_file_blob_is_collected() {
    let fx = Fixture::with_server_args(&["--gc-grace-secs", "1"]);
    let blobs = fx.server.data_dir().join("blobs");
    let keep = pseudo_random(50_000, 31);
    let gone = pseudo_random(60_000, 32);
    write(fx.mnt().join("keep"), &keep).unwrap();
    write(fx.mnt().join("gone"), &gone).unwrap();
    let mut both = vec![sha256(&keep), sha256(&gone)];
    both.sort();
    // Small blobs are written as files by the journal's checkpoint (every 0.5 s).
    let written = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        (names(&blob_files(&blobs)) == both).then_some(())
    });
    assert!(
        written.is_some(),
        "blobs/ holds {:?}; want both blobs {both:?}",
        names(&blob_files(&blobs))
    );
    remove_file(fx.mnt().join("gone")).unwrap();
    let done = poll(GC_WITHIN, Duration::from_millis(500), || {
        (names(&blob_files(&blobs)) == [sha256(&keep)]).then_some(())
    });
    assert!(
        done.is_some(),
        "after {GC_WITHIN:?}, blobs/ holds {:?}; want only {}",
        names(&blob_files(&blobs)),
        sha256(&keep)
    );
}
