//! Write-behind: a file written from its start and in order (`dd`, `cp`, a linker's
//! output) is sent to the server while it is being written, so that its store at fsync
//! or close waits for the tail only, not for the whole file.
//!
//! Such an open is answered plain (every write comes through `CacheManager::write`), so
//! this module sees each write. Once the copy holds `START_AT` bytes written in order, an
//! upload starts: a store whose body reads the copy as far as it is written and waits for
//! more. The store of the file then ends that body at the copy's size and takes the
//! server's answer as its own.
//!
//! Owns: the per-inode record of how far the copy is written in order, and the upload
//! that follows it. Must not: let a store acknowledge bytes other than the copy's at that
//! moment. Any write out of order, truncate or time change abandons the upload (its body
//! fails, so the server keeps nothing of it) and the store sends the copy whole, as does a
//! store whose upload failed. Signed stores carry the contents' hash up front, so users
//! with credentials get no upload.

use super::error::CacheError;
use super::file_state::FileState;
use super::nodes::FileNode;
use super::CacheManager;
use crate::port::{Body, Who};
use bytes::Bytes;
use dfs_common::fileread::read_fresh;
use dfs_common::proto::{AttrChange, DirReply, DirRequest};
use dfs_common::types::SetTime;
use dfs_common::{Attr, Timestamp};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::fs::File;
use std::sync::Arc;
use tokio::sync::watch;

/// Below this many bytes a store is quick anyway: no upload starts.
const START_AT: u64 = 8 << 20;
/// Most bytes the upload reads from the copy for one frame.
const FRAME: u64 = 1 << 20;

/// How far an open's copy is written in order, and its upload once started.
pub(super) struct WriteBehind {
    next: u64,
    upload: Option<Upload>,
}

struct Upload {
    written: watch::Sender<Written>,
    result: tokio::task::JoinHandle<Result<Attr, CacheError>>,
}

/// What the upload may send.
#[derive(Clone, Copy, Debug)]
enum Written {
    /// The first this many bytes; more will come.
    Upto(u64),
    /// The whole file, this long: the body ends there.
    End(u64),
    /// Nothing more: the body fails, and the server drops what it received.
    Abandoned,
}

impl WriteBehind {
    /// For an open whose copy is empty: the first write must be at offset 0.
    pub(super) fn new() -> WriteBehind {
        WriteBehind {
            next: 0,
            upload: None,
        }
    }

    pub(super) fn abandon(self) {
        if let Some(up) = self.upload {
            up.written.send_replace(Written::Abandoned);
        }
    }
}

impl CacheManager {
    /// Whether an open for writing by `writer` of a copy that is now empty should write
    /// behind (only unsigned stores can).
    pub(super) fn writes_behind(&self, writer: &Who) -> bool {
        !self.server.signs(writer)
    }

    /// Notes a write of `len` bytes at `offset`, already in the copy `file` of inode
    /// `ino` (whose state is `l`): the upload follows it, starts, or is abandoned if the
    /// write is out of order.
    pub(super) fn behind_wrote(
        &self,
        l: &mut FileState,
        ino: dfs_common::Ino,
        file: &Arc<File>,
        offset: u64,
        len: u64,
    ) {
        let fence = l.fence();
        let kill_suid = l.kills_suid();
        // The upload acts for the writer whose open started the record.
        let writer = l.writer();
        let Some(behind) = l.behind_mut() else {
            return;
        };
        if offset != behind.next {
            log::debug!(
                "inode {ino}: write at {offset}, not {}: no write-behind",
                behind.next
            );
            l.abandon_behind();
            return;
        }
        behind.next += len;
        match &behind.upload {
            Some(up) => {
                up.written.send_replace(Written::Upto(behind.next));
            }
            None if behind.next >= START_AT => {
                let Some(me) = self.me.upgrade() else {
                    return;
                };
                let (written, follow) = watch::channel(Written::Upto(behind.next));
                let body = follow_copy(file.clone(), follow);
                log::debug!("inode {ino}: write-behind upload starts");
                let result = self.rt.spawn(async move {
                    me.server
                        .store_streamed(&writer, ino, body, fence, kill_suid)
                        .await
                        .map_err(CacheError::from)
                });
                behind.upload = Some(Upload { written, result });
            }
            None => {}
        }
    }

    /// For the store of `node`, whose copy is `size` bytes and cannot change meanwhile:
    /// ends its upload there and returns the server's answer. `None`: there is no upload,
    /// or it failed or does not cover the copy; the store sends the copy whole. A record
    /// that covers the copy outlives the store, so that writes which follow in order
    /// still write behind.
    pub(super) async fn finish_behind(
        &self,
        who: &Who,
        node: &FileNode,
        size: u64,
        mtime: Option<std::time::SystemTime>,
    ) -> Option<Attr> {
        let up = {
            let mut l = node.state();
            if l.behind_mut()?.next != size {
                l.abandon_behind();
                return None;
            }
            // The record stays: a writer that still holds the file (the first descriptor
            // of `dd` or of a shell's `> file` is closed, and so flushed, before any byte
            // is written) goes on writing in order, and a later upload sends the copy
            // from its start again.
            l.behind_mut()?.upload.take()?
        };
        up.written.send_replace(Written::End(size));
        match up.result.await {
            Ok(Ok(attr)) => {
                log::debug!("inode {}: stored by write-behind", node.ino);
                Some(self.carry_mtime(who, attr, mtime).await)
            }
            Ok(Err(e)) => {
                log::info!(
                    "inode {}: write-behind upload failed ({e}); storing the copy whole",
                    node.ino
                );
                None
            }
            Err(e) => {
                log::warn!("inode {}: write-behind upload task: {e}", node.ino);
                None
            }
        }
    }
}

impl CacheManager {
    /// The upload's body was sent before the copy's mtime was final, so the server gave
    /// the file its commit time: set the copy's (that of its last write, or what utimens
    /// set), as a whole store carries it. If that fails the contents are still stored.
    async fn carry_mtime(
        &self,
        who: &Who,
        attr: Attr,
        mtime: Option<std::time::SystemTime>,
    ) -> Attr {
        let Some(mtime) = mtime.map(Timestamp::from_system) else {
            return attr;
        };
        if mtime == attr.mtime {
            return attr;
        }
        let change = AttrChange {
            mtime: Some(SetTime::At(mtime)),
            ..AttrChange::default()
        };
        let req = DirRequest::SetAttr {
            ino: attr.ino,
            change,
        };
        match self.dir_call(who, &req).await {
            Ok(DirReply::Attr(set)) => set,
            Ok(other) => {
                log::warn!(
                    "inode {}: setting the mtime of its store was answered {other:?}",
                    attr.ino
                );
                attr
            }
            Err(e) => {
                log::warn!(
                    "inode {}: could not set the mtime of its store: {e}",
                    attr.ino
                );
                attr
            }
        }
    }
}

/// A body that reads `file` from its start as far as `written` allows, waiting for more
/// until it says `End`.
fn follow_copy(file: Arc<File>, written: watch::Receiver<Written>) -> Body {
    let stream = futures_util::stream::unfold(Some((file, written, 0u64)), |state| async move {
        let (file, mut written, sent) = state?;
        loop {
            let now = *written.borrow_and_update();
            let (upto, end) = match now {
                Written::Upto(n) => (n, false),
                Written::End(n) => (n, true),
                Written::Abandoned => return Some((Err(abandoned()), None)),
            };
            if upto < sent {
                let e = std::io::Error::other(format!("copy shrank to {upto} bytes"));
                return Some((Err(e), None));
            }
            if sent < upto {
                let want = (upto - sent).min(FRAME) as usize;
                let f = file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let buf = read_fresh(&f, want, sent)?;
                    if buf.len() < want {
                        return Err(std::io::Error::other("copy shorter than written"));
                    }
                    Ok(buf)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                return Some(match read {
                    Ok(buf) => (
                        Ok(Frame::data(Bytes::from(buf))),
                        Some((file, written, sent + want as u64)),
                    ),
                    Err(e) => (Err(e), None),
                });
            }
            if end {
                return None;
            }
            if written.changed().await.is_err() {
                return Some((Err(abandoned()), None));
            }
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

fn abandoned() -> std::io::Error {
    std::io::Error::other("write-behind abandoned")
}
