//! What callers without a ticket may do in a realm (`--anonymous none|read|write`).
//!
//! `none` (the default): nothing but what a mount does on its own, without any user —
//! registering as a client, its callback channel and renewing or releasing its own locks
//! — and the health check and the KDC's exchanges, which come before any ticket. `read`: also what changes
//! nothing (lookups, attributes, listings, link targets, extended attributes, fetches,
//! testing and listing locks), as far as the modes let `nobody` read. `write`: everything
//! the modes let `nobody` do, as before this option existed. A refused request is a 401
//! (`EAUTH`), decided from its method and path before its body is read, so a refused
//! store costs the server nothing; a `/v1/dir` request under `read` is decided once its
//! body says what it does (`check_dir`). An open cell (no realm) is not affected: there
//! nothing is authenticated.
//!
//! Owns: `AnonymousAccess` and which requests each level admits. Must not check modes
//! (`super::perm` does, for anonymous callers as for everyone).

use dfs_common::proto::DirRequest;
use dfs_common::{auth, FsError};
use hyper::http::Extensions;
use hyper::Method;

/// How much callers without a ticket may do in a realm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnonymousAccess {
    #[default]
    None,
    Read,
    Write,
}

impl std::str::FromStr for AnonymousAccess {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(AnonymousAccess::None),
            "read" => Ok(AnonymousAccess::Read),
            "write" => Ok(AnonymousAccess::Write),
            _ => Err(format!("{s:?}: one of none, read, write")),
        }
    }
}

impl std::fmt::Display for AnonymousAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnonymousAccess::None => "none",
            AnonymousAccess::Read => "read",
            AnonymousAccess::Write => "write",
        })
    }
}

/// Put in an anonymous `/v1/dir` request's extensions under `read`: its body must ask
/// for a read (`check_dir`).
#[derive(Clone, Copy, Debug)]
pub struct ReadOnly;

/// What a request is, for this rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A mount's own upkeep, or what comes before a ticket.
    Upkeep,
    Read,
    Write,
    /// A directory request: read or write, as its body says.
    Dir,
}

fn kind(method: &Method, path: &str) -> Kind {
    let read_method = *method == Method::GET || *method == Method::HEAD;
    match path {
        "/v1/health" | "/v1/callbacks" => Kind::Upkeep,
        // A mount registers as a client before any user logs in (`crate::clients`).
        dfs_common::client_id::REGISTER_PATH => Kind::Upkeep,
        "/v1/locks/renew" | "/v1/locks/release" | "/v1/locks/release-many" => Kind::Upkeep,
        "/v1/locks/test" | "/v1/locks/list" => Kind::Read,
        "/v1/dir" => Kind::Dir,
        auth::KDC_ADMIN => Kind::Write,
        p if p.starts_with(auth::KDC_PREFIX) => Kind::Upkeep,
        p if p.starts_with("/v1/files/") && read_method => Kind::Read,
        _ => Kind::Write,
    }
}

fn refused(access: AnonymousAccess, method: &Method, path: &str) -> FsError {
    FsError::Unauthenticated(format!(
        "{method} {path} needs a ticket: this cell gives anonymous callers {} (dfs login)",
        match access {
            AnonymousAccess::None => "nothing",
            AnonymousAccess::Read => "read access only",
            AnonymousAccess::Write => "what the modes allow",
        }
    ))
}

/// Admits (or refuses) an anonymous request by its method and path; under `read`, marks
/// a directory request `ReadOnly` in `extensions`.
pub fn admit(
    access: AnonymousAccess,
    method: &Method,
    path: &str,
    extensions: &mut Extensions,
) -> Result<(), FsError> {
    match (access, kind(method, path)) {
        (_, Kind::Upkeep) | (AnonymousAccess::Write, _) => Ok(()),
        (AnonymousAccess::Read, Kind::Read) => Ok(()),
        (AnonymousAccess::Read, Kind::Dir) => {
            extensions.insert(ReadOnly);
            Ok(())
        }
        _ => Err(refused(access, method, path)),
    }
}

/// Whether `req` changes nothing.
fn reads_only(req: &DirRequest) -> bool {
    match req {
        DirRequest::Lookup { .. }
        | DirRequest::GetAttr { .. }
        | DirRequest::ReadDir { .. }
        | DirRequest::ReadLink { .. }
        | DirRequest::Xattrs { .. }
        | DirRequest::Validate { .. }
        | DirRequest::StatFs => true,
        DirRequest::Create { .. }
        | DirRequest::CreateOpen { .. }
        | DirRequest::Mkdir { .. }
        | DirRequest::Mknod { .. }
        | DirRequest::Symlink { .. }
        | DirRequest::Link { .. }
        | DirRequest::Unlink { .. }
        | DirRequest::Rmdir { .. }
        | DirRequest::Rename { .. }
        | DirRequest::SetAttr { .. }
        | DirRequest::SetXattr { .. }
        | DirRequest::RemoveXattr { .. } => false,
    }
}

/// Refuses a directory request that `admit` marked `ReadOnly` unless it only reads.
pub fn check_dir(extensions: &Extensions, req: &DirRequest) -> Result<(), FsError> {
    if extensions.get::<ReadOnly>().is_some() && !reads_only(req) {
        return Err(refused(AnonymousAccess::Read, &Method::POST, "/v1/dir"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(access: AnonymousAccess, method: Method, path: &str) -> Option<bool> {
        let mut ext = Extensions::new();
        admit(access, &method, path, &mut ext)
            .ok()
            .map(|()| ext.get::<ReadOnly>().is_some())
    }

    #[test]
    fn each_level_admits_what_it_says() {
        use AnonymousAccess::*;
        for access in [None, Read, Write] {
            for (m, p) in [
                (Method::GET, "/v1/health"),
                (Method::GET, "/v1/callbacks"),
                (Method::POST, "/v1/locks/renew"),
                (Method::POST, "/v1/locks/release-many"),
                (Method::POST, "/v1/kdc/as"),
                (Method::POST, "/v1/clients"),
            ] {
                assert_eq!(admitted(access, m, p), Some(false), "{access} {p}");
            }
        }
        for (m, p) in [
            (Method::POST, "/v1/dir"),
            (Method::GET, "/v1/files/5"),
            (Method::PUT, "/v1/files/5"),
            (Method::POST, "/v1/locks/acquire"),
            (Method::POST, "/v1/locks/test"),
            (Method::POST, "/v1/tx/begin"),
            (Method::POST, "/v1/kdc/admin"),
        ] {
            assert_eq!(admitted(None, m.clone(), p), Option::None, "none {m} {p}");
            assert_eq!(admitted(Write, m, p), Some(false), "write {p}");
        }
        assert_eq!(admitted(Read, Method::POST, "/v1/dir"), Some(true));
        assert_eq!(admitted(Read, Method::GET, "/v1/files/5"), Some(false));
        assert_eq!(admitted(Read, Method::POST, "/v1/locks/list"), Some(false));
        for (m, p) in [
            (Method::PUT, "/v1/files/5"),
            (Method::POST, "/v1/locks/acquire"),
            (Method::POST, "/v1/tx/commit"),
        ] {
            assert_eq!(admitted(Read, m, p), Option::None, "read {p}");
        }
    }

    #[test]
    fn read_only_directory_requests_only_read() {
        let mut ext = Extensions::new();
        let getattr = DirRequest::GetAttr { ino: 1 };
        let unlink = DirRequest::Unlink {
            parent: 1,
            name: b"x".to_vec(),
        };
        check_dir(&ext, &unlink).unwrap();
        ext.insert(ReadOnly);
        check_dir(&ext, &getattr).unwrap();
        assert!(matches!(
            check_dir(&ext, &unlink),
            Err(FsError::Unauthenticated(_))
        ));
    }
}
