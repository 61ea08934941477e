//! The state of one file while it is open on this client or holds unstored changes
//! (`FileState`, behind each node's mutex), and every transition of it, as named methods.
//! Other modules ask for transitions (`opened`, `changed`, `stored`, `orphaned`, ...) and
//! read it through queries; no field is set from outside this module.
//!
//! The copy's standing with the server is one of three states (`CopyState`):
//!
//! ```text
//!            changed / marked_for_passthrough / truncated_fresh / created_unsynced
//!   Clean ─────────────────────────────────────────────────────────────────────▶ Dirty
//!     ▲  ◀── stored (nothing moved) / store_not_needed / changes_dropped ──────   │
//!     │                                                                            │
//!     └──────────── orphaned (open here, gone on the server) ──▶ Orphaned ◀───────┘
//! ```
//!
//! `Orphaned` is final: the node leaves with its last handle. The states around them are
//! not kept here: *absent* is no node in the table (`nodes`), *filling* is a handle whose
//! copy is still being fetched (`filling::Filling`, the fetch holding the node's `op`),
//! and *storing* is the hold of the node's `op` and `gate` by `store::store_node`.
//! Besides the copy's state a file has its open handles (`Opens`), the descriptor new
//! handles share, the kernel's pages, the writers' lock token, and the write-behind record.
//!
//! Owns: the fields and their rules. Must not do I/O, lock anything else or await: every
//! method runs under the node's mutex.

use super::behind::WriteBehind;
use crate::port::Who;
use dfs_common::Attr;
use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

/// Size and mtime of a copy, to tell whether it changed.
pub(crate) type FileStamp = (u64, SystemTime);

/// The copy's standing with the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum CopyState {
    /// Equal to `version` on the server, as far as this client knows (or not here yet).
    #[default]
    Clean,
    /// Holds changes the server does not have (marked so in the cache index).
    Dirty(Unstored),
    /// The server no longer has the inode; it lives on in the descriptors open here and
    /// nothing is stored (see `orphans`).
    Orphaned,
}

/// What a dirty copy carries besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Unstored {
    /// Size and mtime of the copy when it was last known to equal `version` on the server:
    /// a copy still matching it has not changed (passthrough opens for writing are marked
    /// dirty before anything is written, since writes bypass us).
    pub(crate) stamp: Option<FileStamp>,
    /// Created by us and not durable on the server until our first store: if the server
    /// no longer knows it, a crash forgot it, and close must fail rather than drop the data.
    pub(crate) create: Option<UnsyncedCreate>,
}

/// A create the server makes durable only with our store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UnsyncedCreate {
    /// Permission bits set by a chmod meanwhile, sent with the store instead of on their
    /// own (`tar -x` creates, writes, chmods, closes). Kept in memory only.
    pub(crate) mode: Option<u32>,
}

/// Open handles of the file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opens {
    pub(crate) all: u32,
    pub(crate) writers: u32,
    /// Handles answered through this daemon because the kernel could not have the copy
    /// (it was still being fetched, or written behind): while any is open, every open is
    /// answered so (the kernel refuses passthrough and cached opens of one inode at once).
    pub(crate) plain: u32,
}

/// The copy's read-write descriptor, shared by new handles while any is open.
struct SharedCopy {
    file: Arc<File>,
    /// The version it holds (older handles may still read an older copy).
    version: u64,
}

/// The kernel's pages of the file: `contents` is bumped when the copy is replaced by other
/// contents, `kernel` is `contents` when the kernel last opened the file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelPages {
    pub(crate) contents: u64,
    pub(crate) kernel: Option<u64>,
}

/// What a store is to send, taken when it begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorePlan {
    /// The version the copy is based on (its file is `disk.path(ino, version)`).
    pub(crate) version: u64,
    pub(crate) stamp: Option<FileStamp>,
    /// A chmod held for this store (`UnsyncedCreate::mode`).
    pub(crate) mode: Option<u32>,
    pub(crate) unsynced_create: bool,
}

/// What a store's success left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredCopy {
    /// The server's new version.
    pub(crate) version: u64,
    /// The copy's stamp after the store.
    pub(crate) after: Option<FileStamp>,
    /// The copy changed while it was uploaded (passthrough writes do not wait).
    pub(crate) moved_on: bool,
    /// A passthrough writer still holds it and may write without telling us.
    pub(crate) still_written: bool,
}

/// What a handle's release left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed {
    /// The copy was marked dirty only for passthrough writers that changed nothing: it is
    /// clean again at this version and size (the index must say so).
    pub(crate) clean_again: Option<(u64, u64)>,
    /// The last handle of a file the server still has.
    pub(crate) last_close: bool,
    /// The last plain handle went (waiting opens may go on).
    pub(crate) plain_gone: bool,
}

/// One file's state. Every change is a transition below.
pub(crate) struct FileState {
    /// Server version the local copy is based on (its file is `disk.path(ino, version)`).
    version: u64,
    copy: CopyState,
    opens: Opens,
    shared: Option<SharedCopy>,
    kernel: KernelPages,
    /// Fencing token of the writers' lock this client holds on the inode.
    fence: Option<u64>,
    /// Who opened the file for writing last, and so made its latest changes: a store
    /// retried in the background, or a write-behind upload, acts for them (in a realm,
    /// with their credentials). Nobody, for a copy left by an earlier run.
    writer: Who,
    /// How far an open that started on an empty copy has written it in order, and the
    /// upload following it (see `behind`).
    behind: Option<WriteBehind>,
    /// The attributes the server last gave for the inode, shown (with no links) once it
    /// is gone.
    last_attr: Option<Attr>,
}

impl FileState {
    /// A file nobody here has used since its node was made; `kernel` is what the node
    /// table remembers of the kernel's pages.
    pub(crate) fn new(last_attr: Option<Attr>, kernel: Option<KernelPages>) -> FileState {
        FileState {
            version: 0,
            copy: CopyState::Clean,
            opens: Opens::default(),
            shared: None,
            kernel: kernel.unwrap_or_default(),
            fence: None,
            writer: Who::ANONYMOUS,
            behind: None,
            last_attr,
        }
    }

    // ---- queries ----

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    #[cfg(test)]
    pub(crate) fn copy(&self) -> &CopyState {
        &self.copy
    }

    pub(crate) fn is_dirty(&self) -> bool {
        matches!(self.copy, CopyState::Dirty(_))
    }

    pub(crate) fn is_orphaned(&self) -> bool {
        self.copy == CopyState::Orphaned
    }

    pub(crate) fn opens(&self) -> Opens {
        self.opens
    }

    /// Open here or holding changes: its copy must stay.
    pub(crate) fn in_use(&self) -> bool {
        self.opens.all > 0 || self.is_dirty()
    }

    /// Changes here the server does not have, or handles open: a new open shares the copy
    /// as it is rather than making it current.
    pub(crate) fn has_local_changes(&self) -> bool {
        self.is_dirty() || self.opens.writers > 0 || self.opens.all > 0
    }

    /// Neither open nor dirty: the node may go.
    pub(crate) fn idle(&self) -> bool {
        self.opens.all == 0 && !self.is_dirty()
    }

    /// Dirty and nobody has it open for writing: the retry loop may store it.
    pub(crate) fn awaits_retry(&self) -> bool {
        self.is_dirty() && self.opens.writers == 0
    }

    /// Nobody writes and nothing is unstored: the writers' lock may go back.
    pub(crate) fn lock_releasable(&self) -> bool {
        self.opens.writers == 0 && !self.is_dirty()
    }

    /// The stamp of a dirty copy (see `Unstored::stamp`).
    pub(crate) fn stamp(&self) -> Option<FileStamp> {
        match &self.copy {
            CopyState::Dirty(u) => u.stamp,
            _ => None,
        }
    }

    /// A chmod held for the store of a dirty copy.
    pub(crate) fn held_mode(&self) -> Option<u32> {
        match &self.copy {
            CopyState::Dirty(Unstored {
                create: Some(c), ..
            }) => c.mode,
            _ => None,
        }
    }

    /// Created by us, not durable on the server until our store, which is still to come.
    pub(crate) fn unsynced_create(&self) -> bool {
        matches!(
            self.copy,
            CopyState::Dirty(Unstored {
                create: Some(_),
                ..
            })
        )
    }

    /// The descriptor new handles share, if it holds the current version.
    pub(crate) fn current_file(&self) -> Option<Arc<File>> {
        self.shared
            .as_ref()
            .filter(|s| s.version == self.version)
            .map(|s| s.file.clone())
    }

    /// The descriptor new handles share, whatever version it holds.
    pub(crate) fn shared_file(&self) -> Option<&Arc<File>> {
        self.shared.as_ref().map(|s| &s.file)
    }

    /// The version the shared descriptor holds (0: none).
    pub(crate) fn shared_version(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.version)
    }

    pub(crate) fn kernel_pages(&self) -> KernelPages {
        self.kernel
    }

    pub(crate) fn fence(&self) -> Option<u64> {
        self.fence
    }

    pub(crate) fn writer(&self) -> Who {
        self.writer
    }

    pub(crate) fn last_attr(&self) -> Option<&Attr> {
        self.last_attr.as_ref()
    }

    /// Whether a store of this file must clear its set-id bits: Linux clears S_ISUID (and
    /// S_ISGID with group execute) on a write by a process without CAP_FSETID, which here
    /// is a writer other than root, and the kernel leaves it to us (FUSE_HANDLE_KILLPRIV_V2;
    /// under passthrough the writes never reach us). Asked only when the file has such bits
    /// as far as we know.
    pub(crate) fn kills_suid(&self) -> bool {
        let unprivileged = self.writer.uid().is_some_and(|uid| uid != 0);
        let set_id = self
            .last_attr
            .as_ref()
            .is_none_or(|a| a.mode & (libc::S_ISUID | libc::S_ISGID) != 0);
        unprivileged && set_id
    }

    // ---- the copy: making it current ----

    /// The copy at `version` is current (a cache hit, "not modified", or the cached copy
    /// used while the server cannot be reached).
    pub(crate) fn current_at(&mut self, version: u64) {
        self.version = version;
    }

    /// A fetched copy of `version` replaced the one here: the kernel's pages are stale.
    pub(crate) fn fetched(&mut self, version: u64) {
        self.version = version;
        self.kernel.contents += 1;
    }

    /// The server's attributes of the inode came (shown if it is later gone).
    pub(crate) fn saw_attr(&mut self, attr: &Attr) {
        self.last_attr = Some(attr.clone());
    }

    // ---- Clean -> Dirty ----

    /// A dirty copy left by an earlier run, based on `version`.
    pub(crate) fn adopted_dirty(&mut self, version: u64) {
        self.version = version;
        self.copy = CopyState::Dirty(Unstored::default());
    }

    /// The copy changed through us (a write, truncate or change of times). Returns the
    /// version to mark dirty in the index when it was clean; an orphan stays one.
    pub(crate) fn changed(&mut self) -> Option<u64> {
        match &mut self.copy {
            CopyState::Clean => {
                self.copy = CopyState::Dirty(Unstored::default());
                Some(self.version)
            }
            CopyState::Dirty(u) => {
                u.stamp = None;
                None
            }
            CopyState::Orphaned => None,
        }
    }

    /// An open for writing under passthrough: the kernel will write the copy directly, so
    /// it is marked dirty now, with `stamp`, what it is now (the last close compares).
    /// Returns the version to mark dirty in the index when it was clean.
    pub(crate) fn marked_for_passthrough(&mut self, stamp: Option<FileStamp>) -> Option<u64> {
        match self.copy {
            CopyState::Clean => {
                self.copy = CopyState::Dirty(Unstored {
                    stamp,
                    create: None,
                });
                Some(self.version)
            }
            CopyState::Dirty(_) | CopyState::Orphaned => None,
        }
    }

    /// An O_TRUNC open with no copy here: an empty copy replaces `version`, unstored.
    /// Returns the version to mark dirty in the index.
    pub(crate) fn truncated_fresh(&mut self, version: u64) -> Option<u64> {
        self.version = version;
        self.kernel.contents += 1;
        self.changed()
    }

    /// Our create, which the server makes durable only with our store: close must store
    /// it even if nothing is written. Returns the version to mark dirty in the index.
    pub(crate) fn created_unsynced(&mut self) -> Option<u64> {
        let mark = self.changed();
        if let CopyState::Dirty(u) = &mut self.copy {
            u.stamp = None;
            u.create = Some(UnsyncedCreate::default());
        }
        mark
    }

    /// Keeps `mode` for the store of our unsynced create; false (send it now) otherwise.
    pub(crate) fn hold_mode(&mut self, mode: u32) -> bool {
        match &mut self.copy {
            CopyState::Dirty(Unstored {
                create: Some(c), ..
            }) => {
                c.mode = Some(mode);
                true
            }
            _ => false,
        }
    }

    /// We removed a name of the inode: if its store finds it gone, that is why (not a
    /// crash of the server that forgot our create).
    pub(crate) fn unlinked_by_us(&mut self) {
        if let CopyState::Dirty(u) = &mut self.copy {
            u.create = None;
        }
    }

    // ---- Dirty -> Clean (a store and its outcomes) ----

    /// What a store sends; `None` when there is nothing to store.
    pub(crate) fn store_plan(&self) -> Option<StorePlan> {
        match &self.copy {
            CopyState::Dirty(u) => Some(StorePlan {
                version: self.version,
                stamp: u.stamp,
                mode: u.create.as_ref().and_then(|c| c.mode),
                unsynced_create: u.create.is_some(),
            }),
            _ => None,
        }
    }

    /// The copy still equals the server's version (its stamp matches): nothing to store.
    pub(crate) fn store_not_needed(&mut self) {
        if self.is_dirty() {
            self.copy = CopyState::Clean;
        }
    }

    /// The store succeeded. The copy is the server's new version, still dirty if it moved
    /// on meanwhile or a passthrough writer still holds it. Returns a chmod held for the
    /// store (one that came during the upload was not carried by it). An orphan stays one.
    pub(crate) fn stored(&mut self, s: StoredCopy) -> Option<u32> {
        if let Some(shared) = self.shared.as_mut().filter(|sh| sh.version == self.version) {
            shared.version = s.version;
        }
        self.version = s.version;
        let held = self.held_mode();
        if self.is_orphaned() {
            return None;
        }
        self.copy = match s.moved_on || s.still_written {
            true => CopyState::Dirty(Unstored {
                stamp: if s.moved_on { None } else { s.after },
                create: None,
            }),
            false => CopyState::Clean,
        };
        held
    }

    /// The dirty copy can no longer be stored: its changes were dropped or kept aside (the
    /// file was deleted on the server, the copy went missing, or another writer stored
    /// past it while our lease had lapsed).
    pub(crate) fn changes_dropped(&mut self) {
        if self.is_dirty() {
            self.copy = CopyState::Clean;
        }
    }

    // ---- -> Orphaned ----

    /// The server no longer has the inode. If it is open here it becomes an orphan (its
    /// unstored changes live on in its descriptors only); `attr` fills in the attributes
    /// it shows if none came yet. Returns whether it is open.
    pub(crate) fn orphaned(&mut self, attr: impl FnOnce() -> Option<Attr>) -> bool {
        if self.opens.all == 0 {
            return false;
        }
        if self.last_attr.is_none() {
            self.last_attr = attr();
        }
        self.copy = CopyState::Orphaned;
        true
    }

    // ---- handles ----

    /// Keeps `file`, a descriptor of the current version's copy, for new handles.
    pub(crate) fn share(&mut self, file: Arc<File>) {
        self.shared = Some(SharedCopy {
            file,
            version: self.version,
        });
    }

    /// A handle opened on the shared copy; `behind`: it writes behind (plain, its own
    /// contents). Returns (the kernel may keep its pages, the handle is plain).
    pub(crate) fn opened(&mut self, writable: bool, behind: bool) -> (bool, bool) {
        self.opens.all += 1;
        if writable {
            self.opens.writers += 1;
        }
        if behind {
            self.behind = Some(WriteBehind::new());
            // The kernel's pages, if any, are not of what this handle writes.
            self.kernel.contents += 1;
            self.opens.plain += 1;
        } else if self.opens.plain > 0 {
            self.opens.plain += 1;
        }
        let keep = self.kernel.kernel == Some(self.kernel.contents);
        self.kernel.kernel = Some(self.kernel.contents);
        (keep, self.opens.plain > 0)
    }

    /// A read-only handle answered before its copy's fetch ended (plain).
    pub(crate) fn opened_filling(&mut self) {
        self.opens.all += 1;
        self.opens.plain += 1;
    }

    /// An open for writing by `who` begins: its changes are theirs.
    pub(crate) fn writer_is(&mut self, who: Who) {
        self.writer = who;
    }

    /// A handle goes. `stamp_now` tells what the copy is now; asked only when the last
    /// writer of a copy marked dirty for passthrough goes.
    pub(crate) fn closed(
        &mut self,
        writable: bool,
        plain: bool,
        stamp_now: impl FnOnce() -> Option<FileStamp>,
    ) -> Closed {
        self.opens.all = self.opens.all.saturating_sub(1);
        if writable {
            self.opens.writers = self.opens.writers.saturating_sub(1);
        }
        let mut plain_gone = false;
        if plain {
            self.opens.plain = self.opens.plain.saturating_sub(1);
            plain_gone = self.opens.plain == 0;
        }
        if self.opens.all == 0 {
            self.shared = None;
        }
        let last_close = self.opens.all == 0 && !self.is_orphaned();
        if self.opens.writers == 0 {
            self.abandon_behind();
        }
        // The last writer is gone. A copy still marked dirty only because passthrough
        // writers might have written (it was stored at their flush, or never changed) is
        // clean if it still matches its stamp.
        let mut clean_again = None;
        if self.opens.writers == 0 {
            if let Some(stamp) = self.stamp() {
                if stamp_now() == Some(stamp) {
                    self.copy = CopyState::Clean;
                    clean_again = Some((self.version, stamp.0));
                }
            }
        }
        Closed {
            clean_again,
            last_close,
            plain_gone,
        }
    }

    // ---- the writers' lock ----

    /// The writers' lock was granted with `token` (a grant already held stays).
    pub(crate) fn lock_granted(&mut self, token: u64) {
        if self.fence.is_none() {
            self.fence = Some(token);
        }
    }

    /// The server refused our token: the lock must be won back before the next store.
    pub(crate) fn lock_lapsed(&mut self) {
        self.fence = None;
    }

    /// Takes the token to give the lock back, if nobody writes and nothing is unstored.
    pub(crate) fn lock_given_back(&mut self) -> Option<u64> {
        match self.lock_releasable() {
            true => self.fence.take(),
            false => None,
        }
    }

    /// The lock service says our grant `token` is gone; false if we held no such grant.
    pub(crate) fn lock_lost(&mut self, token: u64) -> bool {
        if self.fence != Some(token) {
            return false;
        }
        self.fence = None;
        true
    }

    // ---- write-behind ----

    /// The write-behind record, to note a write in it.
    pub(crate) fn behind_mut(&mut self) -> Option<&mut WriteBehind> {
        self.behind.as_mut()
    }

    /// Abandons the copy's write-behind, if any: the copy changed other than by appending,
    /// or its last writer is gone.
    pub(crate) fn abandon_behind(&mut self) {
        if let Some(b) = self.behind.take() {
            b.abandon();
        }
    }
}

#[cfg(test)]
mod tests;
