//! The replay cache: every authenticator accepted within the clock-skew window, by
//! (session key, nonce, sequence), so that a request captured on the network is refused
//! when it comes again.
//!
//! It survives restarts: each accepted authenticator is appended to a file in the realm's
//! directory before its request runs, and a server that starts reloads the ones still in
//! their window. (The other way, refusing every authenticator dated before the server's
//! start, would trust clients' clocks: a client whose clock runs ahead dates its requests
//! after the restart, and those could be replayed after it.) The appends are plain writes,
//! so a crash of the server process loses none; they are flushed to the disk once a second
//! (`flush`), so a crash of the whole host may forget the last second of them.
//!
//! Two files take turns (`replay-0`, `replay-1`): the current one gets the appends, and
//! every `2 × skew` seconds the older one is emptied and becomes current. An entry expires
//! at most `2 × skew` after it was written (its time may be up to `skew` ahead of the
//! server's clock), so the file emptied holds only expired entries; nothing is rewritten.
//!
//! Owns: the cache, its files and their format (records of a 32-byte id and an 8-byte
//! expiry, little-endian). Must not decide whether an authenticator is genuine (that is
//! `super::authenticate`).

use dfs_common::auth::{self, denied, Authenticator, Key};
use dfs_common::{private_files, FsError};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most authenticators remembered at once; beyond it new requests get 503 until old ones
/// leave the skew window.
const REPLAY_CAPACITY: usize = 1 << 20;

/// Bytes of one record: the authenticator's id and its expiry (unix seconds).
const RECORD: usize = 32 + 8;

/// Authenticators seen within the skew window, by (session key, nonce, sequence).
pub struct ReplayCache {
    inner: Mutex<Inner>,
}

struct Inner {
    seen: HashMap<[u8; 32], i64>,
    log: Option<ReplayLog>,
}

/// The two files the cache is kept in.
struct ReplayLog {
    files: [File; 2],
    current: usize,
    /// When `current` became current (unix seconds).
    since: i64,
    /// Seconds a file stays current: twice the skew.
    turn: i64,
    /// Appended to since the last `flush`.
    dirty: bool,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new()
    }
}

fn file_name(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("replay-{n}"))
}

/// The unexpired records of file `path` (a missing file has none; a torn last record is
/// ignored).
fn read_records(path: &Path, now: i64, into: &mut HashMap<[u8; 32], i64>) -> io::Result<()> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for rec in bytes.chunks_exact(RECORD) {
        let id: [u8; 32] = rec[..32].try_into().expect("32 bytes");
        let expires = i64::from_le_bytes(rec[32..].try_into().expect("8 bytes"));
        if expires >= now {
            into.insert(id, expires);
        }
    }
    Ok(())
}

fn record(id: &[u8; 32], expires: i64) -> [u8; RECORD] {
    let mut rec = [0u8; RECORD];
    rec[..32].copy_from_slice(id);
    rec[32..].copy_from_slice(&expires.to_le_bytes());
    rec
}

impl ReplayCache {
    /// A cache in memory only (tests).
    pub fn new() -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(Inner {
                seen: HashMap::new(),
                log: None,
            }),
        }
    }

    /// The cache kept in directory `dir`, with what an earlier run accepted that is still
    /// within its window (`now`, `skew` in seconds).
    pub fn open(dir: &Path, now: i64, skew: i64) -> io::Result<ReplayCache> {
        let mut seen = HashMap::new();
        for n in 0..2 {
            read_records(&file_name(dir, n), now, &mut seen)?;
        }
        // The live entries go into file 0, written whole before it replaces the old one;
        // file 1, emptied, is current.
        let temp = dir.join("replay-0.new");
        let mut f = private_files::create(&temp)?;
        let mut all = Vec::with_capacity(seen.len() * RECORD);
        for (id, expires) in &seen {
            all.extend_from_slice(&record(id, *expires));
        }
        f.write_all(&all)?;
        f.sync_all()?;
        std::fs::rename(&temp, file_name(dir, 0))?;
        let append = || {
            private_files::options()
                .append(true)
                .create(true)
                .open(file_name(dir, 1))
        };
        let current = append()?;
        current.set_len(0)?;
        File::open(dir)?.sync_all()?;
        let older = private_files::options()
            .append(true)
            .open(file_name(dir, 0))?;
        Ok(ReplayCache {
            inner: Mutex::new(Inner {
                seen,
                log: Some(ReplayLog {
                    files: [older, current],
                    current: 1,
                    since: now,
                    turn: 2 * skew.max(1),
                    dirty: false,
                }),
            }),
        })
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("replay cache").seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accepts `a` once if its time is within `skew` of `now`, and records it (on disk too,
    /// before answering) so that it is refused from then on, restarts included.
    pub fn check(&self, key: &Key, a: &Authenticator, now: i64, skew: i64) -> Result<(), FsError> {
        if (a.time - now).abs() > skew {
            return Err(denied(format!(
                "authenticator time is {} s from the server's clock (limit {skew} s)",
                a.time - now
            )));
        }
        let mut id = key.0.to_vec();
        id.extend_from_slice(&a.nonce.to_le_bytes());
        id.extend_from_slice(&a.seq.to_le_bytes());
        let id = auth::sha256(&id);
        let mut inner = self.inner.lock().expect("replay cache");
        if inner.seen.len() >= REPLAY_CAPACITY / 2 {
            inner.seen.retain(|_, exp| *exp >= now);
        }
        if inner.seen.len() >= REPLAY_CAPACITY {
            return Err(FsError::Unavailable("replay cache full; try again".into()));
        }
        if inner.seen.contains_key(&id) {
            return Err(denied("replayed authenticator"));
        }
        let expires = a.time + skew;
        if let Some(log) = inner.log.as_mut() {
            log.append(&id, expires, now).map_err(|e| {
                log::error!("cannot record an authenticator in the replay cache: {e}");
                FsError::Unavailable(format!("replay cache: {e}"))
            })?;
        }
        inner.seen.insert(id, expires);
        Ok(())
    }

    /// Writes what was appended since the last call to the disk (blocking: one fdatasync).
    pub fn flush(&self) -> io::Result<()> {
        let file = {
            let mut inner = self.inner.lock().expect("replay cache");
            match inner.log.as_mut() {
                Some(log) if log.dirty => {
                    log.dirty = false;
                    log.files[log.current].try_clone()?
                }
                _ => return Ok(()),
            }
        };
        file.sync_data()
    }
}

impl ReplayLog {
    fn append(&mut self, id: &[u8; 32], expires: i64, now: i64) -> io::Result<()> {
        if now >= self.since + self.turn {
            let older = 1 - self.current;
            // Written before the turn: make it durable before what it held can go.
            self.files[self.current].sync_data()?;
            self.files[older].set_len(0)?;
            self.current = older;
            self.since = now;
        }
        self.files[self.current].write_all(&record(id, expires))?;
        self.dirty = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(time: i64, nonce: u64) -> Authenticator {
        Authenticator {
            principal: "p".into(),
            time,
            nanos: 0,
            nonce,
            seq: 0,
            digest: [0; 32],
        }
    }

    #[test]
    fn replays_and_stale_authenticators_are_refused() {
        let c = ReplayCache::new();
        let k = Key::random();
        c.check(&k, &a(1000, 1), 1000, 300).unwrap();
        assert!(c.check(&k, &a(1000, 1), 1001, 300).is_err());
        c.check(&k, &a(1000, 2), 1001, 300).unwrap();
        c.check(&Key::random(), &a(1000, 1), 1001, 300).unwrap();
        assert!(c.check(&k, &a(600, 3), 1000, 300).is_err());
        assert!(c.check(&k, &a(1400, 4), 1000, 300).is_err());
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn what_was_accepted_is_refused_after_a_reopen_until_it_expires() {
        let dir = tempfile::TempDir::new().unwrap();
        let k = Key::random();
        {
            let c = ReplayCache::open(dir.path(), 1000, 300).unwrap();
            c.check(&k, &a(1000, 1), 1000, 300).unwrap();
            c.check(&k, &a(1290, 2), 1000, 300).unwrap();
            c.flush().unwrap();
        }
        let c = ReplayCache::open(dir.path(), 1100, 300).unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.check(&k, &a(1000, 1), 1100, 300).is_err());
        assert!(c.check(&k, &a(1290, 2), 1100, 300).is_err());
        c.check(&k, &a(1100, 3), 1100, 300).unwrap();
        drop(c);
        // Past the first one's window, only the others come back.
        let c = ReplayCache::open(dir.path(), 1301, 300).unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.check(&k, &a(1100, 3), 1301, 300).is_err());
    }

    #[test]
    fn the_files_take_turns_without_losing_a_live_entry() {
        let dir = tempfile::TempDir::new().unwrap();
        let k = Key::random();
        let c = ReplayCache::open(dir.path(), 0, 10).unwrap();
        // One authenticator a second for 100 s, each dated up to the skew ahead.
        for t in 0..100i64 {
            c.check(&k, &a(t + (t % 11), t as u64), t, 10).unwrap();
        }
        drop(c);
        let mut live = HashMap::new();
        for n in 0..2 {
            read_records(&file_name(dir.path(), n), 99, &mut live).unwrap();
        }
        let expected = (0..100i64).filter(|t| t + (t % 11) + 10 >= 99).count();
        assert_eq!(live.len(), expected);
        let size = |n| std::fs::metadata(file_name(dir.path(), n)).unwrap().len();
        assert!(
            size(0) + size(1) <= 50 * RECORD as u64,
            "old records were kept"
        );
    }
}
