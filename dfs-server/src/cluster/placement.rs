//! Where a blob lives: rendezvous (highest-random-weight) hashing of blob ids over the
//! data members of the cluster, and the replica counts R and W.
//!
//! Owns: the score of a (node, blob) pair, the ordered candidate list of a blob, and the
//! effective R and W for a member count. Must not: know who is alive (the caller passes
//! the members it counts) or do I/O.
//!
//! Why rendezvous hashing: every node computes the same placement from the same member
//! list with no shared table, and when a member joins or leaves only the blobs that
//! ranked it among their top R move (about R/N of them).

use dfs_common::BlobId;
use std::net::SocketAddr;

/// A member that can hold blobs, with its precomputed hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub addr: SocketAddr,
    key: u64,
}

impl Candidate {
    pub fn new(addr: SocketAddr) -> Candidate {
        let d = ring::digest::digest(&ring::digest::SHA256, addr.to_string().as_bytes());
        let mut k = [0u8; 8];
        k.copy_from_slice(&d.as_ref()[..8]);
        Candidate {
            addr,
            key: u64::from_le_bytes(k),
        }
    }
}

/// SplitMix64's finaliser: a cheap, well-mixed function of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// The weight of `node` for `blob`. Blob ids are SHA-256 outputs, so their first eight
/// bytes are already uniform; mixing them with the node's hash gives an independent
/// ranking per blob.
pub fn score(node: &Candidate, blob: &BlobId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&blob.0[..8]);
    mix(u64::from_le_bytes(b) ^ node.key)
}

/// Every candidate, best first, for `blob` (ties broken by address, so the order is total).
pub fn ranked<'a>(members: &'a [Candidate], blob: &BlobId) -> Vec<&'a Candidate> {
    let mut v: Vec<&Candidate> = members.iter().collect();
    v.sort_by(|a, b| {
        score(b, blob)
            .cmp(&score(a, blob))
            .then_with(|| a.addr.cmp(&b.addr))
    });
    v
}

/// The `r` members that should hold `blob`.
pub fn placement(members: &[Candidate], blob: &BlobId, r: usize) -> Vec<SocketAddr> {
    ranked(members, blob)
        .into_iter()
        .take(r)
        .map(|c| c.addr)
        .collect()
}

/// R capped at the number of members counted.
pub fn effective_replicas(configured: u32, members: usize) -> usize {
    (configured as usize).min(members).max(1)
}

/// W: the configured quorum (default a majority of R), never more than R.
pub fn write_quorum(configured: Option<u32>, r_eff: usize) -> usize {
    match configured {
        Some(w) => (w as usize).clamp(1, r_eff),
        None => r_eff / 2 + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u8) -> Vec<Candidate> {
        (1..=n)
            .map(|i| Candidate::new(format!("127.0.0.{i}:7070").parse().unwrap()))
            .collect()
    }

    fn blob(i: u32) -> BlobId {
        dfs_common::hash::blob_id_of(&i.to_le_bytes())
    }

    #[test]
    fn placement_is_stable_and_distinct() {
        let m = nodes(5);
        for i in 0..100 {
            let p = placement(&m, &blob(i), 3);
            assert_eq!(p.len(), 3);
            let mut d = p.clone();
            d.dedup();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3, "three different nodes");
            assert_eq!(p, placement(&m, &blob(i), 3), "same answer every time");
        }
    }

    #[test]
    fn losing_a_member_moves_only_the_blobs_it_held() {
        let all = nodes(5);
        let without: Vec<Candidate> = all[..4].to_vec();
        let gone = all[4].addr;
        let mut moved = 0;
        for i in 0..2000 {
            let before = placement(&all, &blob(i), 3);
            let after = placement(&without, &blob(i), 3);
            if !before.contains(&gone) {
                assert_eq!(before, after, "a blob not on the lost node stays put");
            } else {
                moved += 1;
                let kept: Vec<_> = before.iter().filter(|a| **a != gone).collect();
                assert!(kept.iter().all(|a| after.contains(a)));
            }
        }
        // About R/N = 3/5 of the blobs had a copy on the lost node.
        assert!((1000..1400).contains(&moved), "moved {moved}");
    }

    #[test]
    fn load_is_spread_evenly() {
        let m = nodes(4);
        let mut count = std::collections::HashMap::new();
        for i in 0..4000 {
            for a in placement(&m, &blob(i), 1) {
                *count.entry(a).or_insert(0) += 1;
            }
        }
        for (_, n) in count {
            assert!((850..1150).contains(&n), "{n} of 4000 on one of 4 nodes");
        }
    }

    #[test]
    fn quorum_defaults_to_a_majority() {
        assert_eq!(effective_replicas(3, 2), 2);
        assert_eq!(write_quorum(None, 3), 2);
        assert_eq!(write_quorum(None, 1), 1);
        assert_eq!(write_quorum(Some(5), 3), 3);
    }
}
