//! The cache's port (`crate::port::Server`) over HTTP: each call is one request of
//! `Remote` (locks under `/v1/locks/`), and the callback channel's sealed byte stream is
//! cut into frames here.
//!
//! Owns: the mapping of port calls to resources. Must not know the cache.

use super::{Body, Remote};
use crate::port::{BoxFuture, CallbackStream, FetchProgress, Fetched, PortError, Server, Who};
use dfs_common::codec;
use dfs_common::locks::{
    ListRequest, LockInfo, LockReply, LockRequest, ReleaseReply, ReleaseRequest, RenewReply,
    RenewRequest, TestReply,
};
use dfs_common::proto::{CallbackFrame, DirReply, DirRequest};
use dfs_common::{Attr, FsError, Ino};
use http_body_util::BodyExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

impl Server for Remote {
    fn client_id(&self) -> u64 {
        Remote::client_id(self)
    }

    fn signs(&self, who: &Who) -> bool {
        Remote::signs(self, who)
    }

    fn dir<'a>(
        &'a self,
        who: &'a Who,
        req: &'a DirRequest,
    ) -> BoxFuture<'a, Result<DirReply, PortError>> {
        Box::pin(async move { Ok(Remote::dir(self, who, req).await?) })
    }

    fn fetch<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        have_version: Option<u64>,
        dest: &'a Path,
        progress: Option<Arc<dyn FetchProgress>>,
    ) -> BoxFuture<'a, Result<Fetched, PortError>> {
        Box::pin(Remote::fetch(self, who, ino, have_version, dest, progress))
    }

    fn store<'a>(
        &'a self,
        who: &'a Who,
        ino: Ino,
        src: &'a Path,
        fence: Option<u64>,
        mode: Option<u32>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>> {
        Box::pin(
            async move { Ok(Remote::store(self, who, ino, src, fence, mode, kill_suid).await?) },
        )
    }

    fn store_streamed<'a>(
        &'a self,
        _who: &'a Who,
        ino: Ino,
        body: Body,
        fence: Option<u64>,
        kill_suid: bool,
    ) -> BoxFuture<'a, Result<Attr, PortError>> {
        Box::pin(
            async move { Ok(Remote::store_streamed(self, ino, body, fence, kill_suid).await?) },
        )
    }

    fn lock_acquire<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
        extra: Duration,
    ) -> BoxFuture<'a, Result<LockReply, PortError>> {
        Box::pin(async move { Ok(self.call(who, "/v1/locks/acquire", req, extra).await?) })
    }

    fn lock_release<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ReleaseRequest,
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        Box::pin(async move {
            Ok(self
                .call(who, "/v1/locks/release", req, Duration::ZERO)
                .await?)
        })
    }

    fn lock_release_many<'a>(
        &'a self,
        who: &'a Who,
        reqs: &'a [ReleaseRequest],
    ) -> BoxFuture<'a, Result<ReleaseReply, PortError>> {
        Box::pin(async move {
            Ok(self
                .call(who, "/v1/locks/release-many", &reqs, Duration::ZERO)
                .await?)
        })
    }

    fn lock_test<'a>(
        &'a self,
        who: &'a Who,
        req: &'a LockRequest,
    ) -> BoxFuture<'a, Result<TestReply, PortError>> {
        Box::pin(async move {
            Ok(self
                .call(who, "/v1/locks/test", req, Duration::ZERO)
                .await?)
        })
    }

    fn lock_list<'a>(
        &'a self,
        who: &'a Who,
        req: &'a ListRequest,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, PortError>> {
        Box::pin(async move {
            Ok(self
                .call(who, "/v1/locks/list", req, Duration::ZERO)
                .await?)
        })
    }

    fn lock_renew<'a>(
        &'a self,
        who: &'a Who,
        req: &'a RenewRequest,
    ) -> BoxFuture<'a, Result<RenewReply, PortError>> {
        Box::pin(async move {
            Ok(self
                .call(who, "/v1/locks/renew", req, Duration::ZERO)
                .await?)
        })
    }

    fn callbacks(&self) -> BoxFuture<'_, Result<CallbackStream, PortError>> {
        Box::pin(async move {
            let body = Remote::callbacks(self).await?;
            Ok(frames_of(body))
        })
    }
}

/// The frames of a callback channel's (opened) body, decoded as they complete.
pub(crate) fn frames_of(body: Body) -> CallbackStream {
    let state = (body, Vec::<u8>::new(), false);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut body, mut buf, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match codec::take_frame::<CallbackFrame>(&mut buf) {
                    Ok(Some(frame)) => return Some((Ok(frame), (body, buf, false))),
                    Ok(None) => {}
                    Err(e) => return Some((Err(PortError::from(e)), (body, buf, true))),
                }
                match body.frame().await {
                    None => return None,
                    Some(Err(e)) => {
                        let e = FsError::Unavailable(format!("callback channel: {e}"));
                        return Some((Err(e.into()), (body, buf, true)));
                    }
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                }
            }
        },
    ))
}
