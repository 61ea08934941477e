//! openraft's own storage test suite (`openraft::testing::Suite`) over the log store and
//! the namespace state machine: the storage rules openraft relies on, checked as its
//! authors check them.

use super::log_store::LogStore;
use super::state_machine::NsStateMachine;
use super::{StorageError, TypeConfig};
use crate::namespace::Namespace;
use openraft::testing::{StoreBuilder, Suite};
use std::sync::Arc;

struct Fresh;

impl StoreBuilder<TypeConfig, LogStore, NsStateMachine, tempfile::TempDir> for Fresh {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, NsStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ns =
            Namespace::open_replicated(&dir.path().join("meta.redb"), 0o755).expect("namespace");
        let log = LogStore::open(&dir.path().join("raft-log.redb"))?;
        let sm = NsStateMachine::open(Arc::new(ns), &dir.path().join("snapshots"))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Fresh).expect("openraft storage suite");
}
