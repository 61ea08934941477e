//! Content hashing of blobs: a blob's id is the SHA-256 of its bytes.

use crate::types::BlobId;
use ring::digest;

/// Incremental SHA-256 over a blob that arrives in pieces.
pub struct BlobHasher(digest::Context);

impl Default for BlobHasher {
    fn default() -> Self {
        BlobHasher(digest::Context::new(&digest::SHA256))
    }
}

impl BlobHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> BlobId {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        BlobId(out)
    }
}

pub fn blob_id_of(data: &[u8]) -> BlobId {
    let mut h = BlobHasher::new();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_of_abc_is_the_known_digest() {
        assert_eq!(
            super::blob_id_of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
