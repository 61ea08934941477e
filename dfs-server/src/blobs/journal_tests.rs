//! Unit tests of the blob journal: a small store committed with its bytes in the journal
//! and "crashed" before any checkpoint (its file never written) is restored by the replay;
//! a checkpoint writes the files and empties the journal.

use super::journal::{checkpoint, replay};
use super::tests::{fresh, ts, T};
use super::BlobStore;
use crate::namespace::{Contents, NsCommand};
use bytes::Bytes;
use dfs_common::hash::blob_id_of;
use http_body_util::Full;
use std::sync::Arc;

/// Creates a file and stores `data` in it the way `files::store` does for small bodies.
async fn store_small(t: &T, name: &str, data: &[u8]) {
    let ino = t.new_file(name);
    let len = data.len() as u64;
    let temp = t
        .store
        .receive_small(Full::new(Bytes::copy_from_slice(data)), len, None)
        .await
        .unwrap();
    let journal = temp.journal_bytes().expect("a small body is journalled");
    let pin = t.store.install(temp).unwrap();
    let cmd = NsCommand::CommitBlob {
        ino,
        contents: Contents {
            blob: Some(pin.id),
            size: len,
            base_version: None,
        },
        mtime: None,
        mode: None,
        kill_suid: false,
        now: ts(3),
    };
    let (_, seq) = t.ns.apply_unsynced(cmd, Some((&pin.id, &journal))).unwrap();
    t.ns.sync_through(seq).unwrap();
}

/// The store after a crash: a new one over the same directory (nothing pending in memory).
fn reopened(t: &mut T) {
    t.store = Arc::new(BlobStore::open(t.dir.path()).unwrap());
}

#[tokio::test]
async fn a_journalled_blob_lost_before_its_checkpoint_is_replayed() {
    let mut t = fresh();
    let data = b"small contents, durable through the journal only".to_vec();
    let id = blob_id_of(&data);
    store_small(&t, "a", &data).await;
    // Served from memory before any file exists.
    assert!(!t.store.path(&id).exists(), "no file before the checkpoint");
    assert_eq!(
        &t.store.read_verified(&id, data.len() as u64).unwrap()[..],
        &data
    );
    assert_eq!(t.ns.journal_ids().unwrap(), vec![id]);

    // A crash: the memory is gone and no file was written. The next start replays.
    reopened(&mut t);
    assert_eq!(
        replay(&t.store, &t.ns).unwrap(),
        1,
        "one blob file rewritten"
    );
    assert_eq!(std::fs::read(t.store.path(&id)).unwrap(), data);
    assert!(t.ns.journal_ids().unwrap().is_empty(), "journal emptied");
    // A second replay has nothing to do.
    assert_eq!(replay(&t.store, &t.ns).unwrap(), 0);
}

#[tokio::test]
async fn a_checkpoint_writes_the_files_and_empties_the_journal() {
    let mut t = fresh();
    let datas: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
    for (i, d) in datas.iter().enumerate() {
        store_small(&t, &format!("f{i}"), d).await;
    }
    assert_eq!(t.ns.journal_ids().unwrap().len(), datas.len());
    assert_eq!(checkpoint(&t.store, &t.ns).unwrap(), datas.len());
    assert!(t.ns.journal_ids().unwrap().is_empty());
    for d in &datas {
        assert_eq!(std::fs::read(t.store.path(&blob_id_of(d))).unwrap(), *d);
    }
    // Nothing left to replay after a crash now.
    reopened(&mut t);
    assert_eq!(replay(&t.store, &t.ns).unwrap(), 0);
}
