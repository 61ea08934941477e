//! Harness helpers for the transaction tests: running `dfs tx ...` as a bounded child
//! process, the raw `/v1/tx` resources over HTTP (so a test can send a commit and kill the
//! server while it runs), and a snapshot of the whole namespace as the server holds it.
//!
//! Must not: depend on the server or client crates (wire contract only).

use crate::{
    bin, connect, dir_call, http_as, proof_headers, read_response, refresh_epoch, HttpResponse,
    SH_TIMEOUT,
};
use dfs_common::codec;
use dfs_common::proto::{DirReply, DirRequest};
use dfs_common::tx::{BeginReply, CommitReply, CommitRequest, Staged, TxId, TxOp, TxStatus};
use dfs_common::types::{FileKind, ROOT_INO};
use dfs_common::BlobId;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs `dfs ARGS` in `dir`, bounded by `SH_TIMEOUT` (the process group is killed after).
pub fn dfs_cmd(dir: &Path, args: &[&str]) -> Output {
    let mut script = String::from("exec ");
    script.push_str(&shell_quote(&bin("dfs").to_string_lossy()));
    for a in args {
        script.push(' ');
        script.push_str(&shell_quote(a));
    }
    crate::sh_timeout(dir, &script, SH_TIMEOUT)
}

/// `dfs ARGS` as a child with piped stdin/stdout/stderr (for tests that kill it).
pub fn dfs_child(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(bin("dfs"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dfs")
}

/// Single-quotes `s` for bash.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Stdout and stderr of a finished command, for messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout:\n{}\n--- stderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn decode_or_panic<T: serde::de::DeserializeOwned>(what: &str, r: &HttpResponse) -> T {
    assert_eq!(r.status, 200, "{what}: {}", r.describe());
    codec::decode(&r.body).unwrap_or_else(|e| panic!("{what}: undecodable answer: {e}"))
}

/// `POST /v1/tx/begin` as `client`.
pub fn tx_begin(addr: &str, client: u64) -> TxId {
    let r = http_as(addr, client, "POST", "/v1/tx/begin", &[], b"").expect("begin");
    decode_or_panic::<BeginReply>("begin", &r).tx
}

/// `PUT /v1/tx/{tx}/blobs` with `data`.
pub fn tx_stage(addr: &str, client: u64, tx: TxId, data: &[u8]) -> Option<BlobId> {
    let r = http_as(
        addr,
        client,
        "PUT",
        &format!("/v1/tx/{tx}/blobs"),
        &[],
        data,
    )
    .expect("stage");
    decode_or_panic::<Staged>("stage", &r).blob
}

/// The raw HTTP request of a commit (connection: close).
pub fn commit_request_bytes(addr: &str, client: u64, tx: TxId, ops: Vec<TxOp>) -> Vec<u8> {
    let body = codec::encode(&CommitRequest {
        ops,
        uid: 0,
        gid: 0,
        lock_wait_ms: 10_000,
    });
    let path = format!("/v1/tx/{tx}/commit");
    refresh_epoch(addr, client);
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in proof_headers(addr, client, "POST", &path) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(&body);
    req
}

/// Sends a commit and returns the open connection without reading the answer.
pub fn tx_commit_send(addr: &str, client: u64, tx: TxId, ops: Vec<TxOp>) -> TcpStream {
    let mut s = connect(addr, Duration::from_secs(60)).expect("connect");
    s.write_all(&commit_request_bytes(addr, client, tx, ops))
        .expect("send commit");
    s
}

/// Sends a commit and reads its answer.
pub fn tx_commit(addr: &str, client: u64, tx: TxId, ops: Vec<TxOp>) -> CommitReply {
    let mut s = tx_commit_send(addr, client, tx, ops);
    let r = read_response(&mut s).expect("commit answer");
    decode_or_panic("commit", &r)
}

/// `GET /v1/tx/{tx}` as `client`: the status, or the error response.
pub fn tx_status(addr: &str, client: u64, tx: TxId) -> Result<TxStatus, HttpResponse> {
    let r = http_as(addr, client, "GET", &format!("/v1/tx/{tx}"), &[], b"").expect("status");
    if r.status != 200 {
        return Err(r);
    }
    Ok(decode_or_panic("status", &r))
}

/// One entry of a namespace snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: FileKind,
    pub mode: u32,
    pub version: u64,
    pub size: u64,
    pub blob: Option<BlobId>,
}

/// Every path of the namespace (below the root) with what the server holds for it.
pub fn snapshot(addr: &str) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), ROOT_INO)];
    while let Some((prefix, dir)) = stack.pop() {
        let mut after = None;
        loop {
            let req = DirRequest::ReadDir {
                dir,
                after: after.take(),
                limit: 0,
            };
            let (entries, more) = match dir_call(addr, &req) {
                Ok(DirReply::Entries { entries, more }) => (entries, more),
                other => panic!("readdir of {prefix:?}: {other:?}"),
            };
            let last = entries.last().map(|(n, _)| n.clone());
            for (name, a) in entries {
                let path = format!("{prefix}/{}", String::from_utf8_lossy(&name));
                if a.kind == FileKind::Dir {
                    stack.push((path.clone(), a.ino));
                }
                out.insert(
                    path,
                    Node {
                        kind: a.kind,
                        mode: a.mode,
                        version: a.version,
                        size: a.size,
                        blob: a.blob,
                    },
                );
            }
            if !more || last.is_none() {
                break;
            }
            after = last;
        }
    }
    out
}

/// Where the server keeps blob `id` under its data dir.
pub fn blob_path(data_dir: &Path, id: &BlobId) -> std::path::PathBuf {
    let hex = id.to_hex();
    data_dir.join("blobs").join(&hex[..2]).join(hex)
}
