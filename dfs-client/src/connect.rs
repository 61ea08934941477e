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
    /// A manager for the server at `addr` (`HOST:PORT`) with its cache in `cache_dir`.
    /// Call inside a tokio runtime.
    pub fn new(addr: &str, cache_dir: &Path, opts: CacheOptions) -> Result<Arc<Self>, CacheError> {
        Ok(over_http(addr, cache_dir, opts)?.0)
    }
}

/// A manager over HTTP, and its remote (for what goes past the cache: transactions).
pub(crate) fn over_http(
    addr: &str,
    cache_dir: &Path,
    opts: CacheOptions,
) -> Result<(Arc<CacheManager>, Remote), CacheError> {
    dfs_common::private_files::create_dir_all(cache_dir)?;
    // The mount's identity is kept beside its cache: a restarted mount is the same client
    // to the server, and its locks stay its own.
    let identity = Identity::kept_in(cache_dir.join("client.id"));
    let remote = Remote::for_client(addr, identity);
    let mgr = CacheManager::with_server(Arc::new(remote.clone()), cache_dir, opts)?;
    Ok((mgr, remote))
}
