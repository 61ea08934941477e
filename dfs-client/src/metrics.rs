//! The client library's counts, for whoever exposes them (the mount's `/metrics`, see
//! `dfs_fuse::metrics`): cache answers (hit, revalidated, miss) by kind, file bytes
//! fetched and stored, requests sent to the server by method with their latency and
//! those that reached no answer, and the callback channel's connects, losses and breaks.
//! Every update is a relaxed atomic add (`dfs_common::metrics`).
//!
//! Owns: the statics. Must not decide anything or serve them.

use dfs_common::metrics::{Counter, Counters, Grid, Latencies};
use std::sync::LazyLock;

/// What the cache answered from itself (`hit`), after asking the server whether its copy
/// is current (`revalidated`), or by fetching (`miss`).
pub const CACHE_RESULTS: &[&str] = &["hit", "revalidated", "miss"];
pub const CACHE_KINDS: &[&str] = &["open", "lookup", "getattr"];
pub const HIT: usize = 0;
pub const REVALIDATED: usize = 1;
pub const MISS: usize = 2;
pub const KIND_OPEN: usize = 0;
pub const KIND_LOOKUP: usize = 1;
pub const KIND_GETATTR: usize = 2;

pub static CACHE: LazyLock<Grid> =
    LazyLock::new(|| Grid::new(("kind", "result"), CACHE_KINDS, CACHE_RESULTS));
/// File contents received from and sent to the servers (bodies, before sealing).
pub static BYTES_FETCHED: Counter = Counter::new();
pub static BYTES_STORED: Counter = Counter::new();
/// Requests sent to the server, by method, and their latency to the answer's head.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "other"];
pub static SERVER_REQUESTS: LazyLock<Counters> = LazyLock::new(|| Counters::new("method", METHODS));
pub static SERVER_LATENCY: LazyLock<Latencies> =
    LazyLock::new(|| Latencies::new("method", METHODS));
pub static SERVER_ERRORS: Counter = Counter::new();
/// Times the callback channel was (re)connected and lost.
pub static CHANNEL_CONNECTS: Counter = Counter::new();
pub static CHANNEL_LOSSES: Counter = Counter::new();
pub static BREAKS_RECEIVED: Counter = Counter::new();

pub fn method_index(m: &hyper::Method) -> usize {
    match *m {
        hyper::Method::GET => 0,
        hyper::Method::POST => 1,
        hyper::Method::PUT => 2,
        _ => 3,
    }
}
