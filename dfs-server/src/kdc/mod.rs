//! The key distribution centre of a realm: principals in redb (`DATA/realm/principals.redb`),
//! the realm's service keys (`DATA/realm/{krbtgt,dfs}.key`, 0600), the AS and TGS exchanges
//! and user administration. A data dir without `DATA/realm/` is an "open" cell: no KDC, and
//! the authentication hook stays a pass-through.
//!
//! Owns: realm set-up (`init`), principals and their long-term keys (derived from passwords
//! by the client; no password is ever stored or sent), ticket issue. Must not check file
//! permissions (see `crate::auth`).

pub mod cli;

use dfs_common::auth::{
    self, denied, AdminReply, AdminRequest, AsReq, EncKdcPart, Identity, KdcRep, Key, TgsReq,
    Ticket, TGS_SERVICE,
};
use dfs_common::{codec, FsError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const PRINCIPALS: TableDefinition<&str, &[u8]> = TableDefinition::new("principals");

/// One principal's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Principal {
    pub key: Key,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub admin: bool,
}

/// The realm's settings, `DATA/realm/realm.conf` (`key = value` lines).
#[derive(Clone, Debug)]
pub struct RealmConf {
    pub realm: String,
    pub iterations: u32,
    pub lifetime_secs: i64,
    pub skew_secs: i64,
}

pub struct Kdc {
    pub conf: RealmConf,
    tgs_key: Key,
    service_key: Key,
    db: Database,
}

fn db_err<E: std::fmt::Display>(e: E) -> FsError {
    FsError::Io(format!("principal database: {e}"))
}

pub fn realm_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("realm")
}

/// Writes `bytes` to a new file of mode 0600; refuses to replace an existing one.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read_key(path: &Path) -> Result<Key, String> {
    let b = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| format!("{} is not a 32-byte key", path.display()))?;
    Ok(Key(arr))
}

fn unix_now() -> i64 {
    dfs_common::Timestamp::now().secs
}

impl RealmConf {
    fn render(&self) -> String {
        format!(
            "realm = {}\niterations = {}\nlifetime_secs = {}\nskew_secs = {}\n",
            self.realm, self.iterations, self.lifetime_secs, self.skew_secs
        )
    }

    fn parse(text: &str) -> Result<RealmConf, String> {
        let mut c = RealmConf {
            realm: String::new(),
            iterations: auth::DEFAULT_ITERATIONS,
            lifetime_secs: auth::DEFAULT_LIFETIME_SECS,
            skew_secs: auth::DEFAULT_SKEW_SECS,
        };
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let num = |v: &str| v.parse::<i64>().map_err(|e| format!("realm.conf {k}: {e}"));
            match k {
                "realm" => c.realm = v.to_string(),
                "iterations" => c.iterations = num(v)? as u32,
                "lifetime_secs" => c.lifetime_secs = num(v)?,
                "skew_secs" => c.skew_secs = num(v)?,
                _ => {}
            }
        }
        if c.realm.is_empty() {
            return Err("realm.conf names no realm".into());
        }
        Ok(c)
    }
}

/// What `dfs-server init` sets up.
pub struct InitOptions {
    pub realm: String,
    pub admin: String,
    pub password: String,
    pub iterations: u32,
    pub lifetime_secs: i64,
    pub skew_secs: i64,
    pub admin_uid: u32,
    pub admin_gid: u32,
}

impl Kdc {
    /// Creates the realm in `data_dir`: keys (0600), settings and the admin principal.
    /// Refuses if a realm (or any of its key files) already exists.
    pub fn init(data_dir: &Path, o: &InitOptions) -> Result<(), String> {
        let dir = realm_dir(data_dir);
        if dir.join("realm.conf").exists()
            || dir.join("krbtgt.key").exists()
            || dir.join("dfs.key").exists()
        {
            return Err(format!(
                "a realm already exists in {}; refusing to overwrite its keys",
                dir.display()
            ));
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        write_secret(&dir.join("krbtgt.key"), &Key::random().0)?;
        write_secret(&dir.join("dfs.key"), &Key::random().0)?;
        let conf = RealmConf {
            realm: o.realm.clone(),
            iterations: o.iterations,
            lifetime_secs: o.lifetime_secs,
            skew_secs: o.skew_secs,
        };
        let kdc = Kdc::open_parts(&dir, conf.clone())?;
        let key = Key::from_password(o.password.as_bytes(), &o.realm, &o.admin, o.iterations);
        kdc.put(
            &o.admin,
            &Principal {
                key,
                uid: o.admin_uid,
                gid: o.admin_gid,
                groups: vec![],
                admin: true,
            },
            true,
        )
        .map_err(|e| e.to_string())?;
        drop(kdc);
        write_secret(&dir.join("realm.conf"), conf.render().as_bytes())?;
        Ok(())
    }

    /// Opens the realm of `data_dir`, or `None` for an open cell.
    pub fn open(data_dir: &Path) -> Result<Option<Kdc>, String> {
        let dir = realm_dir(data_dir);
        let conf_path = dir.join("realm.conf");
        if !conf_path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&conf_path)
            .map_err(|e| format!("{}: {e}", conf_path.display()))?;
        Kdc::open_parts(&dir, RealmConf::parse(&text)?).map(Some)
    }

    fn open_parts(dir: &Path, conf: RealmConf) -> Result<Kdc, String> {
        let tgs_key = read_key(&dir.join("krbtgt.key"))?;
        let service_key = read_key(&dir.join("dfs.key"))?;
        let path = dir.join("principals.redb");
        let db = Database::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(PRINCIPALS).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        Ok(Kdc {
            conf,
            tgs_key,
            service_key,
            db,
        })
    }

    pub fn service_key(&self) -> &Key {
        &self.service_key
    }

    pub fn get(&self, name: &str) -> Result<Option<Principal>, FsError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(PRINCIPALS).map_err(db_err)?;
        match t.get(name).map_err(db_err)? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(v.value())?)),
        }
    }

    fn put(&self, name: &str, p: &Principal, create: bool) -> Result<(), FsError> {
        valid_name(name)?;
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(PRINCIPALS).map_err(db_err)?;
            let exists = t.get(name).map_err(db_err)?.is_some();
            if create && exists {
                return Err(FsError::Exists);
            }
            if !create && !exists {
                return Err(FsError::NotFound);
            }
            t.insert(name, codec::encode(p).as_slice())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    fn identity(&self, name: &str, p: &Principal) -> Identity {
        Identity {
            principal: name.to_string(),
            realm: self.conf.realm.clone(),
            uid: p.uid,
            gid: p.gid,
            groups: p.groups.clone(),
            admin: p.admin,
        }
    }

    fn issue(
        &self,
        identity: Identity,
        service: &str,
        (reply_key, as_rep): (&Key, bool),
        nonce: u64,
        now: i64,
        cap: Option<i64>,
    ) -> Result<KdcRep, FsError> {
        let service_key = match service {
            TGS_SERVICE => &self.tgs_key,
            auth::FILE_SERVICE => &self.service_key,
            other => return Err(denied(format!("unknown service {other}"))),
        };
        let mut expires = now + self.conf.lifetime_secs;
        if let Some(cap) = cap {
            expires = expires.min(cap);
        }
        let session_key = Key::random();
        let ticket = Ticket {
            identity: identity.clone(),
            service: service.to_string(),
            session_key: session_key.clone(),
            issued: now,
            expires,
        };
        let part = EncKdcPart {
            session_key,
            service: service.to_string(),
            identity,
            issued: now,
            expires,
            nonce,
        };
        Ok(KdcRep {
            ticket: ticket.seal(service_key),
            enc: auth::seal_kdc_part(reply_key, as_rep, &part),
        })
    }

    /// AS exchange: checks the pre-authentication timestamp, issues a TGT.
    pub fn as_exchange(&self, req: &AsReq, now: i64) -> Result<KdcRep, FsError> {
        let fail = || {
            denied(format!(
                "login failed for {}: wrong password or unknown principal",
                req.principal
            ))
        };
        let p = self.get(&req.principal)?.ok_or_else(fail)?;
        let pa = auth::open_padata(&p.key, &req.padata).map_err(|_| fail())?;
        if (pa.time - now).abs() > self.conf.skew_secs {
            return Err(denied(
                "pre-authentication timestamp outside the clock-skew window",
            ));
        }
        let identity = self.identity(&req.principal, &p);
        self.issue(identity, TGS_SERVICE, (&p.key, true), req.nonce, now, None)
    }

    /// TGS exchange: a TGT and an authenticator for it → a ticket for `req.service`.
    pub fn tgs_exchange(
        &self,
        req: &TgsReq,
        now: i64,
        replay: &crate::auth::ReplayCache,
    ) -> Result<KdcRep, FsError> {
        let tgt = Ticket::open(
            &self.tgs_key,
            TGS_SERVICE,
            &req.tgt,
            now,
            self.conf.skew_secs,
        )?;
        let a = auth::open_tgs_auth(&tgt.session_key, &req.authenticator)?;
        if a.principal != tgt.identity.principal {
            return Err(denied("authenticator does not match the ticket"));
        }
        replay.check(&tgt.session_key, &a, now, self.conf.skew_secs)?;
        // The principal may have been deleted or changed since the TGT was issued.
        let p = self.get(&tgt.identity.principal)?.ok_or_else(|| {
            denied(format!(
                "principal {} no longer exists",
                tgt.identity.principal
            ))
        })?;
        let identity = self.identity(&tgt.identity.principal, &p);
        self.issue(
            identity,
            &req.service,
            (&tgt.session_key, false),
            req.nonce,
            now,
            Some(tgt.expires),
        )
    }

    /// User administration on behalf of `caller`.
    pub fn admin(&self, caller: &Identity, req: AdminRequest) -> Result<AdminReply, FsError> {
        let need_admin = || {
            if caller.admin {
                Ok(())
            } else {
                Err(FsError::PermissionDenied(format!(
                    "{} is not an administrator of realm {}",
                    caller.principal, self.conf.realm
                )))
            }
        };
        match req {
            AdminRequest::Add {
                principal,
                key,
                uid,
                gid,
                groups,
                admin,
            } => {
                need_admin()?;
                let p = Principal {
                    key,
                    uid,
                    gid,
                    groups,
                    admin,
                };
                self.put(&principal, &p, true)?;
                log::info!(
                    "{} added principal {principal} (uid {uid})",
                    caller.principal
                );
            }
            AdminRequest::Del { principal } => {
                need_admin()?;
                let txn = self.db.begin_write().map_err(db_err)?;
                let removed = {
                    let mut t = txn.open_table(PRINCIPALS).map_err(db_err)?;
                    let r = t.remove(principal.as_str()).map_err(db_err)?.is_some();
                    r
                };
                txn.commit().map_err(db_err)?;
                if !removed {
                    return Err(FsError::NotFound);
                }
                log::info!("{} deleted principal {principal}", caller.principal);
            }
            AdminRequest::Passwd { principal, key } => {
                if principal != caller.principal {
                    need_admin()?;
                }
                let mut p = self.get(&principal)?.ok_or(FsError::NotFound)?;
                p.key = key;
                self.put(&principal, &p, false)?;
                log::info!("{} changed the password of {principal}", caller.principal);
            }
            AdminRequest::List => {
                need_admin()?;
                let txn = self.db.begin_read().map_err(db_err)?;
                let t = txn.open_table(PRINCIPALS).map_err(db_err)?;
                let mut out = Vec::new();
                for item in t.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    let p: Principal = codec::decode(v.value())?;
                    out.push(self.identity(k.value(), &p));
                }
                return Ok(AdminReply::List(out));
            }
        }
        Ok(AdminReply::Done)
    }

    pub fn now() -> i64 {
        unix_now()
    }
}

fn valid_name(name: &str) -> Result<(), FsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(FsError::Invalid(format!("bad principal name {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_common::auth::{Authenticator, PaTimestamp};

    fn realm(dir: &Path) -> Kdc {
        let o = InitOptions {
            realm: "TEST".into(),
            admin: "admin".into(),
            password: "secret".into(),
            iterations: 10,
            lifetime_secs: 3600,
            skew_secs: 300,
            admin_uid: 0,
            admin_gid: 0,
        };
        Kdc::init(dir, &o).unwrap();
        assert!(Kdc::init(dir, &o).unwrap_err().contains("refusing"));
        Kdc::open(dir).unwrap().unwrap()
    }

    #[test]
    fn keys_are_0600_and_as_tgs_issue_tickets() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let kdc = realm(d.path());
        for f in ["krbtgt.key", "dfs.key", "realm.conf"] {
            let m = std::fs::metadata(realm_dir(d.path()).join(f)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
        }
        let now = unix_now();
        let key = Key::from_password(b"secret", "TEST", "admin", 10);
        let req = AsReq {
            principal: "admin".into(),
            padata: auth::seal_padata(
                &key,
                &PaTimestamp {
                    time: now,
                    nonce: 1,
                },
            ),
            nonce: 5,
        };
        let rep = kdc.as_exchange(&req, now).unwrap();
        let tgt = auth::Credentials::from_rep(&rep, &key, true, 5).unwrap();
        let wrong = Key::from_password(b"nope", "TEST", "admin", 10);
        let bad = AsReq {
            padata: auth::seal_padata(
                &wrong,
                &PaTimestamp {
                    time: now,
                    nonce: 1,
                },
            ),
            ..req.clone()
        };
        assert!(matches!(
            kdc.as_exchange(&bad, now),
            Err(FsError::Unauthenticated(_))
        ));
        let replay = crate::auth::ReplayCache::new();
        let a = Authenticator {
            principal: "admin".into(),
            time: now,
            nanos: 0,
            nonce: 9,
            seq: 0,
            digest: [0; 32],
        };
        let treq = TgsReq {
            tgt: tgt.ticket.clone(),
            authenticator: auth::seal_tgs_auth(&tgt.session_key, &a),
            service: auth::FILE_SERVICE.into(),
            nonce: 6,
        };
        let srep = kdc.tgs_exchange(&treq, now, &replay).unwrap();
        let svc = auth::Credentials::from_rep(&srep, &tgt.session_key, false, 6).unwrap();
        assert!(svc.identity.admin);
        Ticket::open(kdc.service_key(), auth::FILE_SERVICE, &svc.ticket, now, 300).unwrap();
        // The same authenticator again is a replay.
        assert!(kdc.tgs_exchange(&treq, now, &replay).is_err());
    }
}
