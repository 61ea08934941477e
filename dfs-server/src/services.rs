//! The services of one node wired together: the composition root. It builds each service
//! from the parts it needs, and hands those parts to a request's handler (`crate::api`)
//! or a background task (`crate::main`): a domain module gets the namespace, the lock
//! service, the blobs or the callback registry it works on, never `Services`.
//!
//! Owns: `Services`, `Settings`, which parts each service gets. Must not implement a
//! service, hold HTTP types or POSIX rules.

use crate::blobs::BlobStore;
use crate::callbacks::Registry;
use crate::cluster::{Cluster, ClusterSettings, Replication};
use crate::coherence::Coherence;
use crate::lock::LockService;
use crate::namespace::Namespace;
use dfs_common::FsError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Who is calling (`crate::auth::Caller`), where users of this crate have found it.
pub use crate::auth::Caller;

/// Settings of a node.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub gc_grace_secs: u64,
    pub max_file_size: u64,
}

pub struct Services {
    pub ns: Arc<Namespace>,
    /// The registered clients (mounts) and the check of who a request's client is.
    pub clients: crate::clients::Clients,
    pub blobs: Arc<BlobStore>,
    pub callbacks: Arc<Registry>,
    /// `ns`, `blobs` and `callbacks` behind the promise/break gate: every read that gives
    /// a promise and every commit that breaks them goes through it.
    pub coherence: Arc<Coherence>,
    pub locks: Arc<LockService>,
    pub settings: Settings,
    /// The realm, if this node has one (set once at start; empty = open cell).
    pub security: OnceLock<Arc<crate::auth::Security>>,
    /// The transaction service's in-memory state (leases, requests in flight).
    pub tx: Arc<crate::tx::TxState>,
    /// The replication service (set once at start; a node on its own if never set).
    cluster: OnceLock<Arc<Cluster>>,
}

impl Services {
    /// The services of a node; fails if the registered clients cannot be read.
    pub fn new(
        ns: Arc<Namespace>,
        blobs: Arc<BlobStore>,
        callbacks: Arc<Registry>,
        locks: Arc<LockService>,
        settings: Settings,
    ) -> Result<Arc<Services>, FsError> {
        let clients = crate::clients::Clients::load(&ns, callbacks.epoch())?;
        let coherence = Arc::new(Coherence::new(ns.clone(), blobs.clone(), callbacks.clone()));
        Ok(Arc::new(Services {
            clients,
            ns,
            blobs,
            callbacks,
            coherence,
            locks,
            settings,
            security: OnceLock::new(),
            tx: Arc::default(),
            cluster: OnceLock::new(),
        }))
    }

    /// Puts this node in a cluster (once, at start, before serving).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The replication service; a node on its own unless `set_cluster` was called.
    pub fn cluster(&self) -> &Arc<Cluster> {
        self.cluster.get_or_init(|| {
            Cluster::new(ClusterSettings::standalone(SocketAddr::from((
                [0, 0, 0, 0],
                0,
            ))))
        })
    }

    /// The realm, if this node has one.
    pub fn security(&self) -> Option<&crate::auth::Security> {
        self.security.get().map(|s| &**s)
    }

    /// What the replication service works on.
    pub fn replication(&self) -> Replication {
        Replication {
            cluster: self.cluster().clone(),
            blobs: self.blobs.clone(),
            ns: self.ns.clone(),
        }
    }

    /// What the file service works on.
    pub fn files(&self) -> crate::files::Files<'_> {
        crate::files::Files {
            coherence: &self.coherence,
            locks: &self.locks,
            replication: self.replication(),
            max_file_size: self.settings.max_file_size,
        }
    }

    /// What the transaction service works on.
    pub fn transactions(&self) -> crate::tx::Transactions {
        crate::tx::Transactions {
            coherence: self.coherence.clone(),
            locks: self.locks.clone(),
            replication: self.replication(),
            state: self.tx.clone(),
            max_file_size: self.settings.max_file_size,
        }
    }
}
