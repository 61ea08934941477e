//! The privacy protection level: bodies encrypted with the session key as a stream of
//! sealed frames, so file contents still stream (never a whole file in memory).
//!
//! A request asks for privacy with `x-dfs-protection: privacy` (covered by the request's
//! digest, so it cannot be stripped); the server then expects the request body in this
//! format and answers in kind. Stream format:
//!
//! ```text
//! prefix: 8 random bytes
//! frame*: u32 LE length of what follows ‖ ChaCha20-Poly1305(plain ≤ FRAME bytes) with tag
//! ```
//!
//! Each frame's nonce is prefix ‖ u24 counter ‖ flag (1 on the last frame, else 0); the
//! associated data is a direction label and the authenticator's nonce, so a body cannot be
//! moved to another request, nor a request body replayed as an answer. A stream that ends
//! without a last frame, reorders, drops or changes a frame fails to open. Body hashes
//! (`x-dfs-body-sha256`, `x-dfs-sha256`, the answer's digest) are of the plain bodies.
//!
//! What stays visible: methods, paths (inode numbers), lengths, and the `x-dfs-*` headers
//! (attributes, blob hashes, lock fences); file contents and everything in `/v1/dir`
//! bodies (names, link targets) do not.
//!
//! Must not do I/O.

use crate::auth::{denied, Key};
use crate::FsError;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

/// The request header asking for privacy, and its value.
pub const HDR_PROTECTION: &str = "x-dfs-protection";
pub const PRIVACY: &str = "privacy";
/// The plain length of a privacy store's body (its `content-length` is the sealed one's).
pub const HDR_PLAIN_LENGTH: &str = "x-dfs-plain-length";
/// Largest plain frame.
pub const FRAME: usize = 1 << 20;
const TAG: usize = 16;
const MAX_FRAMES: u32 = 1 << 24;

/// Which way a body goes (part of the associated data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Request,
    Response,
}

fn aad(dir: Dir, nonce: u64) -> Vec<u8> {
    let mut a = match dir {
        Dir::Request => b"dfs-privacy-request/".to_vec(),
        Dir::Response => b"dfs-privacy-response/".to_vec(),
    };
    a.extend_from_slice(&nonce.to_le_bytes());
    a
}

fn aead(key: &Key) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key.0).expect("32-byte key"))
}

fn nonce(prefix: &[u8; 8], counter: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(prefix);
    n[8..11].copy_from_slice(&counter.to_le_bytes()[..3]);
    n[11] = last as u8;
    Nonce::assume_unique_for_key(n)
}

/// Seals one body, frame by frame.
pub struct Sealer {
    key: LessSafeKey,
    aad: Vec<u8>,
    prefix: [u8; 8],
    counter: u32,
    started: bool,
    done: bool,
}

impl Sealer {
    pub fn new(key: &Key, dir: Dir, auth_nonce: u64) -> Sealer {
        Sealer {
            key: aead(key),
            aad: aad(dir, auth_nonce),
            prefix: crate::auth::random_bytes(),
            counter: 0,
            started: false,
            done: false,
        }
    }

    /// Sealed frames for `plain` (split at `FRAME`); `last` marks the end of the body.
    pub fn seal(&mut self, plain: &[u8], last: bool) -> Vec<u8> {
        assert!(!self.done, "sealing after the last frame");
        let mut out = Vec::with_capacity(plain.len() + 32);
        if !self.started {
            out.extend_from_slice(&self.prefix);
            self.started = true;
        }
        let mut chunks: Vec<&[u8]> = plain.chunks(FRAME).collect();
        if chunks.is_empty() {
            if !last {
                return out;
            }
            chunks.push(&[]);
        }
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            let is_last = last && i + 1 == n;
            assert!(self.counter < MAX_FRAMES, "body too long for one stream");
            let mut buf = c.to_vec();
            self.key
                .seal_in_place_append_tag(
                    nonce(&self.prefix, self.counter, is_last),
                    Aad::from(&self.aad),
                    &mut buf,
                )
                .expect("seal");
            self.counter += 1;
            out.extend_from_slice(&(buf.len() as u32).to_le_bytes());
            out.extend_from_slice(&buf);
        }
        self.done = last;
        out
    }
}

/// Opens one body as its bytes arrive.
pub struct Opener {
    key: LessSafeKey,
    aad: Vec<u8>,
    prefix: Option<[u8; 8]>,
    counter: u32,
    buf: Vec<u8>,
    done: bool,
}

fn tampered(why: &str) -> FsError {
    denied(format!("sealed body failed to open: {why}"))
}

impl Opener {
    pub fn new(key: &Key, dir: Dir, auth_nonce: u64) -> Opener {
        Opener {
            key: aead(key),
            aad: aad(dir, auth_nonce),
            prefix: None,
            counter: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Feeds received bytes; returns the plain bytes of every frame completed by them.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, FsError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            if self.prefix.is_none() {
                if rest.len() < 8 {
                    break;
                }
                self.prefix = Some(rest[..8].try_into().expect("8 bytes"));
                pos += 8;
                continue;
            }
            if rest.len() < 4 {
                break;
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            if !(TAG..=FRAME + TAG).contains(&len) {
                return Err(tampered("bad frame length"));
            }
            if rest.len() < 4 + len {
                break;
            }
            if self.done {
                return Err(tampered("data after the last frame"));
            }
            let mut frame = rest[4..4 + len].to_vec();
            pos += 4 + len;
            let prefix = self.prefix.expect("prefix read");
            let key = &self.key;
            let aad = &self.aad;
            let counter = self.counter;
            let try_open = |last: bool, mut f: Vec<u8>| -> Option<Vec<u8>> {
                let n = key
                    .open_in_place(nonce(&prefix, counter, last), Aad::from(aad), &mut f)
                    .ok()?
                    .len();
                f.truncate(n);
                Some(f)
            };
            let copy = frame.clone();
            let plain = match try_open(false, std::mem::take(&mut frame)) {
                Some(p) => p,
                None => {
                    let p = try_open(true, copy).ok_or_else(|| tampered("frame changed"))?;
                    self.done = true;
                    p
                }
            };
            self.counter += 1;
            out.extend_from_slice(&plain);
        }
        self.buf.drain(..pos);
        Ok(out)
    }

    /// Checks that the body ended with its last frame.
    pub fn finish(&self) -> Result<(), FsError> {
        if self.done && self.buf.is_empty() {
            Ok(())
        } else {
            Err(tampered("body cut short"))
        }
    }
}

/// Seals a whole (small) body.
pub fn seal_all(key: &Key, dir: Dir, auth_nonce: u64, plain: &[u8]) -> Vec<u8> {
    Sealer::new(key, dir, auth_nonce).seal(plain, true)
}

/// Opens a whole (small) body.
pub fn open_all(key: &Key, dir: Dir, auth_nonce: u64, sealed: &[u8]) -> Result<Vec<u8>, FsError> {
    let mut o = Opener::new(key, dir, auth_nonce);
    let plain = o.push(sealed)?;
    o.finish()?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_round_trip_in_any_split_and_detect_tampering_and_truncation() {
        let k = Key::random();
        let plain: Vec<u8> = (0..(FRAME * 2 + 100)).map(|i| (i % 251) as u8).collect();
        let mut s = Sealer::new(&k, Dir::Response, 7);
        let mut sealed = s.seal(&plain[..FRAME + 5], false);
        sealed.extend(s.seal(&plain[FRAME + 5..], true));
        assert!(!sealed.windows(64).any(|w| w == &plain[1000..1064]));
        let mut o = Opener::new(&k, Dir::Response, 7);
        let mut got = Vec::new();
        for c in sealed.chunks(4099) {
            got.extend(o.push(c).unwrap());
        }
        o.finish().unwrap();
        assert_eq!(got, plain);
        assert!(open_all(&k, Dir::Request, 7, &sealed).is_err());
        assert!(open_all(&k, Dir::Response, 8, &sealed).is_err());
        assert!(open_all(&Key::random(), Dir::Response, 7, &sealed).is_err());
        let mut bad = sealed.clone();
        bad[100] ^= 1;
        assert!(open_all(&k, Dir::Response, 7, &bad).is_err());
        // Cut after the first frame: every frame opens, but the end is missing.
        let first = 8 + 4 + FRAME + TAG;
        let mut o = Opener::new(&k, Dir::Response, 7);
        o.push(&sealed[..first]).unwrap();
        assert!(o.finish().is_err());
        assert_eq!(
            open_all(&k, Dir::Request, 1, &seal_all(&k, Dir::Request, 1, b"")).unwrap(),
            b""
        );
        assert_eq!(
            open_all(&k, Dir::Request, 1, &seal_all(&k, Dir::Request, 1, b"hi")).unwrap(),
            b"hi"
        );
    }
}
