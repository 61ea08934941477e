//! `dfs-server init` (creating a realm) and turning the realm on at start.

use super::{InitOptions, Kdc};
use crate::auth::Security;
use crate::services::Services;
use clap::Parser;
use dfs_common::auth;
use std::io::{BufRead, Write};
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

/// Reads a password: the first line of stdin, or a prompt on the terminal without echo.
pub fn read_password(prompt: &str, from_stdin: bool) -> Result<String, String> {
    let mut line = String::new();
    if from_stdin {
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
    } else {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        // SAFETY: termios calls on fd 0 with a properly sized struct.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            let tty = libc::tcgetattr(0, &mut t) == 0;
            let old = t;
            if tty {
                t.c_lflag &= !libc::ECHO;
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
            let r = std::io::stdin().lock().read_line(&mut line);
            if tty {
                libc::tcsetattr(0, libc::TCSANOW, &old);
                eprintln!();
            }
            r.map_err(|e| e.to_string())?;
        }
    }
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err("empty password".into());
    }
    Ok(pw)
}

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

/// Opens the realm of `data_dir`, if any, and makes `svc` require tickets.
pub fn enable_realm(svc: &Arc<Services>, data_dir: &Path) -> Result<(), String> {
    match Kdc::open(data_dir)? {
        None => log::info!(
            "no realm in {}: open cell, requests are not authenticated",
            data_dir.display()
        ),
        Some(kdc) => {
            log::info!(
                "realm {}: KDC on, tickets required (lifetime {} s, skew {} s)",
                kdc.conf.realm,
                kdc.conf.lifetime_secs,
                kdc.conf.skew_secs
            );
            let _ = svc.security.set(Arc::new(Security::new(kdc)));
        }
    }
    Ok(())
}
