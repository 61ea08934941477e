//! The file service: whole-file fetch (`GET /v1/files/{ino}`) and store
//! (`PUT /v1/files/{ino}`), and setattr, whose size change writes a new blob.
//!
//! Owns: the order of a store (blob fsynced and installed, then one metadata commit, then
//! breaks) and the fetch answer (304 / 200 + streamed blob + `x-dfs-attr`). Must not
//! touch blob files directly (blobs) nor decide POSIX rules (namespace).

use crate::blobs::journal::JOURNAL_MAX;
use crate::blobs::{BlobStore, BodyLen};
use crate::http::wire::ReqBody;
use crate::http::wire::{self, ResBody};
use crate::namespace::{Contents, NsCommand};
use crate::services::{Caller, Services};
use dfs_common::cluster as cluster_proto;
use dfs_common::locks::HDR_FENCE;
use dfs_common::proto::{
    AttrChange, HDR_ATTR, HDR_HAVE_VERSION, HDR_KILL_SUID, HDR_MODE, HDR_MTIME, HDR_SHA256,
};
use dfs_common::types::SetTime;
use dfs_common::{codec, Attr, BlobId, FileKind, FsError, Ino, Timestamp};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// How often setattr retries a resize that raced with a store.
const RESIZE_TRIES: usize = 5;

fn regular(attr: &Attr) -> Result<(), FsError> {
    match attr.kind {
        FileKind::File => Ok(()),
        FileKind::Dir => Err(FsError::IsDir),
        _ => Err(FsError::Invalid("not a regular file".into())),
    }
}

enum Fetched {
    NotModified(Attr),
    Data(Attr),
}

/// Blobs up to this size are read whole and checked before the answer starts, so a bad
/// local copy is replaced from a replica without the client noticing.
const CHECK_BEFORE_SERVING: u64 = 1 << 20;
/// Blobs up to this size are read and checked on the async thread that serves the fetch.
const READ_NOW: u64 = 128 << 10;

/// `GET /v1/files/{ino}`.
pub async fn fetch(
    svc: &Arc<Services>,
    caller: Caller,
    ino: Ino,
    req: Request<ReqBody>,
) -> Result<Response<ResBody>, FsError> {
    let have = wire::header_u64(req.headers(), HDR_HAVE_VERSION)?;
    // At the privacy level contents come only in this node's sealed answer.
    let privacy = req
        .headers()
        .get(dfs_common::privacy::HDR_PROTECTION)
        .is_some();
    let replica_ok = req.headers().contains_key(cluster_proto::HDR_REPLICA_OK) && !privacy;
    drop(req);
    crate::auth::perm::authorize_file(svc, &caller, ino, false)?;
    let fetched = svc
        .observe_now(caller, move |ns| {
            let attr = ns.getattr(ino)?;
            regular(&attr)?;
            if have == Some(attr.version) {
                return Ok((Fetched::NotModified(attr), vec![ino]));
            }
            Ok((Fetched::Data(attr), vec![ino]))
        })
        .await?;
    let builder = Response::builder();
    let resp = match fetched {
        Fetched::NotModified(attr) => builder
            .status(StatusCode::NOT_MODIFIED)
            .header(HDR_ATTR, codec::to_header(&attr))
            .body(wire::empty()),
        Fetched::Data(attr) => {
            let body = match attr.blob {
                Some(id) if attr.size > 0 => {
                    match contents(svc, id, attr.size, replica_ok).await? {
                        Source::Here(body) => body,
                        Source::Elsewhere { nodes, token } => {
                            return Ok(builder
                                .status(StatusCode::SEE_OTHER)
                                .header(HDR_ATTR, codec::to_header(&attr))
                                .header(cluster_proto::HDR_REPLICAS, nodes)
                                .header(cluster_proto::HDR_READ_TOKEN, token)
                                .body(wire::empty())
                                .expect("valid response"))
                        }
                    }
                }
                _ => wire::empty(),
            };
            crate::metrics::BLOB_BYTES_OUT.add(attr.size);
            builder
                .status(StatusCode::OK)
                .header(HDR_ATTR, codec::to_header(&attr))
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, attr.size)
                .body(body)
        }
    };
    Ok(resp.expect("valid response"))
}

/// Where the contents of a fetch come from.
enum Source {
    /// This node's checked copy.
    Here(ResBody),
    /// Other nodes hold the blob and this one is not meant to: the client reads it from
    /// them (comma-separated addresses, best first) with a read token.
    Elsewhere { nodes: String, token: String },
}

/// How long a read token lets a client read a blob from other nodes.
const READ_TOKEN_MS: u64 = 60_000;

/// The contents of blob `id`, checked against its hash: from the local copy; when it is
/// missing or bad, from the nodes placement puts it on (by the client itself if it can,
/// else pulled here first, which also repairs a copy this node should have). A large
/// copy is checked as it streams: if it turns out bad, the stream fails before its last
/// chunk, the copy is dropped, and the client's retry gets a good one.
async fn contents(
    svc: &Arc<Services>,
    id: BlobId,
    size: u64,
    replica_ok: bool,
) -> Result<Source, FsError> {
    let mut repaired = false;
    loop {
        // Pinned while it is read: the garbage collector empties and reuses the files of
        // blobs it deletes (spares), so one must not be collected under a reader, even if
        // the file is overwritten and its grace runs out before a slow reader is done.
        let pin = svc.blobs.pin(id);
        // A bad copy is dropped only if nothing replaced it since it was read.
        let read_at = crate::cluster::key::now_ms();
        let read = if size <= READ_NOW {
            // Read and checked right here: a hop to the blocking pool costs more.
            svc.blobs.read_verified(&id, size).map(Local::Checked)
        } else {
            svc.blocking(move |_, blobs| {
                if size <= CHECK_BEFORE_SERVING {
                    blobs.read_verified(&id, size).map(Local::Checked)
                } else {
                    blobs.open_blob(&id, size).map(Local::File)
                }
            })
            .await
        };
        match read {
            Ok(Local::Checked(bytes)) => return Ok(Source::Here(wire::full(bytes))),
            Ok(Local::File(file)) => {
                // Alone, a bad copy is kept for inspection; in a cluster it is dropped
                // and copied again from a good one.
                let blobs = svc.cluster().is_clustered().then(|| svc.blobs.clone());
                // The stream's task owns this closure, and so the pin, until it ends.
                let on_bad = move || {
                    drop(pin);
                    if let Some(blobs) = blobs {
                        let _ = blobs.remove_if_older(&id, read_at);
                    }
                };
                return Ok(Source::Here(wire::channel(
                    BlobStore::read_stream_verified(file, size, id, on_bad),
                    Some(size),
                )));
            }
            Err(FsError::Corrupt(why)) if !repaired && svc.cluster().is_clustered() => {
                drop(pin);
                svc.blocking(move |_, blobs| Ok(blobs.remove_if_older(&id, read_at)?))
                    .await?;
                let cluster = svc.cluster();
                if let (true, Some(key)) = (replica_ok, &cluster.settings.key) {
                    let nodes = cluster.sources_for(&id);
                    if !nodes.is_empty() && !cluster.placed_here(&id) {
                        let nodes: Vec<String> = nodes.iter().map(|a| a.to_string()).collect();
                        let expires = crate::cluster::key::now_ms() + READ_TOKEN_MS;
                        return Ok(Source::Elsewhere {
                            nodes: nodes.join(","),
                            token: key.read_token(&id, expires),
                        });
                    }
                }
                log::info!("{why}; copying blob {id} here from another node");
                crate::cluster::replicate::ensure_local(svc, id).await?;
                repaired = true;
            }
            Err(e) => return Err(e),
        }
    }
}

enum Local {
    Checked(bytes::Bytes),
    File(std::fs::File),
}

/// `PUT /v1/files/{ino}`.
pub async fn store(
    svc: &Arc<Services>,
    caller: Caller,
    ino: Ino,
    req: Request<ReqBody>,
) -> Result<Response<ResBody>, FsError> {
    crate::auth::perm::authorize_file(svc, &caller, ino, true)?;
    let (parts, body) = req.into_parts();
    // Without a content-length, the body is a file sent while it was being written
    // (chunked): it may be as long as the largest file.
    let max = svc.settings.max_file_size;
    let len = match wire::header_u64(&parts.headers, CONTENT_LENGTH.as_str())? {
        Some(len) if len > max => {
            return Err(FsError::TooLarge(format!(
                "{len} bytes, largest file is {max} bytes"
            )));
        }
        Some(len) => BodyLen::Exactly(len),
        None => BodyLen::AtMost(max),
    };
    let expected = match wire::header(&parts.headers, HDR_SHA256)? {
        None => None,
        Some(hex) => Some(
            BlobId::from_hex(hex)
                .ok_or_else(|| FsError::BadRequest(format!("{HDR_SHA256} is not 64 hex digits")))?,
        ),
    };
    let mtime = match wire::header(&parts.headers, HDR_MTIME)? {
        None => None,
        Some(v) => Some(codec::from_header::<Timestamp>(v)?),
    };
    let mode = match wire::header_u64(&parts.headers, HDR_MODE)? {
        None => None,
        Some(m) if m <= 0o777 => {
            crate::auth::perm::authorize_store_chmod(svc, &caller, ino)?;
            Some(m as u32)
        }
        Some(m) => {
            return Err(FsError::BadRequest(format!(
                "{HDR_MODE} {m:o} has bits past 0o777"
            )))
        }
    };
    let kill_suid = match wire::header_u64(&parts.headers, HDR_KILL_SUID)? {
        None | Some(0) => false,
        Some(1) => true,
        Some(v) => {
            return Err(FsError::BadRequest(format!(
                "{HDR_KILL_SUID} is {v}, not 0 or 1"
            )))
        }
    } || crate::auth::perm::writes_clear_setid(&caller);
    // Refuse before reading a byte when the target cannot take contents.
    let current = svc.read_now(|ns| ns.getattr(ino))?;
    regular(&current)?;
    // Fencing: a writer whose lock lapsed (or anyone, while another client holds the
    // writers' lock) must not store. Checked here, and again right before the commit.
    let fence = wire::header_u64(&parts.headers, HDR_FENCE)?;
    svc.locks.check_store(caller.client, ino, fence).await?;

    // Small contents on a node on its own are kept in memory and journalled with the
    // commit, so the store costs one fsync (see `blobs::journal`).
    let temp = match len {
        BodyLen::Exactly(n) if n > 0 && n <= JOURNAL_MAX && !svc.cluster().is_clustered() => {
            svc.blobs.receive_small(body, n, expected).await?
        }
        len => svc.blobs.receive(body, len, expected).await?,
    };
    let journal = temp.journal_bytes();
    let (contents, pin) = if temp.size == 0 {
        drop(temp);
        (
            Contents {
                blob: None,
                size: 0,
                base_version: None,
            },
            None,
        )
    } else {
        let size = temp.size;
        let pin = crate::cluster::replicate::place(svc, temp).await?;
        let blob = Some(pin.id);
        (
            Contents {
                blob,
                size,
                base_version: None,
            },
            Some(pin),
        )
    };
    if let Err(e) = svc.locks.check_store(caller.client, ino, fence).await {
        if let Some(pin) = pin {
            svc.blocking(move |ns, blobs| {
                blobs.discard_unreferenced(pin, |id| ns.refcount(id));
                Ok(())
            })
            .await?;
        }
        return Err(e);
    }
    let cmd = NsCommand::CommitBlob {
        ino,
        contents,
        mtime,
        mode,
        kill_suid,
        now: Timestamp::now(),
    };
    let out = match (pin, journal) {
        (Some(pin), Some(journal)) => svc.mutate_journalled(caller, cmd, pin, journal).await?,
        (pin, _) => svc.mutate(caller, cmd, Vec::new(), pin).await?,
    };
    let mut attr = out
        .attr
        .ok_or_else(|| FsError::Io("store returned no attributes".into()))?;
    crate::metrics::BLOB_BYTES_IN.add(attr.size);
    // A writer who may not read the file is not told its contents' hash.
    svc.read_now(|ns| crate::auth::perm::hide_hashes(ns, &caller, vec![&mut attr]))?;
    Ok(wire::bincode_response(&attr))
}

fn resolve(t: Option<SetTime>, now: Timestamp) -> Option<Timestamp> {
    t.map(|t| match t {
        SetTime::Now => now,
        SetTime::At(t) => t,
    })
}

/// `DirRequest::SetAttr`. A size change writes a truncated or zero-extended copy of the
/// contents as a new blob and commits it like a store (retrying if a store raced it).
pub async fn setattr(
    svc: &Arc<Services>,
    caller: Caller,
    ino: Ino,
    change: AttrChange,
) -> Result<Attr, FsError> {
    let AttrChange {
        mode,
        uid,
        gid,
        size,
        atime,
        mtime,
        defer_sync,
        kill_suid,
    } = change;
    // A truncate clears set-id bits like a write: when the writer asks (it lacks
    // CAP_FSETID), and in a realm whenever the caller is not an admin.
    let kill_suid = size.is_some() && (kill_suid || crate::auth::perm::writes_clear_setid(&caller));
    let mut tries = 0;
    loop {
        tries += 1;
        let mut contents = None;
        let mut pin = None;
        if let Some(size) = size {
            if size > svc.settings.max_file_size {
                return Err(FsError::TooLarge(format!(
                    "{size} bytes, largest file is {} bytes",
                    svc.settings.max_file_size
                )));
            }
            let cur = svc.blocking(move |ns, _| ns.getattr(ino)).await?;
            regular(&cur)?;
            if size != cur.size {
                if size == 0 {
                    contents = Some(Contents {
                        blob: None,
                        size: 0,
                        base_version: Some(cur.version),
                    });
                } else {
                    if let Some(old) = cur.blob {
                        crate::cluster::replicate::ensure_local(svc, old).await?;
                    }
                    let temp = svc
                        .blocking(move |_, blobs| blobs.resized(cur.blob.as_ref(), cur.size, size))
                        .await?;
                    let p = crate::cluster::replicate::place(svc, temp).await?;
                    contents = Some(Contents {
                        blob: Some(p.id),
                        size,
                        base_version: Some(cur.version),
                    });
                    pin = Some(p);
                }
            }
        }
        let now = Timestamp::now();
        let cmd = NsCommand::SetAttr {
            ino,
            mode,
            uid,
            gid,
            atime: resolve(atime, now),
            mtime: resolve(mtime, now),
            contents,
            kill_suid,
            now,
        };
        let done = if defer_sync && size.is_none() {
            svc.mutate_unsynced(caller, cmd, Vec::new())
                .await
                .map(|(out, _)| out)
        } else {
            svc.mutate(caller, cmd, Vec::new(), pin).await
        };
        match done {
            Ok(out) => {
                return out
                    .attr
                    .ok_or_else(|| FsError::Io("setattr returned no attributes".into()))
            }
            Err(FsError::Busy(_)) if tries < RESIZE_TRIES => continue,
            Err(e) => return Err(e),
        }
    }
}
