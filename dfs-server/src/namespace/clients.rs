//! The registered clients (mounts) and their keys (`dfs_common::client_id`), kept in the
//! namespace database so that a restart keeps every mount's identity, and with it the locks
//! it holds. One row per registration: the id the server issued and the key both sides
//! derived. (When the namespace is replicated, registrations go through its log like every
//! other change.)
//!
//! Owns: the `clients` table. Must not check requests (`crate::clients` does).

use super::store::{begin, db_err};
use super::Namespace;
use dfs_common::FsError;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// client id -> its 32-byte key.
pub(super) const CLIENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("clients");

impl Namespace {
    /// Records a new client, durably; `Exists` if the id is taken.
    pub fn register_client(&self, client: u64, key: &[u8; 32]) -> Result<(), FsError> {
        let txn = begin(&self.db)?;
        {
            let mut t = txn.open_table(CLIENTS).map_err(db_err)?;
            if t.get(client).map_err(db_err)?.is_some() {
                return Err(FsError::Exists);
            }
            t.insert(client, key.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// Every registered client with its key.
    pub fn client_keys(&self) -> Result<Vec<(u64, [u8; 32])>, FsError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = match tx.open_table(CLIENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            if let Ok(key) = <[u8; 32]>::try_from(v.value()) {
                out.push((k.value(), key));
            }
        }
        Ok(out)
    }
}
