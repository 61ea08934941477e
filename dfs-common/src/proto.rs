//! Wire messages of every `/v1` resource. Bodies are bincode (see `codec`), errors are
//! HTTP status + `x-dfs-error` code + `x-dfs-detail` header + text body (see `FsError`).
//!
//! Resources:
//! - `POST /v1/dir` — body `DirRequest`, answer `DirReply`. The directory service.
//!   Every request that returns an inode's attributes (or a directory's entries) gives the
//!   calling client (header `x-dfs-client`) a callback promise on that inode.
//! - `GET /v1/files/{ino}` — fetch. Optional header `x-dfs-have-version: N`: if the file is
//!   still at version N the answer is `304` with no body. Otherwise `200`, the raw contents
//!   streamed as the body, `content-length` set. Both carry the attributes in `x-dfs-attr`
//!   (hex of bincode `Attr`) and give the caller a callback promise.
//! - `PUT /v1/files/{ino}` — store. The raw new contents streamed as the body;
//!   `content-length` required; optional `x-dfs-sha256` (hex): the server rejects a body
//!   whose hash differs. Answer: bincode `Attr` (the new version). The blob is fsynced and
//!   the metadata committed before the answer; every other client's promise is broken.
//! - `GET /v1/callbacks` — the callback channel of the client named by `x-dfs-client`: a
//!   streaming body of frames (`codec::write_frame`) of `CallbackFrame`, the first always
//!   `Hello`. A second connection for the same client replaces the first.
//! - `GET /v1/health` — `200 ok` text.

use crate::types::{Attr, FileKind, Ino, SetTime};
use serde::{Deserialize, Serialize};

/// Header naming the calling client (a random u64 in decimal, new per mount).
pub const HDR_CLIENT: &str = "x-dfs-client";
/// Header with the error code of a failed request (see `FsError::code`).
pub const HDR_ERROR: &str = "x-dfs-error";
/// The kinds of `DirRequest`, in `DirRequest::kind_index` order (metrics, logs).
pub const DIR_REQUEST_KINDS: &[&str] = &[
    "lookup",
    "getattr",
    "readdir",
    "create",
    "create_open",
    "mkdir",
    "mknod",
    "symlink",
    "link",
    "unlink",
    "rmdir",
    "rename",
    "setattr",
    "readlink",
    "xattrs",
    "setxattr",
    "removexattr",
    "validate",
    "statfs",
];

impl DirRequest {
    /// This request's kind: an index into `DIR_REQUEST_KINDS`.
    pub fn kind_index(&self) -> usize {
        match self {
            DirRequest::Lookup { .. } => 0,
            DirRequest::GetAttr { .. } => 1,
            DirRequest::ReadDir { .. } => 2,
            DirRequest::Create { .. } => 3,
            DirRequest::CreateOpen { .. } => 4,
            DirRequest::Mkdir { .. } => 5,
            DirRequest::Mknod { .. } => 6,
            DirRequest::Symlink { .. } => 7,
            DirRequest::Link { .. } => 8,
            DirRequest::Unlink { .. } => 9,
            DirRequest::Rmdir { .. } => 10,
            DirRequest::Rename { .. } => 11,
            DirRequest::SetAttr { .. } => 12,
            DirRequest::ReadLink { .. } => 13,
            DirRequest::Xattrs { .. } => 14,
            DirRequest::SetXattr { .. } => 15,
            DirRequest::RemoveXattr { .. } => 16,
            DirRequest::Validate { .. } => 17,
            DirRequest::StatFs => 18,
        }
    }
}

/// A request's id, made by the client (16 hex digits) and logged by both sides at debug
/// level, so one request can be followed from the mount's log to the server's. In a realm
/// it is covered by the request's authenticator like every `x-dfs-*` header (the client
/// adds it before signing); nothing but the logs reads it.
pub const HDR_REQUEST_ID: &str = "x-dfs-request-id";
/// Header with the error detail of a failed request.
pub const HDR_DETAIL: &str = "x-dfs-detail";
/// Header with hex-encoded bincode `Attr` on fetch answers.
pub const HDR_ATTR: &str = "x-dfs-attr";
/// Header on fetch: the version the client already holds.
pub const HDR_HAVE_VERSION: &str = "x-dfs-have-version";
/// Header on store: the writer's modification time of the contents (hex of bincode
/// `Timestamp`), so `touch -d` / `cp -a` on an open file survive the store, as AFS's
/// StoreData carries the client's mtime. Without it the server uses its clock.
pub const HDR_MTIME: &str = "x-dfs-mtime";
/// Header on store: the file's new permission bits (decimal, at most 0o777: no set-id or
/// sticky bits), from a chmod of a file created by this client and not stored yet (as
/// `tar -x` does before close), so that it costs no request of its own.
pub const HDR_MODE: &str = "x-dfs-mode";
/// Header on store: hex SHA-256 of the body.
pub const HDR_SHA256: &str = "x-dfs-sha256";
/// Header on store, value `1`: the writer lacks CAP_FSETID, so the store clears the file's
/// S_ISUID bit, and S_ISGID if the group may execute it, as a write does on Linux.
pub const HDR_KILL_SUID: &str = "x-dfs-kill-suid";

/// Longest extended attribute name, in bytes, with its namespace prefix (Linux
/// XATTR_NAME_MAX); a longer one is `OutOfRange` (ERANGE).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value (Linux XATTR_SIZE_MAX); a larger one is `TooBig`.
pub const XATTR_SIZE_MAX: usize = 65536;
/// Most bytes all of one inode's extended attributes may take (names and values); past
/// it a set fails with `NoSpace` (ENOSPC), as on ext4 when the attribute block is full.
pub const XATTR_TOTAL_MAX: usize = 256 << 10;
/// The access ACL of an inode, in the kernel's xattr form (`acl` module of the server).
pub const XATTR_POSIX_ACL_ACCESS: &[u8] = b"system.posix_acl_access";
/// The default ACL of a directory, inherited by what is created in it.
pub const XATTR_POSIX_ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// Largest `/v1/dir` request body the server reads; larger ones get 413.
pub const MAX_DIR_REQUEST: usize = 1 << 20;
/// Entries per readdir page unless the client asks for fewer.
pub const READDIR_PAGE: u32 = 1024;

/// rename(2) flags carried by `DirRequest::Rename`.
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirRequest {
    /// The attributes of `name` in `parent`.
    Lookup {
        parent: Ino,
        name: Vec<u8>,
    },
    GetAttr {
        ino: Ino,
    },
    /// Up to `limit` entries of `dir` whose names sort after `after`, in name order,
    /// each with its attributes (readdirplus). `.` and `..` are not included.
    ReadDir {
        dir: Ino,
        after: Option<Vec<u8>>,
        limit: u32,
    },
    /// A new empty regular file. With `exclusive: false` an existing regular file of that
    /// name is returned as it is (O_CREAT without O_EXCL).
    ///
    /// `mode` is the caller's mode argument and `umask` its process's umask, not yet
    /// applied (the same for `CreateOpen`, `Mkdir` and `Mknod`): when the directory has a
    /// default ACL the new inode inherits it and the umask is ignored (POSIX.1e); otherwise
    /// its permission bits are `mode & !umask`.
    Create {
        parent: Ino,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
        uid: u32,
        gid: u32,
        exclusive: bool,
    },
    /// `Create`, and in the same request the writers' `Open` lock on the file for the
    /// caller (owner 0 of its client, see `locks`), so a create-write-close needs no
    /// separate lock round trip. Answered with `DirReply::Created`; `lock` is `None` when
    /// another client holds the lock (an existing file): take it the usual way then.
    CreateOpen {
        parent: Ino,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
        uid: u32,
        gid: u32,
        exclusive: bool,
        /// Who to name to others while the lock is held.
        label: String,
        /// The caller will store the file at its close, whatever it writes: the server may
        /// then answer before the create is durable (the store's commit makes it durable;
        /// see `DirReply::Created::durable`).
        store_at_close: bool,
    },
    Mkdir {
        parent: Ino,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
        uid: u32,
        gid: u32,
    },
    /// A fifo, socket or device node (`kind` one of the special kinds; `rdev` the device
    /// of a device node, 0 otherwise). Answered with `DirReply::Made`.
    Mknod {
        parent: Ino,
        name: Vec<u8>,
        kind: FileKind,
        mode: u32,
        umask: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        parent: Ino,
        name: Vec<u8>,
        target: Vec<u8>,
        uid: u32,
        gid: u32,
    },
    /// A hard link to regular file `ino` as `new_name` in `new_parent`.
    Link {
        ino: Ino,
        new_parent: Ino,
        new_name: Vec<u8>,
    },
    Unlink {
        parent: Ino,
        name: Vec<u8>,
    },
    Rmdir {
        parent: Ino,
        name: Vec<u8>,
    },
    /// POSIX rename; `flags` is a set of `RENAME_*`.
    Rename {
        parent: Ino,
        name: Vec<u8>,
        new_parent: Ino,
        new_name: Vec<u8>,
        flags: u32,
    },
    /// Changes what is `Some`. `size` truncates or zero-extends the contents (a new version).
    SetAttr {
        ino: Ino,
        change: AttrChange,
    },
    ReadLink {
        ino: Ino,
    },
    /// Every extended attribute of `ino`, names with their values, in name order
    /// (`DirReply::Xattrs`); gives a promise on `ino` (a change of any of them breaks it).
    /// Attributes the caller may not read (`trusted.*` for a non-admin) are left out.
    Xattrs {
        ino: Ino,
    },
    /// Sets extended attribute `name` (with its namespace prefix, e.g. `user.mime`) of
    /// `ino`. Linux's rules: `user.` on regular files and directories only, by whoever may
    /// write the file (and on a sticky directory only its owner); `trusted.` and
    /// `security.capability` by an admin; `system.posix_acl_*` by the owner, whose access
    /// ACL also sets the permission bits. Answered with the new attributes (`Attr`; ctime
    /// changed).
    SetXattr {
        ino: Ino,
        name: Vec<u8>,
        value: Vec<u8>,
        how: XattrSet,
    },
    /// Removes extended attribute `name` (`NoXattr` if it has none). Answered with `Attr`.
    RemoveXattr {
        ino: Ino,
        name: Vec<u8>,
    },
    /// Revalidation after a lost callback channel or a server restart: for each
    /// `(ino, version)` the client holds, the server answers the current attributes (or
    /// `None` if the inode is gone) and renews promises on all that exist. Attributes, not
    /// just versions, so that a chmod or utimens made while the client was away shows.
    Validate {
        held: Vec<(Ino, u64)>,
    },
    StatFs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirReply {
    Attr(Attr),
    Entries {
        entries: Vec<(Vec<u8>, Attr)>,
        /// More entries follow: ask again with `after` = the last name.
        more: bool,
    },
    Empty,
    Target(Vec<u8>),
    /// One entry per held inode, in request order; `None` means it no longer exists.
    Validated {
        current: Vec<(Ino, Option<Attr>)>,
    },
    StatFs(StatFs),
    /// Answer to `CreateOpen`: the attributes as of after the lock grant, and the lock's
    /// fencing token and lease.
    Created {
        attr: Attr,
        lock: Option<CreatedLock>,
        /// False when the create is not on disk yet (only with `store_at_close` and a
        /// granted lock): the caller's store at close makes it durable, and a crash of the
        /// server before then forgets the file (that store then fails).
        durable: bool,
        /// The directory's attributes after the create (its times changed), so the
        /// caller need not ask for them again.
        parent: Attr,
    },
    /// Answer to `Mkdir`: the new directory's attributes and its parent's after the
    /// change (the parent's times and link count changed), so the caller need not ask.
    Made {
        attr: Attr,
        parent: Attr,
    },
    /// Answer to `Unlink` and `Rmdir`: the directory's attributes after the change.
    Removed {
        parent: Attr,
    },
    /// Answer to `Xattrs`: every extended attribute, `(name, value)` in name order.
    Xattrs(Vec<(Vec<u8>, Vec<u8>)>),
}

/// How `DirRequest::SetXattr` treats an existing attribute (setxattr(2) flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum XattrSet {
    /// Create it or replace it (flags 0).
    Either,
    /// Fail with `Exists` if it exists (XATTR_CREATE).
    Create,
    /// Fail with `NoXattr` if it does not (XATTR_REPLACE).
    Replace,
}

/// What a `DirRequest::SetAttr` changes (`None`: leave as is).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    /// The caller created this file with a create that is not durable yet
    /// (`Created { durable: false }`) and will store it at its close: the change may
    /// wait for that store's commit to reach the disk (a crash before then forgets the
    /// whole file, and that close fails). Ignored when `size` is set.
    pub defer_sync: bool,
    /// The caller lacks CAP_FSETID: a size change also clears S_ISUID, and S_ISGID if the
    /// group may execute the file (Linux's rule for truncate and write). A change of owner
    /// or group of a non-directory clears them whoever asks.
    pub kill_suid: bool,
}

impl AttrChange {
    /// Whether applying it would change no attribute.
    pub fn changes_nothing(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.size.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedLock {
    pub token: u64,
    pub lease_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatFs {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub files: u64,
}

/// One frame on the callback channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallbackFrame {
    /// First frame. A different `epoch` than last time means the server restarted and
    /// every promise it made before is void: revalidate (by version) before trusting a cache.
    Hello { epoch: u64, client: u64 },
    /// The attributes or contents of `ino` changed; drop cached attributes and revalidate
    /// contents before the next open.
    Break { ino: Ino },
    /// The entry `name` of directory `dir` was added, removed or replaced.
    EntryBreak { dir: Ino, name: Vec<u8> },
    /// Breaks for this client were lost (queue overflow): every promise is void.
    RevalidateAll,
    /// Sent every few seconds so that both ends notice a dead connection.
    Heartbeat,
    /// Several breaks caused by one commit (a transaction): the client applies them
    /// together, so its readers see either none or all of them.
    Group(Vec<CallbackFrame>),
}

/// Seconds between heartbeats; a client that hears nothing for three of them treats the
/// channel as dead and every promise as void.
pub const HEARTBEAT_SECS: u64 = 5;
