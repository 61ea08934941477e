//! `dfs-server init` (creating a realm) and turning the realm on at start.

use super::{InitOptions, Kdc};
use crate::auth::{AnonymousAccess, ReplayCache, Security};
use clap::Parser;
use dfs_common::auth;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Creates a realm in a data dir: its keys (files 0600 under DIR/realm/), its settings and
/// an admin principal. Refuses to overwrite an existing realm. From then on the server
/// started on DIR requires tickets (see `dfs login`).
#[derive(Parser, Debug)]
#[command(name = "dfs-server init")]
struct InitArgs {
    /// The realm's name, e.g. EXAMPLE.ORG.
    #[arg(long)]
    realm: String,
    /// The server's data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Name of the admin principal.
    #[arg(long, default_value = "admin")]
    admin: String,
    /// uid and gid the admin principal acts as on files.
    #[arg(long, default_value_t = 0)]
    admin_uid: u32,
    #[arg(long, default_value_t = 0)]
    admin_gid: u32,
    /// Read the admin's password from the first line of stdin instead of a prompt.
    #[arg(long)]
    password_stdin: bool,
    /// PBKDF2-HMAC-SHA256 iterations for password keys.
    #[arg(long, default_value_t = auth::DEFAULT_ITERATIONS)]
    iterations: u32,
    /// Ticket lifetime, seconds.
    #[arg(long, default_value_t = auth::DEFAULT_LIFETIME_SECS)]
    ticket_lifetime: i64,
    /// Largest accepted clock skew, seconds (also the replay-cache window).
    #[arg(long, default_value_t = auth::DEFAULT_SKEW_SECS)]
    max_skew: i64,
}

pub use dfs_common::password::read_password;

pub fn init_main() -> ExitCode {
    let args = InitArgs::parse_from(std::env::args().skip(1));
    let result = (|| {
        let password = read_password(
            &format!("password for {}@{}: ", args.admin, args.realm),
            args.password_stdin,
        )?;
        std::fs::create_dir_all(&args.data_dir)
            .map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
        Kdc::init(
            &args.data_dir,
            &InitOptions {
                realm: args.realm.clone(),
                admin: args.admin.clone(),
                password,
                iterations: args.iterations,
                lifetime_secs: args.ticket_lifetime,
                skew_secs: args.max_skew,
                admin_uid: args.admin_uid,
                admin_gid: args.admin_gid,
            },
        )
    })();
    match result {
        Ok(()) => {
            println!(
                "realm {} created in {}; admin principal {} (log in with `dfs login {}`)",
                args.realm,
                super::realm_dir(&args.data_dir).display(),
                args.admin,
                args.admin
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dfs-server init: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How often the replay cache is flushed to the disk (see `crate::auth::replay`).
const REPLAY_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the realm of `data_dir`, if any: the security a node that requires tickets
/// holds (`Services::security`); callers without one get what `anonymous` admits. Starts
/// the replay cache's flusher, which ends when the security is dropped (call inside the
/// runtime).
pub fn open_realm(
    data_dir: &Path,
    anonymous: AnonymousAccess,
) -> Result<Option<Arc<Security>>, String> {
    let Some(kdc) = Kdc::open(data_dir)? else {
        log::info!(
            "no realm in {}: open cell, requests are not authenticated",
            data_dir.display()
        );
        if anonymous != AnonymousAccess::None {
            log::info!("--anonymous {anonymous} has no effect in an open cell");
        }
        return Ok(None);
    };
    let dir = super::realm_dir(data_dir);
    let replay = ReplayCache::open(&dir, Kdc::now(), kdc.conf.skew_secs)
        .map_err(|e| format!("cannot open the replay cache in {}: {e}", dir.display()))?;
    log::info!(
        "realm {}: KDC on, tickets required (lifetime {} s, skew {} s); {} authenticators \
         of the last run still refused; anonymous callers get {}",
        kdc.conf.realm,
        kdc.conf.lifetime_secs,
        kdc.conf.skew_secs,
        replay.len(),
        match anonymous {
            AnonymousAccess::None => "nothing (--anonymous read|write to allow)",
            AnonymousAccess::Read => "read access (--anonymous read)",
            AnonymousAccess::Write => "what the modes allow (--anonymous write)",
        }
    );
    let security = Arc::new(Security {
        kdc,
        replay,
        anonymous,
    });
    let flushed = Arc::downgrade(&security);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REPLAY_FLUSH_EVERY);
        loop {
            tick.tick().await;
            let Some(security) = flushed.upgrade() else {
                return;
            };
            let flush = tokio::task::spawn_blocking(move || security.replay.flush()).await;
            if let Ok(Err(e)) = flush {
                log::warn!("cannot flush the replay cache to the disk: {e}");
            }
        }
    });
    Ok(Some(security))
}
