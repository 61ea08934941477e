//! The node table: one `FileNode` per inode that is open here or holds unstored changes,
//! made on first use and dropped when idle (what the kernel's pages were is remembered
//! past it, in `kernel_pages`). A node is the file's state (`file_state`) behind its mutex
//! and the locks that order the slow steps on it.
//!
//! Owns: `CacheManager::nodes` and `kernel_pages`, making and dropping nodes, and the
//! questions asked of all of them. Must not change a file's state other than through its
//! transitions, nor do I/O beyond the cache index.

use super::file_state::{FileState, KernelPages};
use super::CacheManager;
use dfs_common::Ino;
use std::sync::{Arc, Mutex, MutexGuard};

/// Per-inode state while a file is open on this client or holds unstored changes.
pub(crate) struct FileNode {
    pub(super) ino: Ino,
    /// Serializes taking and giving back the writers' lock of this inode.
    pub(super) grant: tokio::sync::Mutex<()>,
    /// Serializes the slow steps on one inode: making the copy current, storing it,
    /// truncating it. A fetch that goes on after its open was answered holds it to the end.
    pub(super) op: Arc<tokio::sync::Mutex<()>>,
    /// `write` shares it; a store in flight holds it exclusively so the upload is a
    /// consistent snapshot.
    pub(super) gate: tokio::sync::RwLock<()>,
    state: Mutex<FileState>,
    /// Signalled when the last plain handle goes (see `Opens::plain`).
    pub(super) plain_gone: tokio::sync::Notify,
}

impl FileNode {
    /// The file's state, to ask a question or make a transition. Never held across an
    /// await.
    pub(super) fn state(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap()
    }
}

impl CacheManager {
    /// The node of `ino`, made if there is none.
    pub(super) fn node(&self, ino: Ino) -> Arc<FileNode> {
        self.nodes
            .lock()
            .unwrap()
            .entry(ino)
            .or_insert_with(|| {
                let last_attr = self.meta.lock().unwrap().attr(ino).map(|(a, _)| a);
                let kernel = self.kernel_pages.lock().unwrap().pop(&ino);
                Arc::new(FileNode {
                    ino,
                    grant: tokio::sync::Mutex::new(()),
                    op: Arc::new(tokio::sync::Mutex::new(())),
                    gate: tokio::sync::RwLock::new(()),
                    state: Mutex::new(FileState::new(last_attr, kernel)),
                    plain_gone: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    /// The node of `ino` if there is one.
    pub(super) fn node_if_any(&self, ino: Ino) -> Option<Arc<FileNode>> {
        self.nodes.lock().unwrap().get(&ino).cloned()
    }

    /// Dirty copies left by an earlier run become nodes the retry loop will store.
    pub(crate) fn adopt_dirty_files(&self) {
        for (ino, entry) in self.disk.all() {
            if entry.dirty {
                self.node(ino).state().adopted_dirty(entry.version);
                log::info!("inode {ino}: unstored changes from an earlier run will be stored");
            }
        }
    }

    /// Whether `ino` is open here or holds unstored changes (its copy must stay).
    pub(super) fn in_use(&self, ino: Ino) -> bool {
        self.node_if_any(ino).is_some_and(|n| n.state().in_use())
    }

    /// Forgets a node nobody uses any more (no handle, nothing unstored).
    pub(super) fn maybe_drop_node(&self, node: &Arc<FileNode>) {
        let mut nodes = self.nodes.lock().unwrap();
        let idle = node.state().idle();
        // The map and our caller hold the only references: nobody is between lookup and use.
        if idle && Arc::strong_count(node) == 2 && node.op.try_lock().is_ok() {
            nodes.remove(&node.ino);
            let pages: KernelPages = node.state().kernel_pages();
            if pages.kernel.is_some() {
                self.kernel_pages.lock().unwrap().put(node.ino, pages);
            }
        }
    }

    /// Nodes whose state passes `pick`.
    pub(super) fn nodes_where(&self, pick: impl Fn(&FileState) -> bool) -> Vec<Arc<FileNode>> {
        self.nodes
            .lock()
            .unwrap()
            .values()
            .filter(|n| pick(&n.state()))
            .cloned()
            .collect()
    }

    /// How many files have changes the server has not acknowledged.
    pub fn dirty_count(&self) -> usize {
        self.nodes
            .lock()
            .unwrap()
            .values()
            .filter(|n| n.state().is_dirty())
            .count()
    }

    /// Inodes whose writers' lock this client holds, with its fencing token (for lease
    /// renewal).
    pub(crate) fn open_locks(&self) -> Vec<(Ino, u64)> {
        self.nodes
            .lock()
            .unwrap()
            .values()
            .filter_map(|n| n.state().fence().map(|t| (n.ino, t)))
            .collect()
    }

    /// The inode's last attributes from the server reach its node, if any (an open file
    /// shows them if the server loses it, see `orphans`).
    pub(super) fn node_saw_attr(&self, attr: &dfs_common::Attr) {
        if let Some(node) = self.nodes.lock().unwrap().get(&attr.ino) {
            node.state().saw_attr(attr);
        }
    }
}
