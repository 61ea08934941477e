//! The file service: what a whole-file fetch answers (the attributes, and where the
//! contents come from: this node's checked copy or, in a cluster, other nodes), a store
//! (the new contents received, placed and committed), and setattr, whose size change
//! writes a new blob. The resources themselves (`GET`/`PUT /v1/files/{ino}`) are
//! `crate::api::files`'s.
//!
//! Owns: the order of a store (blob fsynced and installed, fencing checked again, then one
//! metadata commit, then breaks) and the source of a fetch's contents. Must not touch
//! blob files directly (blobs), decide POSIX rules (namespace) or permissions
//! (`auth::perm`, checked by the handler before), nor know HTTP beyond body types.

use crate::auth::Caller;
use crate::blobs::journal::JOURNAL_MAX;
use crate::blobs::{BlobStore, BodyLen};
use crate::cluster::Replication;
use crate::coherence::Coherence;
use crate::lock::LockService;
use crate::namespace::{Contents, NsCommand};
use crate::net::body::{self as wire, ReqBody, ResBody};
use dfs_common::proto::AttrChange;
use dfs_common::types::SetTime;
use dfs_common::{Attr, BlobId, FileKind, FsError, Ino, Timestamp};
use std::sync::Arc;

/// What the file service works on (`crate::services::Services::files`).
pub struct Files<'a> {
    pub coherence: &'a Arc<Coherence>,
    pub locks: &'a LockService,
    pub replication: Replication,
    pub max_file_size: u64,
}

/// How often setattr retries a resize that raced with a store.
const RESIZE_TRIES: usize = 5;

pub fn regular(attr: &Attr) -> Result<(), FsError> {
    match attr.kind {
        FileKind::File => Ok(()),
        FileKind::Dir => Err(FsError::IsDir),
        _ => Err(FsError::Invalid("not a regular file".into())),
    }
}

/// What a fetch answers.
pub enum Fetched {
    /// The caller's copy (of the version it has) is current.
    NotModified(Attr),
    Data(Attr),
}

/// Blobs up to this size are read whole and checked before the answer starts, so a bad
/// local copy is replaced from a replica without the client noticing.
const CHECK_BEFORE_SERVING: u64 = 1 << 20;
/// Blobs up to this size are read and checked on the async thread that serves the fetch.
const READ_NOW: u64 = 128 << 10;

/// A store's request, as its headers gave it.
pub struct Store {
    pub len: BodyLen,
    /// The contents' hash, if the client sent it (checked while receiving).
    pub expected: Option<BlobId>,
    pub mtime: Option<Timestamp>,
    /// A chmod (no set-id bits) that comes with the store, already authorized.
    pub mode: Option<u32>,
    /// Clear the set-id bits (the writer lacks CAP_FSETID, or the cell says so).
    pub kill_suid: bool,
    /// The writers' lock token the client holds, if any (fencing).
    pub fence: Option<u64>,
}

impl Files<'_> {
    /// The attributes of `ino` for a fetch by `caller` (who gets a promise on it), or that
    /// its copy of version `have` is current.
    pub async fn fetched(
        &self,
        caller: Caller,
        ino: Ino,
        have: Option<u64>,
    ) -> Result<Fetched, FsError> {
        self.coherence
            .observe_now(caller, move |ns| {
                let attr = ns.getattr(ino)?;
                regular(&attr)?;
                if have == Some(attr.version) {
                    return Ok((Fetched::NotModified(attr), vec![ino]));
                }
                Ok((Fetched::Data(attr), vec![ino]))
            })
            .await
    }

    /// The contents of blob `id`, checked against its hash: from the local copy; when it is
    /// missing or bad, from the nodes placement puts it on (by the client itself if it can,
    /// else pulled here first, which also repairs a copy this node should have). A large
    /// copy is checked as it streams: if it turns out bad, the stream fails before its last
    /// chunk, the copy is dropped, and the client's retry gets a good one.
    pub async fn contents(
        &self,
        id: BlobId,
        size: u64,
        replica_ok: bool,
    ) -> Result<Source, FsError> {
        let mut repaired = false;
        loop {
            // Pinned while it is read: the garbage collector empties and reuses the files of
            // blobs it deletes (spares), so one must not be collected under a reader, even if
            // the file is overwritten and its grace runs out before a slow reader is done.
            let pin = self.replication.blobs.pin(id);
            // A bad copy is dropped only if nothing replaced it since it was read.
            let read_at = crate::cluster::key::now_ms();
            let read = if size <= READ_NOW {
                // Read and checked right here: a hop to the blocking pool costs more.
                self.replication
                    .blobs
                    .read_verified(&id, size)
                    .map(Local::Checked)
            } else {
                self.coherence
                    .blocking(move |_, blobs| {
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
                    let blobs = self
                        .replication
                        .cluster
                        .is_clustered()
                        .then(|| self.replication.blobs.clone());
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
                Err(FsError::Corrupt(why))
                    if !repaired && self.replication.cluster.is_clustered() =>
                {
                    drop(pin);
                    self.coherence
                        .blocking(move |_, blobs| Ok(blobs.remove_if_older(&id, read_at)?))
                        .await?;
                    let cluster = &self.replication.cluster;
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
                    crate::cluster::replicate::ensure_local(&self.replication, id).await?;
                    repaired = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stores `body` (as `how` describes it) as the new contents of `ino` for `caller`, who
    /// may write it. Returns the new attributes.
    pub async fn store(
        &self,
        caller: Caller,
        ino: Ino,
        body: ReqBody,
        how: Store,
    ) -> Result<Attr, FsError> {
        let Store {
            len,
            expected,
            mtime,
            mode,
            kill_suid,
            fence,
        } = how;
        // Refuse before reading a byte when the target cannot take contents.
        let current = self.coherence.ns.getattr(ino)?;
        regular(&current)?;
        // Fencing: a writer whose lock lapsed (or anyone, while another client holds the
        // writers' lock) must not store. Checked here, and again right before the commit.
        self.locks.check_store(caller.client, ino, fence).await?;

        // Small contents on a node on its own are kept in memory and journalled with the
        // commit, so the store costs one fsync (see `blobs::journal`).
        let temp = match len {
            BodyLen::Exactly(n)
                if n > 0 && n <= JOURNAL_MAX && !self.replication.cluster.is_clustered() =>
            {
                self.replication
                    .blobs
                    .receive_small(body, n, expected)
                    .await?
            }
            len => self.replication.blobs.receive(body, len, expected).await?,
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
            let pin = crate::cluster::replicate::place(&self.replication, temp).await?;
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
        if let Err(e) = self.locks.check_store(caller.client, ino, fence).await {
            if let Some(pin) = pin {
                self.coherence
                    .blocking(move |ns, blobs| {
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
            (Some(pin), Some(journal)) => {
                self.coherence
                    .mutate_journalled(caller, cmd, pin, journal)
                    .await?
            }
            (pin, _) => self.coherence.mutate(caller, cmd, Vec::new(), pin).await?,
        };
        let attr = out
            .attr
            .ok_or_else(|| FsError::Io("store returned no attributes".into()))?;
        crate::metrics::BLOB_BYTES_IN.add(attr.size);
        Ok(attr)
    }

    /// `DirRequest::SetAttr`. A size change writes a truncated or zero-extended copy of the
    /// contents as a new blob and commits it like a store (retrying if a store raced it).
    pub async fn setattr(
        &self,
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
        let kill_suid =
            size.is_some() && (kill_suid || crate::auth::perm::writes_clear_setid(&caller));
        let mut tries = 0;
        loop {
            tries += 1;
            let mut contents = None;
            let mut pin = None;
            if let Some(size) = size {
                if size > self.max_file_size {
                    return Err(FsError::TooLarge(format!(
                        "{size} bytes, largest file is {} bytes",
                        self.max_file_size
                    )));
                }
                let cur = self
                    .coherence
                    .blocking(move |ns, _| ns.getattr(ino))
                    .await?;
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
                            crate::cluster::replicate::ensure_local(&self.replication, old).await?;
                        }
                        let temp = self
                            .coherence
                            .blocking(move |_, blobs| {
                                blobs.resized(cur.blob.as_ref(), cur.size, size)
                            })
                            .await?;
                        let p = crate::cluster::replicate::place(&self.replication, temp).await?;
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
                self.coherence
                    .mutate_unsynced(caller, cmd, Vec::new())
                    .await
                    .map(|(out, _)| out)
            } else {
                self.coherence.mutate(caller, cmd, Vec::new(), pin).await
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
}

/// Where the contents of a fetch come from.
pub enum Source {
    /// This node's checked copy.
    Here(ResBody),
    /// Other nodes hold the blob and this one is not meant to: the client reads it from
    /// them (comma-separated addresses, best first) with a read token.
    Elsewhere { nodes: String, token: String },
}

/// How long a read token lets a client read a blob from other nodes.
const READ_TOKEN_MS: u64 = 60_000;

enum Local {
    Checked(bytes::Bytes),
    File(std::fs::File),
}

fn resolve(t: Option<SetTime>, now: Timestamp) -> Option<Timestamp> {
    t.map(|t| match t {
        SetTime::Now => now,
        SetTime::At(t) => t,
    })
}
