//! Who is calling, as the authentication hook established it (`super::authenticate`):
//! the client (mount), and the identity permission checks judge (`super::perm`).
//!
//! Owns: `Caller` and its constructors. Must not check anything.

use super::perm::rules::NO_GROUP;
use crate::callbacks::ClientId;
use dfs_common::auth::Identity;

/// Who is calling, as the authentication layer established it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The client (mount) id; 0 when anonymous.
    pub client: ClientId,
    /// Who acts, for permission checks (`crate::auth::perm`; constructors there).
    pub uid: u32,
    pub gid: u32,
    pub groups: [u32; 8],
    pub admin: bool,
    /// False in an open cell (no realm): nothing is checked.
    pub enforce: bool,
    /// The id its client gave the request (`HDR_REQUEST_ID`; 0: none). A client sends a
    /// retry of a mutation with the same id, and the replicated directory applies one
    /// (client, id) once.
    pub request: u64,
}

impl Caller {
    /// A caller of an open cell: not checked.
    pub fn open(client: u64) -> Caller {
        Caller {
            client,
            uid: 0,
            gid: 0,
            groups: [NO_GROUP; 8],
            admin: true,
            enforce: false,
            request: 0,
        }
    }

    /// A caller without a ticket in a realm: `nobody`, who gets what others get.
    pub fn anonymous(client: u64) -> Caller {
        Caller {
            client,
            uid: super::NOBODY,
            gid: super::NOBODY,
            groups: [NO_GROUP; 8],
            admin: false,
            enforce: true,
            request: 0,
        }
    }

    pub fn of(client: u64, id: &Identity) -> Caller {
        let mut groups = [NO_GROUP; 8];
        for (slot, g) in groups.iter_mut().zip(id.groups.iter()) {
            *slot = *g;
        }
        Caller {
            client,
            uid: id.uid,
            gid: id.gid,
            groups,
            admin: id.admin,
            enforce: true,
            request: 0,
        }
    }

    /// This caller, making the request its client named `request`.
    pub fn with_request(self, request: u64) -> Caller {
        Caller { request, ..self }
    }

    pub fn in_group(&self, gid: u32) -> bool {
        gid == self.gid || (gid != NO_GROUP && self.groups.contains(&gid))
    }
}
