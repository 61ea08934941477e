//! dfs-common: what the server and the client must agree on, and (but for one read helper) no I/O.
//!
//! Owns: ids and attributes (`types`), the one POSIX-shaped error type (`error`), the wire
//! messages of every `/v1` resource (`proto`, and `locks` for the lock service), the
//! bincode codec and frame format (`codec`), content hashing of blobs (`hash`), and the
//! rules of POSIX ACLs in their xattr form (`acl`). It must not own policy: no sockets, no
//! clocks beyond `Timestamp::now`, and no file I/O beyond `fileread::read_fresh` (reading a
//! range into an unzeroed buffer, which both data paths need) and `private_files` (the one
//! rule both daemons keep for their files at rest: 0700 directories, 0600 files). What
//! every binary shares for operators: log set-up (`logging`), lock-free metric types
//! (`metrics`), background tasks whose panics are logged (`tasks`) and man pages and completions from the command lines (`cli_docs`), and the
//! one reader of `/proc/self/mountinfo` (`mountinfo`), which both commands and the tests use.

pub mod acl;
pub mod auth;
pub mod cli_docs;
pub mod client_id;
pub mod cluster;
pub mod codec;
pub mod error;
pub mod fileread;
pub mod hash;
pub mod locks;
pub mod logging;
pub mod metrics;
pub mod mountinfo;
pub mod password;
pub mod privacy;
pub mod private_files;
pub mod proto;
pub mod sealed_body;
pub mod tasks;
pub mod tx;
pub mod types;

pub use error::FsError;
pub use types::{Attr, BlobId, FileKind, Ino, Timestamp, ROOT_INO};
