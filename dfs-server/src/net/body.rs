//! The bodies of requests and answers as every layer sees them (the edge, the handlers of
//! `crate::api`, the authentication's sealing, the cluster's peer client): the boxed body
//! types, whole and streaming bodies (fed by a bounded channel), and header parsing.
//!
//! Owns: byte-level HTTP details. Must not know about services, resources or POSIX rules
//! (answers and request decoding are `crate::api::wire`'s).

use bytes::Bytes;
use dfs_common::FsError;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderMap;
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
