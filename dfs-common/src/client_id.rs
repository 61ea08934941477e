//! A mount's identity on the wire. The server issues each mount (each *client*) its id and,
//! through an X25519 exchange at registration, a key that only the two of them hold
//! (`ClientKey`). Every request that names a client (header `x-dfs-client`) proves it with
//! `x-dfs-client-auth`: a MAC under that key over the server's epoch, a sequence number,
//! the method and the path. So:
//! - knowing a mount's id (lock listings show it) lets no one act as that mount: release
//!   its locks, renew them, take its callback channel;
//! - a request captured on the network is refused if sent again (the server remembers the
//!   sequence numbers it saw in this epoch), and after a restart too (a new epoch, which
//!   every request's MAC covers);
//! - the callback channel is sealed (ChaCha20-Poly1305 stream, `crate::privacy`) under a
//!   key derived from the client key and the epoch: nobody else reads or forges its breaks.
//!
//! The exchange is not authenticated by anything else: a man in the middle at registration
//! time could make himself the client. Afterwards, nobody can.
//!
//! Owns: the exchange, the key derivations, the MAC and the header formats. No I/O.

use crate::auth::{denied, Key};
use crate::FsError;
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::{hkdf, hmac, rand};
use serde::{Deserialize, Serialize};

/// Registration: `POST` a bincode `RegisterRequest`, answered with `Registered`.
pub const REGISTER_PATH: &str = "/v1/clients";
/// Request header: `EPOCH.SEQ.MAC` (hex, decimal, hex) proving the sender is the client
/// named by `x-dfs-client`.
pub const HDR_CLIENT_AUTH: &str = "x-dfs-client-auth";
/// Answer header: the server's current epoch (hex), on every answer, so a client whose
/// epoch is old (the server restarted) learns the new one from any refusal.
pub const HDR_EPOCH: &str = "x-dfs-epoch";
/// Answer header of the callback channel: the nonce its sealed stream is bound to (hex).
pub const HDR_CHANNEL_NONCE: &str = "x-dfs-channel-nonce";

/// How many sequence numbers below the highest seen are still accepted (once each):
/// requests of one client travel over several connections and may arrive out of order.
pub const SEQ_WINDOW: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The client's ephemeral X25519 public key.
    pub public: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The id the server issued (random, never 0).
    pub client: u64,
    /// The server's ephemeral X25519 public key.
    pub public: [u8; 32],
    /// The server's current epoch.
    pub epoch: u64,
}

/// The secret a client and the server share.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey(pub [u8; 32]);

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(..)")
    }
}

fn no_crypto(what: &str) -> FsError {
    FsError::Io(format!("client key exchange: {what}"))
}

/// The key both sides derive from the X25519 shared secret, bound to the issued id and to
/// both public keys.
fn derive(
    shared: &[u8],
    client: u64,
    client_public: &[u8; 32],
    server_public: &[u8; 32],
) -> ClientKey {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"dfs client key v1");
    let mut info = Vec::with_capacity(72);
    info.extend_from_slice(&client.to_le_bytes());
    info.extend_from_slice(client_public);
    info.extend_from_slice(server_public);
    let mut out = [0u8; 32];
    salt.extract(shared)
        .expand(&[&info], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    ClientKey(out)
}

/// The client's half of the exchange.
pub struct Exchange {
    private: EphemeralPrivateKey,
    public: [u8; 32],
}

impl Exchange {
    pub fn start() -> Result<Exchange, FsError> {
        let private = EphemeralPrivateKey::generate(&X25519, &rand::SystemRandom::new())
            .map_err(|_| no_crypto("no randomness"))?;
        let public: [u8; 32] = private
            .compute_public_key()
            .map_err(|_| no_crypto("public key"))?
            .as_ref()
            .try_into()
            .map_err(|_| no_crypto("public key length"))?;
        Ok(Exchange { private, public })
    }

    pub fn request(&self) -> RegisterRequest {
        RegisterRequest {
            public: self.public,
        }
    }

    /// The client key, from the server's answer.
    pub fn finish(self, answer: &Registered) -> Result<ClientKey, FsError> {
        let peer = UnparsedPublicKey::new(&X25519, answer.public);
        let public = self.public;
        agreement::agree_ephemeral(self.private, &peer, |shared| {
            derive(shared, answer.client, &public, &answer.public)
        })
        .map_err(|_| no_crypto("the server's public key was refused"))
    }
}

/// The server's half: its public key and the client key for a client that sent
/// `client_public` and is issued `client`.
pub fn accept(client_public: &[u8; 32], client: u64) -> Result<([u8; 32], ClientKey), FsError> {
    let mine = Exchange::start()?;
    let server_public = mine.public;
    let peer = UnparsedPublicKey::new(&X25519, *client_public);
    let key = agreement::agree_ephemeral(mine.private, &peer, |shared| {
        derive(shared, client, client_public, &server_public)
    })
    .map_err(|_| FsError::BadRequest("not an X25519 public key".into()))?;
    Ok((server_public, key))
}

impl ClientKey {
    /// What a request's MAC covers (see the module comment).
    fn signed(epoch: u64, client: u64, seq: u64, method: &str, path: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(64 + path.len());
        m.extend_from_slice(b"dfs client request v1\0");
        m.extend_from_slice(&epoch.to_le_bytes());
        m.extend_from_slice(&client.to_le_bytes());
        m.extend_from_slice(&seq.to_le_bytes());
        m.extend_from_slice(method.as_bytes());
        m.push(0);
        m.extend_from_slice(path.as_bytes());
        m
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }

    /// The MAC of one request.
    pub fn request_mac(
        &self,
        epoch: u64,
        client: u64,
        seq: u64,
        method: &str,
        path: &str,
    ) -> [u8; 32] {
        let msg = Self::signed(epoch, client, seq, method, path);
        let tag = hmac::sign(&self.hmac_key(), &msg);
        tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
    }

    /// Whether `mac` is this request's (compared in constant time).
    pub fn verify(
        &self,
        epoch: u64,
        client: u64,
        seq: u64,
        method: &str,
        path: &str,
        mac: &[u8; 32],
    ) -> bool {
        let msg = Self::signed(epoch, client, seq, method, path);
        hmac::verify(&self.hmac_key(), &msg, mac).is_ok()
    }

    /// The key the callback channel of this epoch is sealed with.
    pub fn channel_key(&self, epoch: u64) -> Key {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(b"dfs callback channel v1\0");
        ctx.update(&epoch.to_le_bytes());
        Key(ctx
            .sign()
            .as_ref()
            .try_into()
            .expect("HMAC-SHA256 is 32 bytes"))
    }
}

/// A registered client's side of the proofs, for a program that speaks the wire itself (a
/// test, a tool): its id, key and the server's epoch (set it again after a restart), and
/// the next sequence number (starting at the clock in microseconds, so that it keeps
/// growing across runs).
pub struct Prover {
    pub client: u64,
    key: ClientKey,
    epoch: std::sync::atomic::AtomicU64,
    seq: std::sync::atomic::AtomicU64,
}

impl Prover {
    /// Registers a new client through `post`, which sends its argument as the body of a
    /// `POST /v1/clients` and returns the answer's body.
    pub fn register(
        post: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, FsError>,
    ) -> Result<Prover, FsError> {
        let exchange = Exchange::start()?;
        let answer: Registered =
            crate::codec::decode(&post(crate::codec::encode(&exchange.request()))?)?;
        Prover::new(exchange, &answer)
    }

    /// The prover of the client `answer` registered, from the exchange that asked.
    pub fn new(exchange: Exchange, answer: &Registered) -> Result<Prover, FsError> {
        let key = exchange.finish(answer)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        Ok(Prover {
            client: answer.client,
            key,
            epoch: std::sync::atomic::AtomicU64::new(answer.epoch),
            seq: std::sync::atomic::AtomicU64::new(now),
        })
    }

    /// The server's epoch changed (it restarted).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, std::sync::atomic::Ordering::SeqCst);
    }

    /// The headers naming and proving this client on a request (`path` with its query).
    pub fn headers(&self, method: &str, path: &str) -> [(&'static str, String); 2] {
        use std::sync::atomic::Ordering;
        let epoch = self.epoch.load(Ordering::SeqCst);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let mac = self.key.request_mac(epoch, self.client, seq, method, path);
        [
            (crate::proto::HDR_CLIENT, self.client.to_string()),
            (HDR_CLIENT_AUTH, auth_header(epoch, seq, &mac)),
        ]
    }

    /// The key the server seals this client's callback channel with in `epoch`.
    pub fn channel_key(&self, epoch: u64) -> Key {
        self.key.channel_key(epoch)
    }
}

/// The `x-dfs-client-auth` value.
pub fn auth_header(epoch: u64, seq: u64, mac: &[u8; 32]) -> String {
    format!("{epoch:x}.{seq}.{}", crate::codec::to_hex(mac))
}

/// `(epoch, seq, mac)` of an `x-dfs-client-auth` value.
pub fn parse_auth_header(v: &str) -> Result<(u64, u64, [u8; 32]), FsError> {
    let bad = || denied(format!("{HDR_CLIENT_AUTH} is not EPOCH.SEQ.MAC"));
    let mut parts = v.split('.');
    let (Some(e), Some(s), Some(m), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let epoch = u64::from_str_radix(e, 16).map_err(|_| bad())?;
    let seq = s.parse().map_err(|_| bad())?;
    let mac = crate::codec::from_hex(m)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(bad)?;
    Ok((epoch, seq, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_key_and_only_it_verifies() {
        let ex = Exchange::start().unwrap();
        let req = ex.request();
        let (server_public, server_key) = accept(&req.public, 77).unwrap();
        let answer = Registered {
            client: 77,
            public: server_public,
            epoch: 5,
        };
        let client_key = ex.finish(&answer).unwrap();
        assert_eq!(client_key, server_key);
        let mac = client_key.request_mac(5, 77, 1, "POST", "/v1/locks/release");
        assert!(server_key.verify(5, 77, 1, "POST", "/v1/locks/release", &mac));
        for (epoch, client, seq, method, path) in [
            (6, 77, 1, "POST", "/v1/locks/release"),
            (5, 78, 1, "POST", "/v1/locks/release"),
            (5, 77, 2, "POST", "/v1/locks/release"),
            (5, 77, 1, "GET", "/v1/locks/release"),
            (5, 77, 1, "POST", "/v1/locks/renew"),
        ] {
            assert!(!server_key.verify(epoch, client, seq, method, path, &mac));
        }
        // Another exchange gives another key.
        let other = accept(&Exchange::start().unwrap().request().public, 77)
            .unwrap()
            .1;
        assert_ne!(other, server_key);
        assert_ne!(client_key.channel_key(5).0, client_key.channel_key(6).0);
    }

    #[test]
    fn auth_headers_round_trip_and_garbage_is_refused() {
        let mac = [9u8; 32];
        let h = auth_header(0xabc, 42, &mac);
        assert_eq!(parse_auth_header(&h).unwrap(), (0xabc, 42, mac));
        for bad in ["", "1.2", "1.2.3.4", "zz.1.00", "1.x.00", "1.2.0011"] {
            assert!(parse_auth_header(bad).is_err(), "{bad}");
        }
    }
}
