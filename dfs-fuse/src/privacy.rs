//! The client's side of the privacy protection level (format: `dfs_common::privacy`).
//!
//! A mount runs at one protection level (`dfs-mount --protection integrity|privacy`): at
//! privacy every signed request asks for privacy (`x-dfs-protection: privacy`, covered by
//! the authenticator), its body is sealed with the session key as it streams out, and the
//! answer's body is opened as it streams in. Unsigned (anonymous) requests, and every
//! request in an open cell, stay as they are.
//!
//! Owns: the mount's level and the body adapters. Must not sign (see `crate::auth`).

use bytes::Bytes;
use dfs_common::privacy::{Opener, Sealer};
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use hyper::body::{Body, Frame};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static PRIVACY: AtomicBool = AtomicBool::new(false);

/// Sets this process's protection level.
pub fn set_privacy(on: bool) {
    PRIVACY.store(on, Ordering::Relaxed);
}

/// Whether signed requests of this process ask for privacy.
pub fn enabled() -> bool {
    PRIVACY.load(Ordering::Relaxed)
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// A body whose bytes are opened as they arrive; a tampered or cut body ends in an
/// `InvalidData` error.
pub fn opening<B>(body: B, opener: Opener) -> BoxBody<Bytes, io::Error>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let stream = futures_util::stream::unfold(Some((body, opener)), |state| async move {
        let (mut body, mut opener) = state?;
        loop {
            match body.frame().await {
                None => {
                    return match opener.finish() {
                        Ok(()) => None,
                        Err(e) => Some((Err(invalid(e)), None)),
                    }
                }
                Some(Err(e)) => return Some((Err(io::Error::other(e.to_string())), None)),
                Some(Ok(f)) => {
                    let Ok(data) = f.into_data() else { continue };
                    match opener.push(&data) {
                        Ok(p) if p.is_empty() => continue,
                        Ok(p) => {
                            return Some((Ok(Frame::data(Bytes::from(p))), Some((body, opener))))
                        }
                        Err(e) => return Some((Err(invalid(e)), None)),
                    }
                }
            }
        }
    });
    StreamBody::new(stream).boxed()
}

/// A body whose bytes are sealed as they leave.
pub fn sealing<B>(body: B, sealer: Sealer) -> BoxBody<Bytes, io::Error>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let stream = futures_util::stream::unfold(Some((body, sealer)), |state| async move {
        let (mut body, mut sealer) = state?;
        loop {
            match body.frame().await {
                None => return Some((Ok(Frame::data(Bytes::from(sealer.seal(&[], true)))), None)),
                Some(Err(e)) => return Some((Err(io::Error::other(e.to_string())), None)),
                Some(Ok(f)) => {
                    let Ok(data) = f.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    let sealed = Bytes::from(sealer.seal(&data, false));
                    return Some((Ok(Frame::data(sealed)), Some((body, sealer))));
                }
            }
        }
    });
    StreamBody::new(stream).boxed()
}
