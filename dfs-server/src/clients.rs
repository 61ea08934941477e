//! Who a request's client (mount) is. Registration (`POST /v1/clients`) issues a fresh
//! random id and, through an X25519 exchange, a key only that mount and this server hold
//! (`dfs_common::client_id`), recorded in the namespace so a restart keeps it. Every request
//! that names a client (`x-dfs-client`) must prove it (`x-dfs-client-auth`): a MAC under
//! that client's key over this server's epoch, a sequence number and the method and path;
//! a sequence number is accepted once (`Window`). A request that names no client is client
//! 0, which gets no promises, locks, callback channel or transactions.
//!
//! So an id learnt from a lock listing or a mount's control socket lets no one release,
//! renew or list that mount's locks or take its callback channel, and a captured request
//! cannot be sent again, before or after a restart (its epoch is gone).
//!
//! Owns: the keys in memory, the replay windows, the epoch's role in requests. Must not
//! decide permissions (`auth::perm`) or what a client may hold.

use crate::namespace::Namespace;
use dfs_common::auth::denied;
use dfs_common::client_id::{
    self, ClientKey, RegisterRequest, Registered, HDR_CLIENT_AUTH, SEQ_WINDOW,
};
use dfs_common::proto::HDR_CLIENT;
use dfs_common::FsError;
use hyper::HeaderMap;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

const WORDS: usize = (SEQ_WINDOW / 64) as usize;

/// The sequence numbers of one client seen in this epoch: the highest, and which of the
/// `SEQ_WINDOW` below it (bit k: `max - k`).
struct Window {
    max: u64,
    bits: [u64; WORDS],
}

impl Window {
    fn new() -> Window {
        Window {
            max: 0,
            bits: [0; WORDS],
        }
    }

    /// Ages every bit by `n` (bit k becomes bit k + n).
    fn shift(&mut self, n: u64) {
        if n >= SEQ_WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let (w, b) = ((n / 64) as usize, (n % 64) as u32);
        for i in (0..WORDS).rev() {
            let mut v = 0;
            if i >= w {
                v = self.bits[i - w] << b;
                if b > 0 && i > w {
                    v |= self.bits[i - w - 1] >> (64 - b);
                }
            }
            self.bits[i] = v;
        }
    }

    /// Sets bit `k`; whether it was set already.
    fn test_and_set(&mut self, k: u64) -> bool {
        let (i, m) = ((k / 64) as usize, 1u64 << (k % 64));
        let was = self.bits[i] & m != 0;
        self.bits[i] |= m;
        was
    }

    /// Whether `seq` is new (and remembers it): above the highest seen, or within the
    /// window below it and not seen yet.
    fn accept(&mut self, seq: u64) -> bool {
        if seq > self.max {
            self.shift(seq - self.max);
            self.max = seq;
            self.test_and_set(0);
            return true;
        }
        let k = self.max - seq;
        k < SEQ_WINDOW && !self.test_and_set(k)
    }
}

pub struct Clients {
    epoch: u64,
    keys: RwLock<HashMap<u64, ClientKey>>,
    windows: Mutex<HashMap<u64, Window>>,
}

fn random_id() -> u64 {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system randomness");
    u64::from_le_bytes(b)
}

impl Clients {
    /// The registered clients of `ns`, for a server run of epoch `epoch`.
    pub fn load(ns: &Namespace, epoch: u64) -> Result<Clients, FsError> {
        let keys = ns
            .client_keys()?
            .into_iter()
            .map(|(id, k)| (id, ClientKey(k)))
            .collect();
        Ok(Clients {
            epoch,
            keys: RwLock::new(keys),
            windows: Mutex::new(HashMap::new()),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The key of `client`, if registered.
    pub fn key(&self, client: u64) -> Option<ClientKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client)
            .cloned()
    }

    /// `POST /v1/clients`: a new client (blocking: one durable commit).
    pub fn register(&self, ns: &Namespace, req: &RegisterRequest) -> Result<Registered, FsError> {
        loop {
            let client = random_id();
            if client == 0 || self.key(client).is_some() {
                continue;
            }
            let (public, key) = client_id::accept(&req.public, client)?;
            match ns.register_client(client, &key.0) {
                Err(FsError::Exists) => continue,
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            self.keys
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(client, key);
            log::info!("registered client {client:#x}");
            return Ok(Registered {
                client,
                public,
                epoch: self.epoch,
            });
        }
    }

    /// The client a request with `headers` (method `method`, path and query `path`) is
    /// from: 0 when it names none; otherwise the named client, if the request proves it.
    pub fn verify(&self, headers: &HeaderMap, method: &str, path: &str) -> Result<u64, FsError> {
        let client = match crate::net::body::header_u64(headers, HDR_CLIENT)? {
            None | Some(0) => return Ok(0),
            Some(c) => c,
        };
        let proof = crate::net::body::header(headers, HDR_CLIENT_AUTH)?
            .ok_or_else(|| denied(format!("{HDR_CLIENT} without {HDR_CLIENT_AUTH}")))?;
        let (epoch, seq, mac) = client_id::parse_auth_header(proof)?;
        let key = self.key(client).ok_or_else(|| {
            FsError::UnknownClient(format!("client {client:#x} is not registered here"))
        })?;
        if epoch != self.epoch {
            return Err(FsError::StaleEpoch(format!(
                "epoch {epoch:#x}, the server's is {:#x}",
                self.epoch
            )));
        }
        if !key.verify(epoch, client, seq, method, path, &mac) {
            return Err(denied(format!(
                "the request does not prove it comes from client {client:#x}"
            )));
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if !windows
            .entry(client)
            .or_insert_with(Window::new)
            .accept(seq)
        {
            return Err(denied(format!(
                "request {seq} of client {client:#x} was seen already (a replay)"
            )));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_takes_each_sequence_number_once_within_its_span() {
        let mut w = Window::new();
        assert!(w.accept(1_000_000));
        assert!(!w.accept(1_000_000));
        assert!(w.accept(999_990), "below the highest, not seen");
        assert!(!w.accept(999_990));
        assert!(w.accept(1_000_100));
        assert!(
            !w.accept(999_990),
            "still remembered after the window moved"
        );
        assert!(w.accept(999_991));
        assert!(!w.accept(1_000_100 - SEQ_WINDOW), "past the window's span");
        assert!(w.accept(1_000_100 - SEQ_WINDOW + 1));
        // A jump past the whole span forgets everything below it.
        assert!(w.accept(5_000_000));
        assert!(!w.accept(1_000_100));
        for s in (5_000_001..5_000_200).rev() {
            assert!(w.accept(s));
        }
        for s in 5_000_000..5_000_200 {
            assert!(!w.accept(s), "{s}");
        }
    }
}
