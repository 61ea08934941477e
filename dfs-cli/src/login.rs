//! `dfs login | logout | whoami | user …`: the user's side of the realm.
//!
//! `dfs login` derives the user's key from the password locally (the password is never
//! sent), runs the AS and TGS exchanges, writes the credential cache (0600, `DFS_CCACHE` or
//! `/tmp/dfs_cc_<uid>`) and hands the file-service credentials to every running dfs mount
//! over its control socket (the mount files them under the caller's uid).

use clap::Subcommand;
use dfs_client::auth::CredentialStore;
use dfs_client::control::{ask, ControlReply, ControlRequest};
use dfs_client::port::Who;
use dfs_client::remote::Remote;
use dfs_common::auth::{
    self, AdminReply, AdminRequest, AsReq, Credentials, KdcRep, Key, PaTimestamp, TgsReq,
};
use dfs_common::{codec, Timestamp};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Log in to the realm: get a ticket-granting ticket into your credential cache and
    /// give the running dfs mounts your credentials (they act for your uid from then on).
    Login {
        /// Principal to log in as (default: $USER).
        principal: Option<String>,
        /// Read the password from the first line of stdin instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
        /// Server (HOST:PORT); default $DFS_SERVER, else the server of a running mount.
        #[arg(long)]
        server: Option<String>,
    },
    /// Forget your credentials: the credential cache and the mounts' copies.
    Logout,
    /// Show who you are logged in as, the realm and when the ticket expires.
    Whoami,
    /// User administration (admins only; `passwd` of yourself for everyone).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a principal that acts as UID/GID on files.
    Add {
        principal: String,
        #[arg(long)]
        uid: u32,
        #[arg(long)]
        gid: Option<u32>,
        /// Supplementary groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<u32>,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    Del {
        principal: String,
    },
    /// Change a password (your own without an argument).
    Passwd {
        principal: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    List,
}

/// The credential cache.
#[derive(Serialize, Deserialize)]
pub struct CCache {
    pub server: String,
    pub tgt: Credentials,
    pub service: Credentials,
}

fn my_uid() -> u32 {
    // SAFETY: getuid has no failure mode.
    unsafe { libc::getuid() }
}

pub fn ccache_path() -> PathBuf {
    std::env::var_os("DFS_CCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/dfs_cc_{}", my_uid())))
}

/// Mount points of every dfs mount on this host.
pub fn dfs_mounts() -> Vec<PathBuf> {
    let mounts = dfs_common::mountinfo::read().unwrap_or_default();
    dfs_common::mountinfo::dfs_mounts(&mounts)
        .into_iter()
        .map(|m| m.mount_point.clone())
        .collect()
}

async fn find_server(explicit: Option<String>) -> Result<String, String> {
    if let Some(s) = explicit.or_else(|| std::env::var("DFS_SERVER").ok()) {
        return Ok(s);
    }
    for m in dfs_mounts() {
        if let Ok(ControlReply::Status(s)) = ask(&m, &ControlRequest::Status).await {
            return Ok(s.server);
        }
    }
    Err("no server: pass --server HOST:PORT or set DFS_SERVER (no dfs mount is running)".into())
}

fn write_ccache(c: &CCache) -> Result<PathBuf, String> {
    let path = ccache_path();
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(&codec::encode(c))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

pub fn read_ccache() -> Result<CCache, String> {
    let path = ccache_path();
    let b = std::fs::read(&path)
        .map_err(|_| format!("not logged in (no credential cache at {})", path.display()))?;
    codec::decode(&b).map_err(|e| format!("{}: {e}", path.display()))
}

/// Files the tickets of whoever runs this command (`dfs login`'s credential cache), if
/// they are for `server`, in `store` under their uid, so that the requests the command
/// makes for them (`Who::process()`) are signed as theirs; they stay anonymous otherwise.
/// In a realm the server checks what a command does (a transaction's every operation)
/// against the rights of the principal that signed it.
pub fn file_own_tickets(server: &str, store: &CredentialStore) {
    if let Ok(cc) = read_ccache() {
        if cc.server == server {
            store.set(my_uid(), cc.service);
        }
    }
}

/// AS then TGS: credentials for the file service.
pub async fn get_tickets(server: &str, principal: &str, password: &str) -> Result<CCache, String> {
    let remote = Remote::new(server);
    let info = remote.realm_info().await?;
    let key = Key::from_password(password.as_bytes(), &info.realm, principal, info.iterations);
    let now = Timestamp::now().secs;
    let nonce = auth::random_u64();
    let req = AsReq {
        principal: principal.to_string(),
        padata: auth::seal_padata(
            &key,
            &PaTimestamp {
                time: now,
                nonce: auth::random_u64(),
            },
        ),
        nonce,
    };
    let rep: KdcRep = remote
        .call(&Who::ANONYMOUS, auth::KDC_AS, &req, Duration::ZERO)
        .await
        .map_err(|e| e.detail())?;
    let tgt = Credentials::from_rep(&rep, &key, true, nonce).map_err(|e| e.detail())?;
    let nonce = auth::random_u64();
    let t = Timestamp::now();
    let a = auth::Authenticator {
        principal: principal.to_string(),
        time: t.secs,
        nanos: t.nanos,
        nonce: auth::random_u64(),
        seq: 0,
        digest: [0; 32],
    };
    let req = TgsReq {
        tgt: tgt.ticket.clone(),
        authenticator: auth::seal_tgs_auth(&tgt.session_key, &a),
        service: auth::FILE_SERVICE.into(),
        nonce,
    };
    let rep: KdcRep = remote
        .call(&Who::ANONYMOUS, auth::KDC_TGS, &req, Duration::ZERO)
        .await
        .map_err(|e| format!("ticket for the file service: {e}"))?;
    let service =
        Credentials::from_rep(&rep, &tgt.session_key, false, nonce).map_err(|e| e.detail())?;
    Ok(CCache {
        server: server.to_string(),
        tgt,
        service,
    })
}

async fn admin(req: AdminRequest) -> Result<AdminReply, String> {
    let cc = read_ccache()?;
    let remote = Remote::new(&cc.server);
    remote.credentials().set(my_uid(), cc.service.clone());
    let sealed = auth::seal_admin(&cc.service.session_key, &req);
    let reply: Vec<u8> = remote
        .call(&Who::process(), auth::KDC_ADMIN, &sealed, Duration::ZERO)
        .await
        .map_err(|e| e.to_string())?;
    auth::open_admin(&cc.service.session_key, &reply).map_err(|e| e.to_string())
}

async fn new_key(principal: &str, from_stdin: bool) -> Result<Key, String> {
    let cc = read_ccache()?;
    let info = Remote::new(&cc.server).realm_info().await?;
    let pw = dfs_common::password::read_password(
        &format!("new password for {principal}: "),
        from_stdin,
    )?;
    Ok(Key::from_password(
        pw.as_bytes(),
        &info.realm,
        principal,
        info.iterations,
    ))
}

/// `dfs whoami --json`.
#[derive(Serialize)]
struct WhoamiView<'a> {
    principal: &'a str,
    realm: &'a str,
    uid: u32,
    gid: u32,
    admin: bool,
    /// Unix seconds; `expires_local` is the same instant in local time.
    expires: i64,
    expires_local: String,
    expired: bool,
}

/// `run`, with what it shows as JSON when `json`.
pub async fn run(cmd: AuthCommand, json: bool) -> Result<(), String> {
    match cmd {
        AuthCommand::Login {
            principal,
            password_stdin,
            server,
        } => {
            let principal = principal
                .or_else(|| std::env::var("USER").ok())
                .ok_or("name a principal: dfs login PRINCIPAL")?;
            let server = find_server(server).await?;
            let pw = dfs_common::password::read_password(
                &format!("password for {principal}: "),
                password_stdin,
            )?;
            let cc = get_tickets(&server, &principal, &pw)
                .await
                .map_err(|e| format!("login failed: {e}"))?;
            let path = write_ccache(&cc)?;
            let mut handed = 0;
            // Only mounts of this server: a mount of an open cell must not sign.
            for m in dfs_mounts() {
                match ask(&m, &ControlRequest::Status).await {
                    Ok(ControlReply::Status(s)) if s.server == server => {}
                    _ => continue,
                }
                match ask(&m, &ControlRequest::Login(cc.service.clone())).await {
                    Ok(ControlReply::Done) => handed += 1,
                    Ok(other) => eprintln!("dfs login: {}: {other:?}", m.display()),
                    Err(e) => eprintln!("dfs login: {}: {e}", m.display()),
                }
            }
            println!(
                "logged in as {}@{} (uid {}) until {}; credential cache {}; {handed} mount(s) now act for you",
                cc.tgt.identity.principal,
                cc.tgt.identity.realm,
                cc.tgt.identity.uid,
                crate::show::when(cc.tgt.expires, Timestamp::now().secs),
                path.display()
            );
            Ok(())
        }
        AuthCommand::Logout => {
            let _ = std::fs::remove_file(ccache_path());
            for m in dfs_mounts() {
                let _ = ask(&m, &ControlRequest::Logout).await;
            }
            println!("logged out");
            Ok(())
        }
        AuthCommand::Whoami => {
            let cc = read_ccache()?;
            let now = Timestamp::now().secs;
            let (id, expires) = (&cc.tgt.identity, cc.tgt.expires);
            if json {
                return crate::show::json(&WhoamiView {
                    principal: &id.principal,
                    realm: &id.realm,
                    uid: id.uid,
                    gid: id.gid,
                    admin: id.admin,
                    expires,
                    expires_local: crate::show::local_date(expires),
                    expired: expires <= now,
                });
            }
            println!(
                "principal: {}\nrealm: {}\nuid: {} gid: {}{}\nexpires: {}{}",
                id.principal,
                id.realm,
                id.uid,
                id.gid,
                if id.admin { " (admin)" } else { "" },
                crate::show::when(expires, now),
                if expires <= now {
                    ": EXPIRED, run dfs login"
                } else {
                    ""
                }
            );
            Ok(())
        }
        AuthCommand::User(u) => {
            let req = match u {
                UserCommand::Add {
                    principal,
                    uid,
                    gid,
                    groups,
                    admin,
                    password_stdin,
                } => AdminRequest::Add {
                    key: new_key(&principal, password_stdin).await?,
                    principal,
                    uid,
                    gid: gid.unwrap_or(uid),
                    groups,
                    admin,
                },
                UserCommand::Del { principal } => AdminRequest::Del { principal },
                UserCommand::Passwd {
                    principal,
                    password_stdin,
                } => {
                    let principal = match principal {
                        Some(p) => p,
                        None => read_ccache()?.tgt.identity.principal,
                    };
                    AdminRequest::Passwd {
                        key: new_key(&principal, password_stdin).await?,
                        principal,
                    }
                }
                UserCommand::List => AdminRequest::List,
            };
            match admin(req).await? {
                AdminReply::Done => println!("done"),
                AdminReply::List(ids) => {
                    for i in ids {
                        println!(
                            "{}\tuid {}\tgid {}{}",
                            i.principal,
                            i.uid,
                            i.gid,
                            if i.admin { "\tadmin" } else { "" }
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
