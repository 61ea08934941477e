//! Wiring: a cache manager whose port is HTTP to one server (`remote::Remote`), with the
//! client identity kept beside its cache. The one place that knows both the cache and the
//! HTTP port.
//!
//! Owns: that construction. Must not hold policy.

use crate::cache::CacheError;
use crate::cache::{CacheManager, CacheOptions};
use crate::remote::identity::Identity;
use crate::remote::Remote;
use std::path::Path;
use std::sync::Arc;

impl CacheManager {
    /// A manager for the server at `addr` (`HOST:PORT`) with its cache in `cache_dir`,
    /// holding no credentials (every user anonymous in a realm) at the integrity level.
    /// Call inside a tokio runtime. A mount builds its port itself (`Remote::kept_in`) to
    /// share its credentials with its control socket and choose its protection level.
    pub fn new(addr: &str, cache_dir: &Path, opts: CacheOptions) -> Result<Arc<Self>, CacheError> {
        Ok(over_http(addr, cache_dir, opts)?.0)
    }
}

impl Remote {
    /// The remote of a client whose cache is in `cache_dir`, with its identity kept there:
    /// a restarted mount is the same client to the server, and its locks stay its own.
    /// It holds no credentials yet, at the integrity level (`with_credentials`,
    /// `with_protection`). Fails only if the cache directory cannot be made.
    pub fn kept_in(addr: &str, cache_dir: &Path) -> std::io::Result<Remote> {
        dfs_common::private_files::create_dir_all(cache_dir)?;
        let identity = Identity::kept_in(cache_dir.join("client.id"));
        Ok(Remote::for_client(addr, identity))
    }
}

/// A manager over HTTP, and its remote (for what goes past the cache: transactions).
pub(crate) fn over_http(
    addr: &str,
    cache_dir: &Path,
    opts: CacheOptions,
) -> Result<(Arc<CacheManager>, Remote), CacheError> {
    let remote = Remote::kept_in(addr, cache_dir)?;
    let mgr = CacheManager::with_server(Arc::new(remote.clone()), cache_dir, opts)?;
    Ok((mgr, remote))
}
