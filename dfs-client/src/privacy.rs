//! The client's side of the privacy protection level (format: `dfs_common::privacy`).
//!
//! A mount runs at one protection level (`dfs-mount --protection integrity|privacy`): at
//! privacy every signed request asks for privacy (`x-dfs-protection: privacy`, covered by
//! the authenticator), its body is sealed with the session key as it streams out, and the
//! answer's body is opened as it streams in. Unsigned (anonymous) requests, and every
//! request in an open cell, stay as they are.
//!
//! Owns: the mount's level and the body adapters. Must not sign (see `crate::auth`).

use std::sync::atomic::{AtomicBool, Ordering};

static PRIVACY: AtomicBool = AtomicBool::new(false);

/// Sets this process's protection level.
pub fn set_privacy(on: bool) {
    PRIVACY.store(on, Ordering::Relaxed);
}

/// Whether signed requests of this process ask for privacy.
pub fn enabled() -> bool {
    PRIVACY.load(Ordering::Relaxed)
}

pub use dfs_common::sealed_body::{opening, sealing};
