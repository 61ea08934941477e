//! The server's side of the privacy protection level (format: `dfs_common::privacy`): an
//! authenticated request with `x-dfs-protection: privacy` has its body opened as it
//! streams in, and its answer's body sealed as it streams out, both with the session key.
//!
//! Owns: the body adapters. Must not decide who the caller is (see `super::authenticate`).

use super::Session;
use crate::net::body::{ReqBody, ResBody};
use bytes::Bytes;
use dfs_common::privacy::{Dir, Opener, Sealer, HDR_PLAIN_LENGTH, HDR_PROTECTION, PRIVACY};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};
use hyper::{Request, Response};
use std::io;

/// Whether a request asks for privacy.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(HDR_PROTECTION)
        .is_some_and(|v| v.as_bytes() == PRIVACY.as_bytes())
}

pub use dfs_common::sealed_body::{opening, sealing};

/// The request as the handlers see it: opened if it asked for privacy (its
/// `content-length` then becomes the plain length, from `x-dfs-plain-length`).
pub fn open_request<B>(session: Option<&Session>, req: Request<B>) -> Request<ReqBody>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let (mut parts, body) = req.into_parts();
    match session {
        Some(s) if s.privacy => {
            parts.headers.remove(CONTENT_LENGTH);
            if let Some(v) = parts.headers.get(HDR_PLAIN_LENGTH).cloned() {
                parts.headers.insert(CONTENT_LENGTH, v);
            }
            let opener = Opener::new(&s.key, Dir::Request, s.nonce);
            Request::from_parts(parts, opening(body, opener))
        }
        _ => Request::from_parts(
            parts,
            body.map_err(|e| io::Error::other(e.to_string())).boxed(),
        ),
    }
}

/// Seals an answer's body for a privacy request (`full` when the whole body is at hand).
pub fn seal_response(
    session: &Session,
    resp: Response<ResBody>,
    full: Option<Bytes>,
) -> Response<ResBody> {
    let (mut parts, body) = resp.into_parts();
    let body = match full {
        Some(bytes) => {
            let sealed =
                dfs_common::privacy::seal_all(&session.key, Dir::Response, session.nonce, &bytes);
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(sealed.len()));
            crate::net::body::full(sealed)
        }
        None => {
            parts.headers.remove(CONTENT_LENGTH);
            sealing(
                body,
                Sealer::new(&session.key, Dir::Response, session.nonce),
            )
        }
    };
    Response::from_parts(parts, body)
}
