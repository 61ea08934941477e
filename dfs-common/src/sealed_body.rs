//! Streaming bodies of the privacy protection level: adapters that open or seal an HTTP
//! body frame by frame as it streams (format and keys: `crate::privacy`). Used alike by the
//! client and the server, so a body never has to sit whole in memory on either side.
//! Pure transformations: no sockets, no files.

use crate::privacy::{Opener, Sealer};
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use std::io;

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
