//! Unit tests of the blob store: aborted and wrong bodies leave nothing; GC keeps blobs for
//! the grace period and never deletes a referenced or pinned one.

use super::gc::{adopt_orphans, collect};
use super::*;
use crate::namespace::{Contents, Namespace, NsCommand};
use dfs_common::hash::blob_id_of;
use dfs_common::{Timestamp, ROOT_INO};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;

pub(super) struct T {
    pub(super) dir: tempfile::TempDir,
    pub(super) store: Arc<BlobStore>,
    pub(super) ns: Namespace,
}

pub(super) fn fresh() -> T {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let ns = Namespace::open(&dir.path().join("meta.redb"), 0o777, ts(1)).unwrap();
    T { dir, store, ns }
}

pub(super) fn ts(secs: i64) -> Timestamp {
    Timestamp { secs, nanos: 0 }
}

/// Blob and temp files under `p`; spares (emptied files kept for reuse) do not count.
fn files_under(p: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "spare" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            n += files_under(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

type Chunks = Vec<Result<Frame<Bytes>, io::Error>>;
type ChunkBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, io::Error>>>>;

fn body(chunks: Chunks) -> ChunkBody {
    StreamBody::new(futures_util::stream::iter(chunks))
}

impl T {
    async fn put(&self, data: &[u8]) -> Pin {
        let temp = self
            .store
            .receive(
                Full::new(Bytes::copy_from_slice(data)),
                BodyLen::Exactly(data.len() as u64),
                None,
            )
            .await
            .unwrap();
        self.store.install(temp).unwrap()
    }

    /// A whole store of `data` into `ino` at time `now`: received, installed, committed.
    async fn store_file(&self, ino: u64, data: &[u8], now: i64) {
        let pin = self.put(data).await;
        self.commit(ino, data, now);
        drop(pin);
    }

    fn commit(&self, ino: u64, data: &[u8], now: i64) {
        self.ns
            .apply(NsCommand::CommitBlob {
                ino,
                mtime: None,
                mode: None,
                contents: Contents {
                    blob: Some(blob_id_of(data)),
                    size: data.len() as u64,
                    base_version: None,
                },
                kill_suid: false,
                now: ts(now),
            })
            .unwrap();
    }

    /// A fresh store with a file "f" stored with `old`, then with `new`: `old` is garbage.
    async fn overwritten(old: &[u8], new: &[u8]) -> (T, u64) {
        let t = fresh();
        let f = t.new_file("f");
        t.store_file(f, old, 10).await;
        t.store_file(f, new, 10).await;
        (t, f)
    }

    pub(super) fn new_file(&self, name: &str) -> u64 {
        self.ns
            .apply(NsCommand::Create {
                parent: ROOT_INO,
                name: name.into(),
                mode: 0o644,
                umask: 0,
                uid: 0,
                gid: 0,
                exclusive: true,
                now: ts(2),
            })
            .unwrap()
            .attr
            .unwrap()
            .ino
    }
}

#[tokio::test]
async fn body_failing_midway_leaves_nothing() {
    let t = fresh();
    let chunks: Chunks = vec![
        Ok(Frame::data(Bytes::from(vec![1u8; 1000]))),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client vanished",
        )),
    ];
    let r = t
        .store
        .receive(body(chunks), BodyLen::Exactly(5000), None)
        .await;
    assert!(matches!(r, Err(FsError::BadRequest(_))), "{r:?}");
    assert_eq!(files_under(&t.dir.path().join("blobs")), 0);
}

#[tokio::test]
async fn short_long_and_mismatched_bodies_leave_nothing() {
    let t = fresh();
    let short = t
        .store
        .receive(
            Full::new(Bytes::from_static(b"abc")),
            BodyLen::Exactly(4),
            None,
        )
        .await;
    assert!(matches!(short, Err(FsError::BadRequest(_))));
    let long = t
        .store
        .receive(
            Full::new(Bytes::from_static(b"abcde")),
            BodyLen::Exactly(4),
            None,
        )
        .await;
    assert!(matches!(long, Err(FsError::BadRequest(_))));
    // A body of unknown length is held to the largest file.
    let too_large = t
        .store
        .receive(
            Full::new(Bytes::from_static(b"abcde")),
            BodyLen::AtMost(4),
            None,
        )
        .await;
    assert!(
        matches!(too_large, Err(FsError::TooLarge(_))),
        "{too_large:?}"
    );
    let fits = t
        .store
        .receive(
            Full::new(Bytes::from_static(b"abc")),
            BodyLen::AtMost(4),
            None,
        )
        .await
        .unwrap();
    assert_eq!(fits.size, 3);
    drop(fits);
    let wrong = t
        .store
        .receive(
            Full::new(Bytes::from_static(b"abcd")),
            BodyLen::Exactly(4),
            Some(BlobId([0; 32])),
        )
        .await;
    assert!(matches!(wrong, Err(FsError::Corrupt(_))));
    assert_eq!(files_under(&t.dir.path().join("blobs")), 0);
    // A temp blob dropped before install is deleted too.
    let temp = t
        .store
        .receive(
            Full::new(Bytes::from_static(b"abcd")),
            BodyLen::Exactly(4),
            None,
        )
        .await
        .unwrap();
    assert_eq!(files_under(&t.dir.path().join("blobs")), 1);
    drop(temp);
    assert_eq!(files_under(&t.dir.path().join("blobs")), 0);
}

#[tokio::test]
async fn received_blob_is_named_by_its_hash_and_reads_back() {
    let t = fresh();
    let data: Vec<u8> = (0..3 * READ_CHUNK + 17).map(|i| (i % 251) as u8).collect();
    let chunks: Chunks = data
        .chunks(10_000)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let temp = t
        .store
        .receive(
            body(chunks),
            BodyLen::Exactly(data.len() as u64),
            Some(blob_id_of(&data)),
        )
        .await
        .unwrap();
    assert_eq!(temp.id, blob_id_of(&data));
    let pin = t.store.install(temp).unwrap();
    // Installing the same contents again keeps one file.
    let again = t.put(&data).await;
    assert_eq!(files_under(&t.dir.path().join("blobs")), 1);
    let file = t.store.open_blob(&pin.id, data.len() as u64).unwrap();
    let mut rx = BlobStore::read_stream(file, data.len() as u64);
    let mut back = Vec::new();
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= READ_CHUNK);
        back.extend_from_slice(&chunk);
    }
    assert_eq!(back, data);
    drop((pin, again));
}

#[tokio::test]
async fn overwrite_then_gc_removes_old_blob_after_grace_only() {
    let t = fresh();
    let f = t.new_file("f");
    let g = t.new_file("g");
    let (old, new, shared) = (
        b"old contents".as_slice(),
        b"new".as_slice(),
        b"shared".as_slice(),
    );
    for (data, ino) in [(old, f), (shared, g)] {
        t.store_file(ino, data, 1000).await;
    }
    t.store_file(f, new, 1000).await;
    // g's blob is also unreferenced then referenced again before the GC runs.
    t.store_file(g, b"tmp", 1000).await;
    t.store_file(g, shared, 1000).await;

    assert_eq!(collect(&t.store, &t.ns, 300, 1200).unwrap(), 0);
    assert!(t.store.path(&blob_id_of(old)).exists());
    assert_eq!(collect(&t.store, &t.ns, 300, 1300).unwrap(), 2);
    assert!(!t.store.path(&blob_id_of(old)).exists());
    assert!(!t.store.path(&blob_id_of(b"tmp")).exists());
    assert!(t.store.path(&blob_id_of(new)).exists());
    assert!(t.store.path(&blob_id_of(shared)).exists());
    assert_eq!(t.ns.refcount(&blob_id_of(old)).unwrap(), None);
    assert_eq!(collect(&t.store, &t.ns, 300, 99_999).unwrap(), 0);
}

#[tokio::test]
async fn gc_skips_pinned_blobs() {
    let (t, f) = T::overwritten(b"one", b"two").await;
    // A store of the same contents as the garbage is between install and commit.
    let pin = t.put(b"one").await;
    assert_eq!(collect(&t.store, &t.ns, 0, 100).unwrap(), 0);
    t.commit(f, b"one", 20);
    drop(pin);
    assert_eq!(collect(&t.store, &t.ns, 0, 100).unwrap(), 1);
    assert!(t.store.path(&blob_id_of(b"one")).exists());
    assert!(!t.store.path(&blob_id_of(b"two")).exists());
}

#[tokio::test]
async fn orphans_are_deleted_after_grace_or_adopted() {
    let t = fresh();
    let pin = t.put(b"orphan").await;
    drop(pin);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(adopt_orphans(&t.store, &t.ns, 300, now).unwrap(), (0, 1));
    assert_eq!(t.ns.refcount(&blob_id_of(b"orphan")).unwrap(), Some(0));
    assert_eq!(collect(&t.store, &t.ns, 300, now + 301).unwrap(), 1);
    let pin = t.put(b"old orphan").await;
    drop(pin);
    assert_eq!(
        adopt_orphans(&t.store, &t.ns, 300, now + 1000).unwrap(),
        (1, 0)
    );
    assert_eq!(files_under(&t.dir.path().join("blobs")), 0);
}

#[test]
fn resized_copies_truncate_and_zero_extend() {
    let t = fresh();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pin = rt.block_on(t.put(b"hello world"));
    let short = t.store.resized(Some(&pin.id), 11, 5).unwrap();
    assert_eq!(short.id, blob_id_of(b"hello"));
    let long = t.store.resized(Some(&pin.id), 11, 14).unwrap();
    assert_eq!(long.id, blob_id_of(b"hello world\0\0\0"));
    let from_empty = t.store.resized(None, 0, 3).unwrap();
    assert_eq!(from_empty.id, blob_id_of(&[0, 0, 0]));
    let p = t.store.install(long).unwrap();
    assert_eq!(fs::read(t.store.path(&p.id)).unwrap(), b"hello world\0\0\0");
}

/// A body of many writer chunks (and several writeback kicks) arrives whole, its frames
/// of every size (kept as they are, or gathered when small) landing in order; one that
/// fails after some of them leaves no file behind.
#[tokio::test]
async fn large_bodies_arrive_whole_or_leave_nothing() {
    let t = fresh();
    let data: Vec<u8> = (0..20usize << 20).map(|i| (i % 253) as u8).collect();
    let sizes = [300_000, 1, 5_000, 16_383, 16_384, 70_001, 2 << 20, 7];
    let chunks = |upto: usize| -> Chunks {
        let mut frames = Vec::new();
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at == upto {
                break;
            }
            let end = (at + size).min(upto);
            frames.push(Ok(Frame::data(Bytes::copy_from_slice(&data[at..end]))));
            at = end;
        }
        frames
    };
    let mut cut = chunks(12 << 20);
    cut.push(Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")));
    let r = t
        .store
        .receive(body(cut), BodyLen::Exactly(data.len() as u64), None)
        .await;
    assert!(matches!(r, Err(FsError::BadRequest(_))), "{r:?}");
    assert_eq!(files_under(&t.dir.path().join("blobs")), 0);

    let temp = t
        .store
        .receive(
            body(chunks(data.len())),
            BodyLen::Exactly(data.len() as u64),
            None,
        )
        .await
        .unwrap();
    assert_eq!(temp.id, blob_id_of(&data));
    assert_eq!(std::fs::read(&temp.path).unwrap(), data);
}

/// A collected blob's file becomes a spare: emptied, then the next temp file, so the
/// same inode holds other contents. Hence a reader pins the blob, and neither way of
/// deleting touches a pinned one.
#[tokio::test]
async fn a_collected_blob_becomes_the_next_temp_file_unless_a_reader_pins_it() {
    use std::os::unix::fs::MetadataExt;
    let (t, _) = T::overwritten(b"old contents", b"new").await;
    let old = blob_id_of(b"old contents");
    let inode = fs::metadata(t.store.path(&old)).unwrap().ino();

    let reader = t.store.pin(old);
    assert_eq!(collect(&t.store, &t.ns, 0, 100).unwrap(), 0);
    assert!(!t.store.remove_if_older(&old, u64::MAX).unwrap());
    assert!(t.store.path(&old).exists(), "deleted under a reader");
    drop(reader);

    assert_eq!(collect(&t.store, &t.ns, 0, 100).unwrap(), 1);
    assert!(!t.store.path(&old).exists());
    let spare = t.dir.path().join("blobs").join("spare");
    let spares: Vec<_> = fs::read_dir(&spare).unwrap().flatten().collect();
    assert_eq!(spares.len(), 1);
    assert_eq!(
        spares[0].metadata().unwrap().len(),
        0,
        "a spare kept its bytes"
    );
    let pin = t.put(b"next").await;
    assert_eq!(
        fs::metadata(t.store.path(&blob_id_of(b"next")))
            .unwrap()
            .ino(),
        inode,
        "the spare was not reused"
    );
    drop(pin);
}
