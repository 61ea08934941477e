//! The `/v1/cluster/` resources a node serves: its status (to anyone), and to the other
//! nodes only (cluster-key MAC): its digests and listings, pull and delete orders, and
//! its blob copies (read, verified on the way; write, fsynced before the answer).
//!
//! Owns: request checks and answer signing for these resources. Must not: decide what to
//! copy or delete (the orders come from `repair`; this only carries them out, with the
//! age guard of `BlobStore::remove_if_older`).

use super::wire::{self, ReqBody, ResBody};
use crate::blobs::BlobStore;
use crate::cluster::key::{now_ms, ClusterKey, MAX_SKEW_MS, STREAMED};
use crate::cluster::{local, Cluster};
use crate::services::Services;
use bytes::Bytes;
use dfs_common::cluster::{self as proto, DeleteOrder, ListingRequest, PullOrder, HDR_NODE_MAC};
use dfs_common::privacy::{Dir, Opener, Sealer, HDR_PLAIN_LENGTH};
use dfs_common::sealed_body::{opening, sealing};
use dfs_common::{codec, BlobId, FsError};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

/// Largest control request body (orders go in batches of 10,000 blobs, about 1 MiB).
const ORDER_LIMIT: usize = 8 << 20;

/// The sender named in the headers is a member this node knows (or, for `admin`
/// resources, any holder of the cluster key: `dfs-server admin` on a server host) and its
/// clock is within the skew window (the MAC is checked once the body is read).
fn plausible_sender(
    cluster: &Cluster,
    headers: &hyper::HeaderMap,
    admin: bool,
) -> Result<(), FsError> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| FsError::Unauthenticated(format!("no {name} header")))
    };
    let node = get(proto::HDR_NODE)?;
    let sent: u64 = get(proto::HDR_NODE_TIME)?
        .parse()
        .map_err(|_| FsError::Unauthenticated("bad node time".into()))?;
    if now_ms().abs_diff(sent) > MAX_SKEW_MS {
        return Err(FsError::Unauthenticated(format!(
            "{node}: clock too far off"
        )));
    }
    if !admin && !cluster.members().iter().any(|m| m.addr.to_string() == node) {
        return Err(FsError::Unauthenticated(format!("{node} is not a member")));
    }
    Ok(())
}

/// Serves one `/v1/cluster/...` request. Unlike the other areas' `handle` it takes no
/// `Call` and answers every error itself: node-to-node requests have their own
/// authentication (the cluster key), and even a refusal carries the answer's MAC.
pub async fn handle(svc: &Arc<Services>, req: Request<ReqBody>) -> Response<ResBody> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let rest = &path[proto::PREFIX.len()..];
    if rest == "status" {
        return match method {
            Method::GET => {
                let mut status = svc.cluster().status();
                status.directory = svc
                    .coherence
                    .replica()
                    .map(|r| crate::raft::node::status(r));
                wire::bincode_response(&status)
            }
            _ => wire::error_response(&FsError::NotSupported(format!(
                "method {method} not allowed on {path}"
            ))),
        };
    }
    let cluster = svc.cluster().clone();
    let Some(key) = cluster.settings.key.clone() else {
        return wire::error_response(&FsError::NotFound);
    };
    if let Some(hex) = path.strip_prefix(proto::READ_PREFIX) {
        return read_with_token(svc, &key, &method, hex, req.uri().query()).await;
    }
    // Cheap checks before reading any body: a sender that is a member, a fresh time.
    let admin = rest == proto::DIRECTORY_MEMBERS;
    if let Err(e) = plausible_sender(&cluster, req.headers(), admin) {
        log::info!("{method} {path}: {e}");
        return wire::error_response(&e);
    }
    let (parts, body) = req.into_parts();
    // Blob bodies are covered by their name; every other body by the MAC.
    let streamed = method == Method::PUT && rest.starts_with("blobs/");
    let (body_bytes, body_sha, mut blob_body) = if streamed {
        (Bytes::new(), STREAMED, Some(body))
    } else {
        match wire::read_limited(body, &parts.headers, ORDER_LIMIT).await {
            Ok(b) => {
                let sha = dfs_common::auth::sha256(&b);
                (b, sha, None)
            }
            Err(e) => return wire::error_response(&e),
        }
    };
    let (node, request_mac) = match key.verify_request(
        method.as_str(),
        &format!("{}{path}", cluster.me),
        &parts.headers,
        &body_sha,
    ) {
        Ok(v) => v,
        Err(e) => {
            log::warn!("{method} {path}: {e}");
            return wire::error_response(&e);
        }
    };
    // Blob bodies travel sealed both ways, with the request's (signed) time as nonce.
    let nonce = wire::header_u64(&parts.headers, proto::HDR_NODE_TIME)
        .ok()
        .flatten()
        .unwrap_or(0);
    let seal_key = key.seal_key();
    let orders = matches!(rest, "pull" | "delete");
    if orders && !cluster.is_the_directory(&node) {
        let e = FsError::PermissionDenied(format!(
            "{node} is not the cluster's one directory node; orders come only from it"
        ));
        log::warn!("{method} {path}: {e}");
        return sign_answer(&key, &request_mac, &mut wire::error_response(&e)).await;
    }
    let result = match (&method, rest) {
        (&Method::GET, "digests") => local::off_thread(&svc.replication(), local::digests)
            .await
            .map(|d| wire::bincode_response(&d)),
        (&Method::POST, "listing") => listing(svc, &body_bytes).await,
        (&Method::POST, "pull") => pull_order(svc, &body_bytes),
        (&Method::POST, "delete") => delete_order(svc, &node, &body_bytes).await,
        (&Method::POST, proto::DIRECTORY_MEMBERS) => members(svc, &body_bytes).await,
        (&Method::POST, r) if r.starts_with("raft/") => {
            raft_call(svc, &r["raft/".len()..], &body_bytes).await
        }
        (m, r) if r.starts_with("blobs/") => match BlobId::from_hex(&r["blobs/".len()..]) {
            None => Err(FsError::NotFound),
            Some(id) if *m == Method::GET => serve_blob(svc, id)
                .await
                .map(|r| r.map(|b| sealing(b, Sealer::new(&seal_key, Dir::Response, nonce)))),
            Some(id) if *m == Method::PUT => match blob_body.take() {
                Some(body) => {
                    let opened = opening(body, Opener::new(&seal_key, Dir::Request, nonce));
                    receive_blob(svc, id, &parts.headers, opened).await
                }
                None => Err(FsError::BadRequest("no body".into())),
            },
            Some(_) => Err(FsError::NotSupported(format!("method {m} on {path}"))),
        },
        _ => Err(FsError::NotFound),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => wire::error_response(&e),
    };
    sign_answer(&key, &request_mac, &mut resp).await
}

/// Answers a call of the directory's Raft from another replica.
/// This node's replica of the directory, for the resources only a replica serves.
fn replica_of(svc: &Services) -> Result<&std::sync::Arc<crate::raft::Replica>, FsError> {
    svc.coherence
        .replica()
        .ok_or_else(|| FsError::NotSupported("this node holds no replica of the directory".into()))
}

/// Changes or shows the directory's voters (`dfs-server admin`).
async fn members(svc: &Services, body: &[u8]) -> Result<Response<ResBody>, FsError> {
    let change: proto::MembershipChange = codec::decode(body)?;
    let replica = replica_of(svc)?;
    let status = crate::raft::node::change_members(replica, change).await?;
    Ok(wire::bincode_response(&status))
}

async fn raft_call(svc: &Services, call: &str, body: &[u8]) -> Result<Response<ResBody>, FsError> {
    let call = crate::raft::network::Call::from_name(call).ok_or(FsError::NotFound)?;
    let replica = replica_of(svc)?;
    let answer = crate::raft::network::serve(&replica.raft, call, body).await?;
    Ok(wire::bytes_response(answer))
}

/// Adds the answer MAC. Bincode and error bodies are small and read whole to hash them;
/// a streamed blob body is covered by its name instead.
async fn sign_answer(
    key: &ClusterKey,
    request_mac: &[u8],
    resp: &mut Response<ResBody>,
) -> Response<ResBody> {
    let status = resp.status().as_u16();
    let streamed =
        resp.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()) == Some(b"application/x-dfs-blob");
    let mut out = std::mem::replace(resp, Response::new(wire::empty()));
    let sha = if streamed {
        STREAMED
    } else {
        use http_body_util::BodyExt;
        let body = std::mem::replace(out.body_mut(), wire::empty());
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let sha = dfs_common::auth::sha256(&bytes);
        out.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        *out.body_mut() = wire::full(bytes);
        sha
    };
    let mac = key.answer_mac(request_mac, status, &sha);
    if let Ok(v) = HeaderValue::from_str(&mac) {
        out.headers_mut().insert(HDR_NODE_MAC, v);
    }
    out
}

async fn listing(svc: &Arc<Services>, body: &[u8]) -> Result<Response<ResBody>, FsError> {
    let req: ListingRequest = codec::decode(body)?;
    let listing =
        local::off_thread(&svc.replication(), move |r| local::listing(r, &req.buckets)).await?;
    Ok(wire::bincode_response(&listing))
}

fn pull_order(svc: &Arc<Services>, body: &[u8]) -> Result<Response<ResBody>, FsError> {
    let order: PullOrder = codec::decode(body)?;
    let mut queued = 0u64;
    for (id, sources) in order.blobs {
        let sources = sources.iter().filter_map(|s| s.parse().ok()).collect();
        if svc.cluster().pulls.push(id, sources) {
            queued += 1;
        }
    }
    Ok(wire::bincode_response(&queued))
}

async fn delete_order(
    svc: &Arc<Services>,
    from: &str,
    body: &[u8],
) -> Result<Response<ResBody>, FsError> {
    let order: DeleteOrder = codec::decode(body)?;
    let deleted = local::off_thread(&svc.replication(), move |r| local::delete(r, &order)).await?;
    if deleted > 0 {
        log::info!("deleted {deleted} blob copies on the order of {from}");
    }
    Ok(wire::bincode_response(&deleted))
}

/// A client reading a blob with the directory's read token.
async fn read_with_token(
    svc: &Arc<Services>,
    key: &ClusterKey,
    method: &Method,
    hex: &str,
    query: Option<&str>,
) -> Response<ResBody> {
    let result = async {
        if *method != Method::GET {
            return Err(FsError::NotSupported(format!("method {method} on a blob")));
        }
        let id = BlobId::from_hex(hex).ok_or(FsError::NotFound)?;
        let token = query
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .ok_or_else(|| FsError::PermissionDenied("no read token".into()))?;
        key.check_read_token(&id, token)?;
        serve_blob(svc, id).await
    }
    .await;
    result.unwrap_or_else(|e| wire::error_response(&e))
}

/// Streams this node's copy of `id`, checked against its hash on the way (a bad copy is
/// dropped and the stream fails before its end).
async fn serve_blob(svc: &Arc<Services>, id: BlobId) -> Result<Response<ResBody>, FsError> {
    let size = svc
        .blobs
        .index()
        .get(&id)
        .map(|h| h.size)
        .ok_or(FsError::NotFound)?;
    // Pinned until the stream ends: a collected blob's file is emptied and reused.
    let pin = svc.blobs.pin(id);
    let blobs = svc.blobs.clone();
    let file = tokio::task::spawn_blocking(move || blobs.open_blob(&id, size))
        .await
        .map_err(|e| FsError::Io(e.to_string()))?
        .map_err(|e| match e {
            FsError::Corrupt(_) => FsError::NotFound,
            e => e,
        })?;
    let (blobs, read_at) = (svc.blobs.clone(), now_ms());
    // The stream's task owns this closure, and so the pin, until it ends.
    let on_bad = move || {
        drop(pin);
        let _ = blobs.remove_if_older(&id, read_at);
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/x-dfs-blob")
        .header(HDR_PLAIN_LENGTH, size)
        .body(wire::channel(
            BlobStore::read_stream_verified(file, size, id, on_bad),
            Some(size),
        ))
        .expect("valid response"))
}

async fn receive_blob(
    svc: &Arc<Services>,
    id: BlobId,
    headers: &hyper::HeaderMap,
    body: ReqBody,
) -> Result<Response<ResBody>, FsError> {
    let len = wire::header_u64(headers, HDR_PLAIN_LENGTH)?
        .ok_or_else(|| FsError::BadRequest(format!("a blob needs {HDR_PLAIN_LENGTH}")))?;
    if len > svc.settings.max_file_size {
        return Err(FsError::TooLarge(format!("{len} bytes")));
    }
    // A sender that goes silent (a cut link) must not hold a temp file for ever.
    let body = crate::cluster::replicate::IdleBody::new(body);
    let temp = svc
        .blobs
        .receive(body, crate::blobs::BodyLen::Exactly(len), Some(id))
        .await?;
    let blobs = svc.blobs.clone();
    tokio::task::spawn_blocking(move || blobs.install(temp).map(drop))
        .await
        .map_err(|e| FsError::Io(e.to_string()))??;
    Ok(wire::bincode_response(&()))
}
