//! HTTP plumbing shared by the handlers: the response body type, streaming bodies fed by
//! a channel, size-limited request bodies, header parsing, bincode answers, and the ONE
//! function that turns an `FsError` into a response.
//!
//! Owns: byte-level HTTP details. Must not know about services or POSIX rules.

use bytes::{Bytes, BytesMut};
use dfs_common::proto::{HDR_DETAIL, HDR_ERROR};
use dfs_common::{codec, FsError};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Every request body as the handlers see it (plain, after `crate::auth::privacy`).
pub type ReqBody = BoxBody<Bytes, io::Error>;

/// Every response body.
pub type ResBody = BoxBody<Bytes, io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> ResBody {
    Full::new(bytes.into()).map_err(|n| match n {}).boxed()
}

pub fn empty() -> ResBody {
    Empty::new().map_err(|n| match n {}).boxed()
}

/// A body whose chunks come from a channel (bounded, so memory stays bounded).
pub struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    len: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A streaming body of exactly `len` bytes (or of unknown length if `None`).
pub fn channel(rx: mpsc::Receiver<io::Result<Bytes>>, len: Option<u64>) -> ResBody {
    ChannelBody { rx, len }.boxed()
}

/// A `200` with the bincode of `value`.
pub fn bincode_response<T: Serialize>(value: &T) -> Response<ResBody> {
    bytes_response(codec::encode(value))
}

/// A 200 answer carrying `bytes` already encoded.
pub fn bytes_response(bytes: Vec<u8>) -> Response<ResBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, bytes.len())
        .body(full(bytes))
        .expect("valid response")
}

/// Only visible ASCII survives in a header.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(1024)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// THE error answer: status `err.http_status()`, headers `x-dfs-error` (code) and
/// `x-dfs-detail` (detail), text body `"{err}\n"`.
pub fn error_response(err: &FsError) -> Response<ResBody> {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = format!("{err}\n");
    let detail = HeaderValue::from_str(&sanitize(&err.detail()))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    Response::builder()
        .status(status)
        .header(HDR_ERROR, err.code())
        .header(HDR_DETAIL, detail)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CONTENT_LENGTH, text.len())
        .body(full(text))
        .expect("valid response")
}

/// A header as text, if present.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, FsError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| FsError::BadRequest(format!("header {name} is not text"))),
    }
}

/// A header holding a decimal u64, if present.
pub fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, FsError> {
    match header(headers, name)? {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| FsError::BadRequest(format!("header {name} is not a number: {s:?}"))),
    }
}

/// Reads a whole request body of at most `limit` bytes. A declared `content-length` over
/// the limit is refused before reading anything; the count is checked while reading too.
pub async fn read_limited(
    mut body: ReqBody,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, FsError> {
    let too_large = |n: u64| FsError::TooLarge(format!("body of {n} bytes, limit {limit}"));
    if let Some(n) = header_u64(headers, CONTENT_LENGTH.as_str())? {
        if n > limit as u64 {
            return Err(too_large(n));
        }
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FsError::BadRequest(format!("request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large((buf.len() + data.len()) as u64));
            }
            buf.extend_from_slice(&data);
        }
    }
    // An authenticated request's MAC covers this hash (see `crate::auth`).
    if let Some(want) = header(headers, dfs_common::auth::HDR_BODY_SHA256)? {
        if codec::to_hex(&dfs_common::auth::sha256(&buf)) != want.to_ascii_lowercase() {
            return Err(FsError::Unauthenticated(
                "request body does not match its signed hash (tampered?)".into(),
            ));
        }
    }
    Ok(buf.freeze())
}
