//! The cluster key and what it signs: node-to-node HTTP requests and their answers.
//!
//! Owns: loading the key file, the MAC of a request (method, destination and path,
//! sender, time, body hash) and of an answer (bound to the request's MAC, status and body
//! hash), the freshness window, and the keys derived for gossip packets (signed in
//! `membership`) and for sealing blob bodies. Must not: know any resource.
//!
//! Blob bodies are not covered by the MAC (they are streamed); they are named by their
//! SHA-256 and every receiver checks the contents against the name instead.

use dfs_common::cluster::{HDR_NODE, HDR_NODE_MAC, HDR_NODE_TIME};
use dfs_common::{codec, FsError};
use hyper::header::HeaderMap;
use ring::hmac;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest clock difference accepted between two nodes.
pub const MAX_SKEW_MS: u64 = 300_000;
/// Stands for the body hash of a streamed blob body in a MAC.
pub const STREAMED: [u8; 32] = [0xff; 32];

/// The secret every node of a cluster shares.
#[derive(Clone)]
pub struct ClusterKey {
    mac: hmac::Key,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ClusterKey {
    /// Reads the key file: at least 32 bytes of secret (any bytes; they are hashed into
    /// the key). A file readable by group or others is refused.
    pub fn load(path: &Path) -> Result<ClusterKey, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read cluster key file {}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "cluster key file {} is readable by others; chmod 600 it",
                path.display()
            ));
        }
        let secret = std::fs::read(path)
            .map_err(|e| format!("cannot read cluster key file {}: {e}", path.display()))?;
        if secret.len() < 32 {
            return Err(format!(
                "cluster key file {} holds {} bytes; it needs at least 32 (e.g. head -c 32 /dev/urandom)",
                path.display(),
                secret.len()
            ));
        }
        Ok(ClusterKey::from_secret(&secret))
    }

    pub fn from_secret(secret: &[u8]) -> ClusterKey {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"dfs cluster key v1\0");
        ctx.update(secret);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(ctx.finish().as_ref());
        ClusterKey {
            mac: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }
    }

    /// The key that seals blob bodies between nodes (derived, never the MAC key itself).
    pub fn seal_key(&self) -> dfs_common::auth::Key {
        let tag = self.tag(&[b"seal blob bodies"]);
        let mut k = [0u8; 32];
        k.copy_from_slice(tag.as_ref());
        dfs_common::auth::Key(k)
    }

    /// The key gossip packets are signed with (derived, so that a gossip MAC can never
    /// stand for a request MAC or the other way round).
    pub fn gossip_key(&self) -> [u8; 32] {
        let tag = self.tag(&[b"gossip packets"]);
        let mut k = [0u8; 32];
        k.copy_from_slice(tag.as_ref());
        k
    }

    fn tag(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.mac);
        for p in parts {
            ctx.update(&(p.len() as u64).to_le_bytes());
            ctx.update(p);
        }
        ctx.sign()
    }

    fn request_parts<'a>(
        method: &'a str,
        path: &'a str,
        node: &'a str,
        time: &'a [u8],
        body: &'a [u8; 32],
    ) -> [&'a [u8]; 6] {
        [
            b"req",
            method.as_bytes(),
            path.as_bytes(),
            node.as_bytes(),
            time,
            body,
        ]
    }

    /// Headers to add to a request from `node`.
    pub fn sign_request(
        &self,
        method: &str,
        path: &str,
        node: &str,
        body_sha: &[u8; 32],
    ) -> Vec<(&'static str, String)> {
        let time = now_ms().to_string();
        let tag = self.tag(&Self::request_parts(
            method,
            path,
            node,
            time.as_bytes(),
            body_sha,
        ));
        vec![
            (HDR_NODE, node.to_string()),
            (HDR_NODE_TIME, time),
            (HDR_NODE_MAC, codec::to_hex(tag.as_ref())),
        ]
    }

    /// Checks a request's MAC and freshness; returns the sender and the MAC (to bind the
    /// answer to).
    pub fn verify_request(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body_sha: &[u8; 32],
    ) -> Result<(String, Vec<u8>), FsError> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| FsError::Unauthenticated(format!("no {name} header")))
        };
        let node = get(HDR_NODE)?;
        let time = get(HDR_NODE_TIME)?;
        let mac = codec::from_hex(get(HDR_NODE_MAC)?)
            .ok_or_else(|| FsError::Unauthenticated(format!("{HDR_NODE_MAC} is not hex")))?;
        let sent: u64 = time
            .parse()
            .map_err(|_| FsError::Unauthenticated(format!("{HDR_NODE_TIME} is not a number")))?;
        if now_ms().abs_diff(sent) > MAX_SKEW_MS {
            return Err(FsError::Unauthenticated(format!(
                "request from {node} is {} ms off this node's clock",
                now_ms().abs_diff(sent)
            )));
        }
        let parts = Self::request_parts(method, path, node, time.as_bytes(), body_sha);
        let mut ctx = hmac::Context::with_key(&self.mac);
        for p in parts {
            ctx.update(&(p.len() as u64).to_le_bytes());
            ctx.update(p);
        }
        let want = ctx.sign();
        if !constant_eq(want.as_ref(), &mac) {
            return Err(FsError::Unauthenticated(format!(
                "request from {node} is not signed with this cluster's key"
            )));
        }
        Ok((node.to_string(), mac))
    }

    /// A read token: lets whoever holds it read blob `id` from any node until
    /// `expires_ms` (the directory issues it after checking the reader's permission).
    pub fn read_token(&self, id: &dfs_common::BlobId, expires_ms: u64) -> String {
        let tag = self.tag(&[b"read", &id.0, &expires_ms.to_le_bytes()]);
        format!("{expires_ms}.{}", codec::to_hex(tag.as_ref()))
    }

    /// Checks a read token for blob `id`.
    pub fn check_read_token(&self, id: &dfs_common::BlobId, token: &str) -> Result<(), FsError> {
        let bad = || FsError::PermissionDenied("read token invalid or expired".into());
        let (expires, _) = token.split_once('.').ok_or_else(bad)?;
        let expires_ms: u64 = expires.parse().map_err(|_| bad())?;
        if expires_ms < now_ms()
            || !constant_eq(self.read_token(id, expires_ms).as_bytes(), token.as_bytes())
        {
            return Err(bad());
        }
        Ok(())
    }

    /// The MAC of an answer to the request whose MAC was `request_mac`.
    pub fn answer_mac(&self, request_mac: &[u8], status: u16, body_sha: &[u8; 32]) -> String {
        let tag = self.tag(&[b"ans", request_mac, &status.to_le_bytes(), body_sha]);
        codec::to_hex(tag.as_ref())
    }

    /// Checks an answer's MAC.
    pub fn verify_answer(
        &self,
        request_mac: &[u8],
        status: u16,
        headers: &HeaderMap,
        body_sha: &[u8; 32],
    ) -> Result<(), FsError> {
        let got = headers
            .get(HDR_NODE_MAC)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| FsError::Unauthenticated("answer without a cluster MAC".into()))?;
        let want = self.answer_mac(request_mac, status, body_sha);
        if !constant_eq(want.as_bytes(), got.as_bytes()) {
            return Err(FsError::Unauthenticated(
                "answer not signed with this cluster's key".into(),
            ));
        }
        Ok(())
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(list: Vec<(&'static str, String)>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.insert(k, HeaderValue::from_str(&v).unwrap());
        }
        h
    }

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let key = ClusterKey::from_secret(&[7u8; 32]);
        let body = [1u8; 32];
        let to = "127.0.0.3:1/v1/cluster/pull";
        let h = headers(key.sign_request("POST", to, "127.0.0.2:1", &body));
        let (node, mac) = key.verify_request("POST", to, &h, &body).unwrap();
        assert!(
            key.verify_request("POST", "127.0.0.4:1/v1/cluster/pull", &h, &body)
                .is_err(),
            "replayed to another node"
        );
        assert_eq!(node, "127.0.0.2:1");
        assert!(key
            .verify_request("POST", "127.0.0.3:1/v1/cluster/delete", &h, &body)
            .is_err());
        assert!(key.verify_request("POST", to, &h, &[2u8; 32]).is_err());
        let other = ClusterKey::from_secret(&[8u8; 32]);
        assert!(other.verify_request("POST", to, &h, &body).is_err());
        let blob = dfs_common::BlobId([3; 32]);
        let token = key.read_token(&blob, now_ms() + 1000);
        assert!(key.check_read_token(&blob, &token).is_ok());
        assert!(key
            .check_read_token(&dfs_common::BlobId([4; 32]), &token)
            .is_err());
        assert!(other.check_read_token(&blob, &token).is_err());
        assert!(
            key.check_read_token(&blob, &key.read_token(&blob, 1))
                .is_err(),
            "expired"
        );
        let ans = headers(vec![(HDR_NODE_MAC, key.answer_mac(&mac, 200, &body))]);
        assert!(key.verify_answer(&mac, 200, &ans, &body).is_ok());
        assert!(key.verify_answer(&mac, 404, &ans, &body).is_err());
    }
}
