//! The client end of the AP exchange, and whose credentials a request uses.
//!
//! The mount acts for the user who makes each request, as AFS does with tokens: the FUSE
//! adapter runs every request's work inside `as_uid(req.uid(), ..)` (a tokio task-local),
//! and `remote` signs with the credentials that uid handed to the mount with `dfs login`
//! (over the control socket, whose peer uid the kernel vouches for). A uid without
//! credentials is anonymous. The retry of unstored files acts for the user who wrote them
//! (while this mount holds their credentials); the callback channel, which carries only
//! inode numbers, and lease renewal run anonymous.
//!
//! Owns: the per-uid credential store of this process, signing requests, checking the
//! server's `x-dfs-auth-reply`. Must not do HTTP itself (see `remote`).

use dfs_common::auth::{
    self, ApReply, Authenticator, Credentials, HDR_AUTH, HDR_AUTH_REPLY, HDR_BODY_SHA256,
    HDR_TICKET,
};
use dfs_common::{codec, FsError, Timestamp};
use hyper::header::{HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

tokio::task_local! {
    static UID: u32;
}

/// Runs `f` on behalf of local user `uid`.
pub async fn as_uid<F: Future>(uid: u32, f: F) -> F::Output {
    UID.scope(uid, f).await
}

/// Runs `f` on behalf of `uid` if there is one: a task spawned for the current user (see
/// `current_uid`) keeps acting for them.
pub async fn as_uid_if<F: Future>(uid: Option<u32>, f: F) -> F::Output {
    match uid {
        Some(uid) => as_uid(uid, f).await,
        None => f.await,
    }
}

/// The local user the current task acts for, if any.
pub fn current_uid() -> Option<u32> {
    UID.try_with(|u| *u).ok()
}

static CREDS: LazyLock<Mutex<HashMap<u32, Credentials>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static SEQ: AtomicU64 = AtomicU64::new(1);

/// Makes `creds` the credentials of local user `uid` in this process.
pub fn set_credentials(uid: u32, creds: Credentials) {
    log::info!(
        "uid {uid} now acts as {}@{} (for {} min)",
        creds.identity.principal,
        creds.identity.realm,
        (creds.expires - dfs_common::Timestamp::now().secs).max(0) / 60
    );
    CREDS.lock().expect("creds").insert(uid, creds);
}

pub fn drop_credentials(uid: u32) -> bool {
    CREDS.lock().expect("creds").remove(&uid).is_some()
}

/// The credentials the current task would sign with.
pub fn current_credentials() -> Option<Credentials> {
    let uid = current_uid()?;
    CREDS.lock().expect("creds").get(&uid).cloned()
}

/// What is needed to check the answer to a signed request.
pub struct Signed {
    pub(crate) key: auth::Key,
    pub(crate) nonce: u64,
    /// The request asked for privacy (its answer's body is sealed).
    pub(crate) privacy: bool,
}

/// Adds `x-dfs-ticket` and `x-dfs-auth` to a request about to be sent, if the current user
/// has credentials. `body_sha` is the hash the request's body hash header holds (the
/// caller sets `x-dfs-sha256` on stores; other requests get `x-dfs-body-sha256` here).
pub fn sign(
    method: &str,
    path_and_query: &str,
    headers: &mut HeaderMap,
    body_sha: &[u8; 32],
    store: bool,
) -> Result<Option<Signed>, FsError> {
    let Some(creds) = current_credentials() else {
        return Ok(None);
    };
    let now = Timestamp::now();
    if now.secs > creds.expires {
        log::warn!(
            "the ticket of uid {} ({}@{}) expired; run `dfs login` again",
            current_uid().unwrap_or(0),
            creds.identity.principal,
            creds.identity.realm
        );
        return Err(FsError::PermissionDenied(
            "ticket expired: run `dfs login` again".into(),
        ));
    }
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
        seq: SEQ.fetch_add(1, Ordering::Relaxed),
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
    Ok(Some(Signed {
        key: creds.session_key,
        nonce,
        privacy: false,
    }))
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

    #[tokio::test]
    async fn answers_tampered_on_the_way_back_are_rejected() {
        let c = creds();
        set_credentials(4242, c.clone());
        let signed = as_uid(4242, async {
            let mut h = HeaderMap::new();
            let s = sign("GET", "/v1/dir", &mut h, &[0; 32], false).unwrap();
            assert!(h.contains_key(HDR_TICKET) && h.contains_key(HDR_AUTH));
            s
        })
        .await
        .expect("signed");
        assert!(sign("GET", "/", &mut HeaderMap::new(), &[0; 32], false)
            .unwrap()
            .is_none());
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
        drop_credentials(4242);
    }
}
