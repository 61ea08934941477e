//! The one error type of dfs. Every service returns `FsError`; the HTTP edge turns it into
//! a status, a stable code (header `x-dfs-error`) and a text message, and the FUSE edge
//! turns it into an errno. Nothing else invents error codes.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("file name too long")]
    NameTooLong,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    #[error("request body too large: {0}")]
    TooLarge(String),
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("no space left on device")]
    NoSpace,
    #[error("resource busy, try again: {0}")]
    Busy(String),
    #[error("server unavailable: {0}")]
    Unavailable(String),
    #[error("content hash mismatch: {0}")]
    Corrupt(String),
    #[error("operation not supported: {0}")]
    NotSupported(String),
    #[error("stale lock: {0}")]
    Stale(String),
    #[error("i/o error: {0}")]
    Io(String),
    /// No valid credentials: no, a forged, expired or replayed ticket or authenticator.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The inode has no extended attribute of that name.
    #[error("no such extended attribute")]
    NoXattr,
    /// An extended attribute's value (or all of an inode's) is larger than the limit.
    #[error("argument list too long: {0}")]
    TooBig(String),
    /// A name or value outside the range the call allows (an extended attribute's name of
    /// more than 255 bytes; a caller's buffer too small for the value).
    #[error("result out of range: {0}")]
    OutOfRange(String),
    /// The request names a client the server has not registered (its data was lost, or the
    /// id was never issued): register again.
    #[error("unknown client: {0}")]
    UnknownClient(String),
    /// The request's client proof is of an earlier epoch of the server (it restarted):
    /// take the epoch from the answer's `x-dfs-epoch` and send again.
    #[error("stale server epoch: {0}")]
    StaleEpoch(String),
    /// This node holds a replica of the directory but does not lead it (or cannot tell
    /// that it still does): send the request to the leader, whose `IP:PORT` this is, or to
    /// another directory node when it is empty (an election is under way).
    #[error("not the directory's leader (leader: {0:?})")]
    NotLeader(String),
}

impl FsError {
    /// The errno a FUSE reply carries for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::PermissionDenied(_) => libc::EACCES,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::TooLarge(_) => libc::EFBIG,
            FsError::BadRequest(_) => libc::EINVAL,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Busy(_) => libc::EAGAIN,
            FsError::Unavailable(_) => libc::EIO,
            FsError::Corrupt(_) => libc::EIO,
            FsError::NotSupported(_) => libc::EOPNOTSUPP,
            FsError::Stale(_) => libc::ESTALE,
            FsError::Io(_) => libc::EIO,
            FsError::Unauthenticated(_) => libc::EACCES,
            FsError::NoXattr => libc::ENODATA,
            FsError::TooBig(_) => libc::E2BIG,
            FsError::OutOfRange(_) => libc::ERANGE,
            FsError::UnknownClient(_) => libc::EIO,
            FsError::StaleEpoch(_) => libc::EAGAIN,
            FsError::NotLeader(_) => libc::EIO,
        }
    }

    /// The HTTP status the server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            FsError::NotFound => 404,
            FsError::Exists | FsError::NotEmpty => 409,
            FsError::NotDir | FsError::IsDir | FsError::NameTooLong | FsError::Invalid(_) => 422,
            FsError::PermissionDenied(_) | FsError::NotPermitted(_) => 403,
            FsError::TooLarge(_) => 413,
            FsError::BadRequest(_) => 400,
            FsError::NoSpace => 507,
            FsError::Busy(_) => 423,
            FsError::Unavailable(_) => 503,
            FsError::Corrupt(_) => 422,
            FsError::NotSupported(_) => 501,
            FsError::Stale(_) => 409,
            FsError::Io(_) => 500,
            FsError::Unauthenticated(_) => 401,
            FsError::NoXattr => 404,
            FsError::TooBig(_) => 413,
            FsError::OutOfRange(_) => 422,
            FsError::UnknownClient(_) | FsError::StaleEpoch(_) => 401,
            // Misdirected Request: the request went to a node that cannot answer it.
            FsError::NotLeader(_) => 421,
        }
    }

    /// Stable machine-readable code, sent in the `x-dfs-error` header.
    pub fn code(&self) -> &'static str {
        match self {
            FsError::NotFound => "ENOENT",
            FsError::Exists => "EEXIST",
            FsError::NotEmpty => "ENOTEMPTY",
            FsError::NotDir => "ENOTDIR",
            FsError::IsDir => "EISDIR",
            FsError::NameTooLong => "ENAMETOOLONG",
            FsError::Invalid(_) => "EINVAL",
            FsError::PermissionDenied(_) => "EACCES",
            FsError::NotPermitted(_) => "EPERM",
            FsError::TooLarge(_) => "EFBIG",
            FsError::BadRequest(_) => "EBADMSG",
            FsError::NoSpace => "ENOSPC",
            FsError::Busy(_) => "EAGAIN",
            FsError::Unavailable(_) => "EUNAVAIL",
            FsError::Corrupt(_) => "ECORRUPT",
            FsError::NotSupported(_) => "EOPNOTSUPP",
            FsError::Stale(_) => "ESTALE",
            FsError::Io(_) => "EIO",
            FsError::Unauthenticated(_) => "EAUTH",
            FsError::NoXattr => "ENODATA",
            FsError::TooBig(_) => "E2BIG",
            FsError::OutOfRange(_) => "ERANGE",
            FsError::UnknownClient(_) => "ECLIENT",
            FsError::StaleEpoch(_) => "EEPOCH",
            FsError::NotLeader(_) => "ENOTLEADER",
        }
    }

    /// The detail text carried by variants that have one.
    pub fn detail(&self) -> String {
        match self {
            FsError::Invalid(s)
            | FsError::PermissionDenied(s)
            | FsError::NotPermitted(s)
            | FsError::TooLarge(s)
            | FsError::BadRequest(s)
            | FsError::Busy(s)
            | FsError::Unavailable(s)
            | FsError::Corrupt(s)
            | FsError::NotSupported(s)
            | FsError::Stale(s)
            | FsError::Io(s)
            | FsError::Unauthenticated(s)
            | FsError::TooBig(s)
            | FsError::OutOfRange(s)
            | FsError::UnknownClient(s)
            | FsError::StaleEpoch(s)
            | FsError::NotLeader(s) => s.clone(),
            _ => String::new(),
        }
    }

    /// Rebuilds the error a server sent from its `x-dfs-error` code and its detail
    /// (header `x-dfs-detail`, percent-free UTF-8). Unknown codes become `Io`.
    pub fn from_code(code: &str, detail: String) -> FsError {
        match code {
            "ENOENT" => FsError::NotFound,
            "EEXIST" => FsError::Exists,
            "ENOTEMPTY" => FsError::NotEmpty,
            "ENOTDIR" => FsError::NotDir,
            "EISDIR" => FsError::IsDir,
            "ENAMETOOLONG" => FsError::NameTooLong,
            "EINVAL" => FsError::Invalid(detail),
            "EACCES" => FsError::PermissionDenied(detail),
            "EPERM" => FsError::NotPermitted(detail),
            "EFBIG" => FsError::TooLarge(detail),
            "EBADMSG" => FsError::BadRequest(detail),
            "ENOSPC" => FsError::NoSpace,
            "EAGAIN" => FsError::Busy(detail),
            "EUNAVAIL" => FsError::Unavailable(detail),
            "ECORRUPT" => FsError::Corrupt(detail),
            "EOPNOTSUPP" => FsError::NotSupported(detail),
            "ESTALE" => FsError::Stale(detail),
            "EIO" => FsError::Io(detail),
            "EAUTH" => FsError::Unauthenticated(detail),
            "ENODATA" => FsError::NoXattr,
            "E2BIG" => FsError::TooBig(detail),
            "ERANGE" => FsError::OutOfRange(detail),
            "ECLIENT" => FsError::UnknownClient(detail),
            "EEPOCH" => FsError::StaleEpoch(detail),
            "ENOTLEADER" => FsError::NotLeader(detail),
            _ => FsError::Io(format!("{code}: {detail}")),
        }
    }

    /// Maps a local I/O error (disk, socket) to the error users see. A local file that is
    /// missing is an I/O failure of this party, never `NotFound`: that one means the file
    /// the caller named does not exist, and acting on it (a client dropping changes to a
    /// file it believes deleted) must not follow from a local accident.
    pub fn from_io(e: &std::io::Error) -> FsError {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => FsError::NoSpace,
            Some(libc::ENOENT) => FsError::Io(format!("local file missing: {e}")),
            _ => FsError::Io(e.to_string()),
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        FsError::from_io(&e)
    }
}

pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        let all = [
            FsError::NotFound,
            FsError::Exists,
            FsError::NotEmpty,
            FsError::NotDir,
            FsError::IsDir,
            FsError::NameTooLong,
            FsError::Invalid("x".into()),
            FsError::PermissionDenied("x".into()),
            FsError::NotPermitted("x".into()),
            FsError::TooLarge("x".into()),
            FsError::BadRequest("x".into()),
            FsError::NoSpace,
            FsError::Busy("x".into()),
            FsError::Unavailable("x".into()),
            FsError::Corrupt("x".into()),
            FsError::NotSupported("x".into()),
            FsError::Stale("x".into()),
            FsError::Io("x".into()),
            FsError::Unauthenticated("x".into()),
            FsError::NoXattr,
            FsError::TooBig("x".into()),
            FsError::OutOfRange("x".into()),
            FsError::UnknownClient("x".into()),
            FsError::StaleEpoch("x".into()),
            FsError::NotLeader("127.0.0.1:7070".into()),
        ];
        for e in all {
            assert_eq!(FsError::from_code(e.code(), e.detail()), e);
        }
    }

    #[test]
    fn a_local_missing_file_is_an_io_error_not_a_deleted_file() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert!(matches!(FsError::from(e), FsError::Io(_)));
    }

    #[test]
    fn malformed_and_oversized_map_to_400_and_413() {
        assert_eq!(FsError::BadRequest(String::new()).http_status(), 400);
        assert_eq!(FsError::TooLarge(String::new()).http_status(), 413);
    }
}
