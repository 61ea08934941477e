//! Proposing a namespace command through the directory's Raft log: the command is
//! appended, committed by a quorum (each replica fsyncs its log before it acknowledges),
//! applied by every replica's state machine, and its outcome is the one the leader's state
//! machine recorded. A node that is not the leader refuses with the leader's address.
//!
//! Owns: request ids made by a node for its callers (until mounts send their own), and
//! turning openraft's write errors into `FsError`. Must not apply anything itself, or
//! touch callbacks (the caller orders promises and breaks around the commit).

use super::{Proposal, Replica, RequestId};
use crate::namespace::{NsCommand, NsOutcome};
use dfs_common::FsError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

/// Serial numbers of the requests this process makes for its callers: they start at a
/// random point, so that two nodes (or two lives of one) never make the same id, and a
/// request is deduplicated only against its own retries.
static NEXT_SERIAL: LazyLock<AtomicU64> = LazyLock::new(|| {
    let mut b = [0u8; 8];
    // A failed read of the system's randomness leaves 0: ids are then unique per life
    // of this process only.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    AtomicU64::new(u64::from_le_bytes(b) >> 1)
});

/// The request id of a command: the client's own (client id and the id of its request),
/// or, for a request that named none or an anonymous caller, one made here.
pub fn request_id(client: u64, request: u64) -> RequestId {
    if client != 0 && request != 0 {
        return RequestId {
            client,
            serial: request,
        };
    }
    RequestId {
        client,
        serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
    }
}

/// Appends `cmd` to the log and waits until it is applied here; returns its outcome (an
/// `Err` from the namespace is the command's own failure, the same on every replica).
pub async fn propose(
    replica: &Replica,
    id: RequestId,
    cmd: NsCommand,
) -> Result<NsOutcome, FsError> {
    let written = replica
        .raft
        .client_write(Proposal { id, cmd })
        .await
        .map_err(super::node::write_error)?;
    written.data.outcome
}
