//! The client end of the AP exchange, and whose credentials a request uses.
//!
//! A mount acts for the user who makes each request, as AFS does with tokens: every call
//! names who it acts for (`crate::port::Who`: the FUSE adapter makes one from each
//! request's uid), and `remote` signs it with the credentials that user handed to the mount
//! with `dfs login` (over the control socket, whose peer uid the kernel vouches for). They
//! are kept in a `CredentialStore`, an instance the HTTP port holds and the control socket
//! fills; nothing about who acts is process-global. A user without credentials, and
//! nobody (`Who::ANONYMOUS`), are anonymous. The retry of unstored files acts for the user
//! who wrote them (while the store holds their credentials); the callback channel, which
//! carries only inode numbers, lease renewal and revalidation act for nobody.
//!
//! Owns: `CredentialStore` (credentials by local uid, and the sequence numbers of the
//! authenticators signed with them), signing requests, checking the server's
//! `x-dfs-auth-reply`. Must not do HTTP itself (see `remote`).

use crate::port::Who;
use dfs_common::auth::{
    self, ApReply, Authenticator, Credentials, HDR_AUTH, HDR_AUTH_REPLY, HDR_BODY_SHA256,
    HDR_TICKET,
};
use dfs_common::{codec, FsError, Timestamp};
use hyper::header::{HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The credentials local users have handed to one client (a mount's, shared by its HTTP
/// port and its control socket; a command's own), by uid.
pub struct CredentialStore {
    by_uid: Mutex<HashMap<u32, Credentials>>,
    /// The sequence number of the next authenticator signed with any of them.
    seq: AtomicU64,
}

impl Default for CredentialStore {
    fn default() -> Self {
        CredentialStore::new()
    }
}

impl CredentialStore {
    /// A store holding no credentials: every request is anonymous.
    pub fn new() -> CredentialStore {
        CredentialStore {
            by_uid: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(1),
        }
    }

    /// Makes `creds` the credentials of local user `uid` (replacing any it had).
    pub fn set(&self, uid: u32, creds: Credentials) {
        log::info!(
            "uid {uid} now acts as {}@{} (for {} min)",
            creds.identity.principal,
            creds.identity.realm,
            (creds.expires - dfs_common::Timestamp::now().secs).max(0) / 60
        );
        self.by_uid.lock().expect("creds").insert(uid, creds);
    }

    /// Forgets the credentials of `uid`; whether it had any.
    pub fn remove(&self, uid: u32) -> bool {
        self.by_uid.lock().expect("creds").remove(&uid).is_some()
    }

    /// The credentials requests of `who` are signed with, if any.
    pub fn of(&self, who: &Who) -> Option<Credentials> {
        let uid = who.uid()?;
        self.by_uid.lock().expect("creds").get(&uid).cloned()
    }

    /// The credentials to sign a request of `who` with: `None` if they have none, an error
    /// if theirs expired.
    pub fn for_signing(&self, who: &Who) -> Result<Option<Credentials>, FsError> {
        let Some(creds) = self.of(who) else {
            return Ok(None);
        };
        if Timestamp::now().secs > creds.expires {
            log::warn!(
                "the ticket of uid {} ({}@{}) expired; run `dfs login` again",
                who.uid().unwrap_or(0),
                creds.identity.principal,
                creds.identity.realm
            );
            return Err(FsError::PermissionDenied(
                "ticket expired: run `dfs login` again".into(),
            ));
        }
        Ok(Some(creds))
    }

    /// Adds `x-dfs-ticket` and `x-dfs-auth` to a request about to be sent, signed with
    /// `creds` (from `for_signing`). `body_sha` is the hash the request's body hash header
    /// holds (the caller sets `x-dfs-sha256` on stores; other requests get
    /// `x-dfs-body-sha256` here).
    pub fn sign(
        &self,
        creds: &Credentials,
        method: &str,
        path_and_query: &str,
        headers: &mut HeaderMap,
        body_sha: &[u8; 32],
        store: bool,
    ) -> Signed {
        let now = Timestamp::now();
        if !store {
            headers.insert(
                HDR_BODY_SHA256,
                HeaderValue::from_str(&codec::to_hex(body_sha)).expect("hex"),
            );
        }
        let digest = auth::request_digest(
            method,
            path_and_query,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            body_sha,
        );
        let nonce = auth::random_u64();
        let a = Authenticator {
            principal: creds.identity.principal.clone(),
            time: now.secs,
            nanos: now.nanos,
            nonce,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            digest,
        };
        let sealed = auth::seal_ap_auth(&creds.session_key, &a);
        headers.insert(
            HDR_TICKET,
            HeaderValue::from_str(&codec::to_hex(&creds.ticket)).expect("hex"),
        );
        headers.insert(
            HDR_AUTH,
            HeaderValue::from_str(&codec::to_hex(&sealed)).expect("hex"),
        );
        Signed {
            key: creds.session_key.clone(),
            nonce,
            privacy: false,
        }
    }
}

/// What is needed to check the answer to a signed request.
pub struct Signed {
    pub(crate) key: auth::Key,
    pub(crate) nonce: u64,
    /// The request asked for privacy (its answer's body is sealed).
    pub(crate) privacy: bool,
}

/// Checks the server's proof on the answer to a signed request (mutual authentication and
/// the answer's integrity). `body_sha` is `auth::STREAMED` for streamed file contents.
pub fn verify(
    signed: &Signed,
    status: u16,
    headers: &HeaderMap,
    body_sha: &[u8; 32],
) -> Result<(), FsError> {
    let bad = |why: &str| {
        log::warn!("answer from the server failed its integrity check: {why}");
        FsError::Corrupt(format!("answer failed its integrity check: {why}"))
    };
    let sealed = headers
        .get(HDR_AUTH_REPLY)
        .and_then(|v| v.to_str().ok())
        .and_then(codec::from_hex)
        .ok_or_else(|| bad("no server proof (x-dfs-auth-reply)"))?;
    let r: ApReply = auth::open_ap_reply(&signed.key, &sealed)
        .map_err(|_| bad("server proof not sealed with the session key"))?;
    if r.nonce != signed.nonce {
        return Err(bad("server proof is for another request"));
    }
    let digest = auth::response_digest(
        status,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        body_sha,
    );
    if digest != r.digest {
        return Err(bad("answer was changed on its way"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_common::auth::{Identity, Key};

    fn creds() -> Credentials {
        Credentials {
            identity: Identity {
                principal: "alice".into(),
                realm: "R".into(),
                uid: 1,
                gid: 1,
                groups: vec![],
                admin: false,
            },
            service: auth::FILE_SERVICE.into(),
            ticket: vec![1, 2, 3],
            session_key: Key::random(),
            issued: 0,
            expires: i64::MAX,
        }
    }

    fn answer(key: &Key, nonce: u64, headers: &HeaderMap, body: &[u8]) -> HeaderMap {
        let digest = auth::response_digest(
            200,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            &auth::sha256(body),
        );
        let mut h = headers.clone();
        let sealed = auth::seal_ap_reply(key, &ApReply { nonce, digest });
        h.insert(
            HDR_AUTH_REPLY,
            HeaderValue::from_str(&codec::to_hex(&sealed)).unwrap(),
        );
        h
    }

    #[test]
    fn answers_tampered_on_the_way_back_are_rejected() {
        let c = creds();
        let store = CredentialStore::new();
        store.set(4242, c.clone());
        assert!(store.of(&Who::user(4243)).is_none() && store.of(&Who::ANONYMOUS).is_none());
        let mine = store
            .for_signing(&Who::user(4242))
            .unwrap()
            .expect("credentials");
        let mut h = HeaderMap::new();
        let signed = store.sign(&mine, "GET", "/v1/dir", &mut h, &[0; 32], false);
        assert!(h.contains_key(HDR_TICKET) && h.contains_key(HDR_AUTH));
        let mut base = HeaderMap::new();
        base.insert("x-dfs-attr", HeaderValue::from_static("abc"));
        let good = answer(&c.session_key, signed.nonce, &base, b"body");
        verify(&signed, 200, &good, &auth::sha256(b"body")).unwrap();
        assert!(verify(&signed, 200, &good, &auth::sha256(b"bodY")).is_err());
        assert!(verify(&signed, 201, &good, &auth::sha256(b"body")).is_err());
        let mut bad = good.clone();
        bad.insert("x-dfs-attr", HeaderValue::from_static("abd"));
        assert!(verify(&signed, 200, &bad, &auth::sha256(b"body")).is_err());
        let other = answer(&c.session_key, signed.nonce + 1, &base, b"body");
        assert!(verify(&signed, 200, &other, &auth::sha256(b"body")).is_err());
        let forged = answer(&Key::random(), signed.nonce, &base, b"body");
        assert!(verify(&signed, 200, &forged, &auth::sha256(b"body")).is_err());
        assert!(verify(&signed, 200, &base, &auth::sha256(b"body")).is_err());
        assert!(store.remove(4242) && store.of(&Who::user(4242)).is_none());
    }

    #[test]
    fn expired_credentials_sign_nothing() {
        let store = CredentialStore::new();
        store.set(
            7,
            Credentials {
                expires: 0,
                ..creds()
            },
        );
        assert!(store.for_signing(&Who::user(7)).is_err());
        assert!(store.for_signing(&Who::user(8)).unwrap().is_none());
    }
}
