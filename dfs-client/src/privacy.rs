//! The client's side of the privacy protection level (format: `dfs_common::privacy`).
//!
//! A client runs at one protection level, chosen when its HTTP port is built
//! (`remote::Remote::with_protection`; a mount's `dfs-mount --protection
//! integrity|privacy`): at privacy every signed request asks for privacy
//! (`x-dfs-protection: privacy`, covered by the authenticator), its body is sealed with the
//! session key as it streams out, and the answer's body is opened as it streams in.
//! Unsigned (anonymous) requests, and every request in an open cell, stay as they are.
//!
//! Owns: the levels (`Protection`) and the body adapters. Must not sign (see
//! `crate::auth`) or keep a level of its own (the port that uses it does).

/// How much a client's signed requests protect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protection {
    /// Signed requests and answers are authenticated and checked, not encrypted.
    #[default]
    Integrity,
    /// Their bodies are encrypted with the session key too.
    Privacy,
}

pub use dfs_common::sealed_body::{opening, sealing};
