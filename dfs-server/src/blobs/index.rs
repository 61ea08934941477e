//! The in-memory index of the blobs this node holds: id, size and modification time,
//! ordered by id, so that per-bucket digests and listings for anti-entropy cost one pass
//! over memory instead of a directory scan.
//!
//! Owns: the index and the digest arithmetic. Must not touch files: `BlobStore` keeps it
//! in step with the disk (built by a scan at open, updated on every install and removal).
//! Memory is about 80 bytes per blob.

use dfs_common::cluster::{bucket, BUCKETS};
use dfs_common::BlobId;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub size: u64,
    pub mtime_ms: u64,
}

#[derive(Default)]
pub struct BlobIndex {
    held: BTreeMap<BlobId, Held>,
    bytes: u64,
}

impl BlobIndex {
    pub fn insert(&mut self, id: BlobId, held: Held) {
        if let Some(old) = self.held.insert(id, held) {
            self.bytes -= old.size;
        }
        self.bytes += held.size;
    }

    pub fn remove(&mut self, id: &BlobId) {
        if let Some(old) = self.held.remove(id) {
            self.bytes -= old.size;
        }
    }

    pub fn get(&self, id: &BlobId) -> Option<Held> {
        self.held.get(id).copied()
    }

    pub fn len(&self) -> u64 {
        self.held.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Per bucket, the SHA-256 of the sorted ids held in it (zeros for an empty bucket).
    pub fn digests(&self) -> Vec<[u8; 32]> {
        digests_of(self.held.keys())
    }

    /// Every blob in the given buckets, in id order.
    pub fn listing(&self, buckets: &[u16]) -> Vec<(BlobId, Held)> {
        let mut want = [false; BUCKETS];
        for b in buckets {
            if let Some(slot) = want.get_mut(*b as usize) {
                *slot = true;
            }
        }
        self.held
            .iter()
            .filter(|(id, _)| want[bucket(id)])
            .map(|(id, h)| (*id, *h))
            .collect()
    }

    /// Every id, in order (a snapshot, for the scrubber).
    pub fn ids(&self) -> Vec<BlobId> {
        self.held.keys().copied().collect()
    }
}

/// Per-bucket digests of ids given in ascending order.
pub fn digests_of<'a>(ids: impl Iterator<Item = &'a BlobId>) -> Vec<[u8; 32]> {
    let mut out = vec![[0u8; 32]; BUCKETS];
    let mut current: Option<(usize, ring::digest::Context)> = None;
    let finish = |out: &mut Vec<[u8; 32]>, (b, ctx): (usize, ring::digest::Context)| {
        out[b].copy_from_slice(ctx.finish().as_ref());
    };
    for id in ids {
        let b = bucket(id);
        match &mut current {
            Some((cb, ctx)) if *cb == b => ctx.update(&id.0),
            _ => {
                if let Some(done) = current.take() {
                    finish(&mut out, done);
                }
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                ctx.update(&id.0);
                current = Some((b, ctx));
            }
        }
    }
    if let Some(done) = current.take() {
        finish(&mut out, done);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> BlobId {
        dfs_common::hash::blob_id_of(&i.to_le_bytes())
    }

    #[test]
    fn digests_change_only_in_the_bucket_that_changed() {
        let mut idx = BlobIndex::default();
        for i in 0..1000 {
            idx.insert(
                id(i),
                Held {
                    size: 10,
                    mtime_ms: 0,
                },
            );
        }
        let before = idx.digests();
        let extra = id(5000);
        idx.insert(
            extra,
            Held {
                size: 5,
                mtime_ms: 0,
            },
        );
        let after = idx.digests();
        let changed: Vec<usize> = (0..BUCKETS).filter(|b| before[*b] != after[*b]).collect();
        assert_eq!(changed, vec![bucket(&extra)]);
        assert_eq!(idx.bytes(), 10_005);
        idx.remove(&extra);
        assert_eq!(idx.digests(), before);
        let listed = idx.listing(&[bucket(&id(1)) as u16]);
        assert!(listed.iter().any(|(i, _)| *i == id(1)));
        assert!(listed.iter().all(|(i, _)| bucket(i) == bucket(&id(1))));
    }
}
