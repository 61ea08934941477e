//! The handlers' one way to decode requests and encode answers: size-limited request
//! bodies (checked against their signed hash), bincode bodies in and out, the answers for
//! a missing resource and a wrong method, and the ONE function that turns an `FsError`
//! into a status, an error code and a detail.
//!
//! Owns: the answer and request-body conventions of `/v1`. Must not know about services
//! or POSIX rules.

pub use crate::net::body::{channel, empty, full, header, header_u64, ReqBody, ResBody};
use bytes::{Bytes, BytesMut};
use dfs_common::proto::{HDR_DETAIL, HDR_ERROR, HDR_SHA256};
use dfs_common::{codec, BlobId, FsError};
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What every handler returns; the router turns an `Err` into `error_response`.
pub type Answer = Result<Response<ResBody>, FsError>;

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

/// Reads a whole request body of at most `limit` bytes. A declared `content-length` over
/// the limit is refused before reading anything; the count is checked while reading too.
pub async fn read_limited(
    mut body: ReqBody,
    headers: &hyper::HeaderMap,
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

/// Reads a whole request body of at most `limit` bytes and decodes its bincode.
pub async fn decode_body<T: DeserializeOwned>(
    req: hyper::Request<ReqBody>,
    limit: usize,
) -> Result<T, FsError> {
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, &parts.headers, limit).await?;
    codec::decode(&bytes)
}

/// The answer for a path that names no resource.
pub fn not_found(path: &str) -> Response<ResBody> {
    let mut r = error_response(&FsError::NotFound);
    let msg = format!("no such resource: {path}");
    if let Ok(v) = HeaderValue::from_str(&msg) {
        r.headers_mut().insert(HDR_DETAIL, v);
    }
    let text = format!("{msg}\n");
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
    *r.body_mut() = full(text);
    r
}

/// The answer for a resource asked with a method it does not take; `allow` lists those
/// it does.
pub fn method_not_allowed(method: &Method, path: &str, allow: &'static str) -> Response<ResBody> {
    let err = FsError::NotSupported(format!("method {method} not allowed on {path}"));
    let mut r = error_response(&err);
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// The contents' hash a client sent with a body (`HDR_SHA256`), if any.
pub fn content_hash(headers: &hyper::HeaderMap) -> Result<Option<BlobId>, FsError> {
    match header(headers, HDR_SHA256)? {
        None => Ok(None),
        Some(hex) => BlobId::from_hex(hex)
            .map(Some)
            .ok_or_else(|| FsError::BadRequest(format!("{HDR_SHA256} is not 64 hex digits"))),
    }
}
