//! Extended attribute requests (and so POSIX ACLs, which the kernel reads and writes as
//! `system.posix_acl_*` attributes): answered in place from the manager's cache when it can
//! (the kernel asks for "security.capability" before writes, and for ACLs at permission
//! checks), else from a tokio task. Must not hold policy.

use super::attrs::errno;
use super::entries::answer_empty;
use super::DfsFs;
use dfs_client::cache::CacheError;
use dfs_common::proto::XattrSet;
use fuser::{Errno, INodeNo, ReplyEmpty, ReplyXattr, Request};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Answers getxattr/listxattr with `bytes`: their size when the caller asks for it (`size`
/// 0), ERANGE when its buffer is too small.
fn answer_bytes(result: Result<Vec<u8>, CacheError>, size: u32, reply: ReplyXattr) {
    match result {
        Ok(bytes) if size == 0 => reply.size(bytes.len() as u32),
        Ok(bytes) if bytes.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(bytes) => reply.data(&bytes),
        Err(e) => reply.error(errno(&e)),
    }
}

pub(super) fn getxattr(
    fs: &DfsFs,
    req: &Request,
    ino: INodeNo,
    name: &OsStr,
    size: u32,
    reply: ReplyXattr,
) {
    if let Some(found) = fs.mgr.try_getxattr_cached(ino.0, name.as_bytes()) {
        return answer_bytes(found, size, reply);
    }
    let mgr = fs.mgr.clone();
    let name = name.as_bytes().to_vec();
    fs.spawn_as(req, |who| async move {
        answer_bytes(mgr.getxattr(&who, ino.0, &name).await, size, reply)
    });
}

pub(super) fn listxattr(fs: &DfsFs, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
    if let Some(names) = fs.mgr.try_listxattr_cached(ino.0) {
        return answer_bytes(Ok(names), size, reply);
    }
    let mgr = fs.mgr.clone();
    fs.spawn_as(req, |who| async move {
        answer_bytes(mgr.listxattr(&who, ino.0).await, size, reply)
    });
}

#[allow(clippy::too_many_arguments)]
pub(super) fn setxattr(
    fs: &DfsFs,
    req: &Request,
    ino: INodeNo,
    name: &OsStr,
    value: &[u8],
    flags: i32,
    position: u32,
    reply: ReplyEmpty,
) {
    if position != 0 {
        // Only macOS resource forks have a position.
        return reply.error(Errno::EINVAL);
    }
    let how = match flags {
        0 => XattrSet::Either,
        libc::XATTR_CREATE => XattrSet::Create,
        libc::XATTR_REPLACE => XattrSet::Replace,
        _ => return reply.error(Errno::EINVAL),
    };
    let mgr = fs.mgr.clone();
    let (name, value) = (name.as_bytes().to_vec(), value.to_vec());
    fs.spawn_as(req, |who| async move {
        answer_empty(mgr.setxattr(&who, ino.0, &name, &value, how).await, reply)
    });
}

pub(super) fn removexattr(
    fs: &DfsFs,
    req: &Request,
    ino: INodeNo,
    name: &OsStr,
    reply: ReplyEmpty,
) {
    let mgr = fs.mgr.clone();
    let name = name.as_bytes().to_vec();
    fs.spawn_as(req, |who| async move {
        answer_empty(mgr.removexattr(&who, ino.0, &name).await, reply)
    });
}
