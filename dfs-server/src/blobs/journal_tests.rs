//! Unit tests of the blob journal: a small store committed with its bytes in the journal
//! and "crashed" before any checkpoint (its file never written) is restored by the replay;
//! a checkpoint writes the files and empties the journal.

use super::journal::{checkpoint, replay};
use super::BlobStore;
use crate::namespace::{Contents, Namespace, NsCommand};
use bytes::Bytes;
use dfs_common::hash::blob_id_of;
use dfs_common::{Timestamp, ROOT_INO};
use http_body_util::Full;
use std::sync::Arc;

fn ts(secs: i64) -> Timestamp {
    Timestamp { secs, nanos: 0 }
}

/// Creates a file and stores `data` in it the way `files::store` does for small bodies.
async fn store_small(store: &Arc<BlobStore>, ns: &Namespace, name: &str, data: &[u8]) {
    let ino = ns
        .apply(NsCommand::Create {
            parent: ROOT_INO,
            name: name.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            exclusive: true,
            now: ts(2),
        })
        .unwrap()
        .attr
        .unwrap()
        .ino;
    let len = data.len() as u64;
    let temp = store
        .receive_small(Full::new(Bytes::copy_from_slice(data)), len, None)
        .await
        .unwrap();
    let journal = temp.journal_bytes().expect("a small body is journalled");
    let pin = store.install(temp).unwrap();
    let cmd = NsCommand::CommitBlob {
        ino,
        contents: Contents {
            blob: Some(pin.id),
            size: len,
            base_version: None,
        },
        mtime: None,
        now: ts(3),
    };
    let (_, seq) = ns.apply_unsynced(cmd, Some((&pin.id, &journal))).unwrap();
    ns.sync_through(seq).unwrap();
}

#[tokio::test]
async fn a_journalled_blob_lost_before_its_checkpoint_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::open(&dir.path().join("meta.redb"), 0o777, ts(1)).unwrap();
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let data = b"small contents, durable through the journal only".to_vec();
    let id = blob_id_of(&data);
    store_small(&store, &ns, "a", &data).await;
    // Served from memory before any file exists.
    assert!(!store.path(&id).exists(), "no file before the checkpoint");
    assert_eq!(
        &store.read_verified(&id, data.len() as u64).unwrap()[..],
        &data
    );
    assert_eq!(ns.journal_ids().unwrap(), vec![id]);

    // A crash: the memory is gone and no file was written. The next start replays.
    drop(store);
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    assert_eq!(replay(&store, &ns).unwrap(), 1, "one blob file rewritten");
    assert_eq!(std::fs::read(store.path(&id)).unwrap(), data);
    assert!(ns.journal_ids().unwrap().is_empty(), "journal emptied");
    // A second replay has nothing to do.
    assert_eq!(replay(&store, &ns).unwrap(), 0);
}

#[tokio::test]
async fn a_checkpoint_writes_the_files_and_empties_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::open(&dir.path().join("meta.redb"), 0o777, ts(1)).unwrap();
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    let datas: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
    for (i, d) in datas.iter().enumerate() {
        store_small(&store, &ns, &format!("f{i}"), d).await;
    }
    assert_eq!(ns.journal_ids().unwrap().len(), datas.len());
    assert_eq!(checkpoint(&store, &ns).unwrap(), datas.len());
    assert!(ns.journal_ids().unwrap().is_empty());
    for d in &datas {
        assert_eq!(std::fs::read(store.path(&blob_id_of(d))).unwrap(), *d);
    }
    // Nothing left to replay after a crash now.
    drop(store);
    let store = Arc::new(BlobStore::open(dir.path()).unwrap());
    assert_eq!(replay(&store, &ns).unwrap(), 0);
}
