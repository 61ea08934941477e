//! The security service's contract: Kerberos-shaped (RFC 4120) messages and the crypto
//! both ends need, built on ring only.
//!
//! - Long-term keys come from passwords with PBKDF2-HMAC-SHA256, salt = realm + principal.
//! - Everything secret or authenticated is sealed with ChaCha20-Poly1305 (a random 96-bit
//!   nonce in front of the ciphertext); each kind of message has its own label, used as the
//!   AEAD's associated data, so a sealed blob of one kind never opens as another.
//! - AS exchange: `AsReq` (pre-authentication = an encrypted timestamp) → `AsRep` (a TGT
//!   sealed with the TGS key, and a part sealed with the user's key holding the session
//!   key). TGS exchange: `TgsReq` (TGT + authenticator) → `TgsRep` (a service ticket).
//! - AP exchange, on every request: headers `x-dfs-ticket` (the service ticket) and
//!   `x-dfs-auth` (an `Authenticator` sealed with the session key). The authenticator
//!   carries a digest of the request (method, path, every `x-dfs-*` header, SHA-256 of the
//!   body), so it is also the request's MAC. The server answers with `x-dfs-auth-reply`: an
//!   `ApReply` sealed with the session key, echoing the nonce (mutual authentication) and
//!   carrying the digest of the response.
//!
//! Must not do I/O: no sockets, no files; time comes in as arguments.

use crate::FsError;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::num::NonZeroU32;

/// Prefix of the KDC's resources (served without tickets).
pub const KDC_PREFIX: &str = "/v1/kdc/";
/// `POST` `AsReq` → `AsRep`.
pub const KDC_AS: &str = "/v1/kdc/as";
/// `POST` `TgsReq` → `TgsRep`.
pub const KDC_TGS: &str = "/v1/kdc/tgs";
/// `GET` → `RealmInfo` (realm name and PBKDF2 iterations, needed to derive a key).
pub const KDC_INFO: &str = "/v1/kdc/info";
/// `POST` sealed `AdminRequest` → sealed `AdminReply`; needs a ticket (AP exchange).
pub const KDC_ADMIN: &str = "/v1/kdc/admin";

/// The service ticket, hex of the sealed `Ticket`.
pub const HDR_TICKET: &str = "x-dfs-ticket";
/// The authenticator, hex of the sealed `Authenticator`.
pub const HDR_AUTH: &str = "x-dfs-auth";
/// The server's proof, hex of the sealed `ApReply`.
pub const HDR_AUTH_REPLY: &str = "x-dfs-auth-reply";

/// Hex SHA-256 of the request body, required on authenticated requests other than stores
/// (which carry `x-dfs-sha256`); the server checks the body against it.
pub const HDR_BODY_SHA256: &str = "x-dfs-body-sha256";

/// The ticket-granting service's principal name.
pub const TGS_SERVICE: &str = "krbtgt";
/// The file service's principal name.
pub const FILE_SERVICE: &str = "dfs";

/// Largest clock difference accepted between client and server, seconds.
pub const DEFAULT_SKEW_SECS: i64 = 300;
/// Default ticket lifetime, seconds (10 h).
pub const DEFAULT_LIFETIME_SECS: i64 = 10 * 3600;
/// Default PBKDF2 iteration count.
pub const DEFAULT_ITERATIONS: u32 = 600_000;

const L_TICKET: &[u8] = b"dfs-ticket";
const L_PA: &[u8] = b"dfs-as-pa-timestamp";
const L_AS_REP: &[u8] = b"dfs-as-rep";
const L_TGS_AUTH: &[u8] = b"dfs-tgs-authenticator";
const L_TGS_REP: &[u8] = b"dfs-tgs-rep";
const L_AP_AUTH: &[u8] = b"dfs-ap-authenticator";
const L_AP_REP: &[u8] = b"dfs-ap-rep";
const L_ADMIN: &[u8] = b"dfs-admin";

/// Why authentication failed. Each maps to `FsError::Unauthenticated`.
pub fn denied(why: impl Into<String>) -> FsError {
    FsError::Unauthenticated(why.into())
}

/// A 256-bit symmetric key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// `n` random bytes from the system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random generator works");
    b
}

pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

impl Key {
    pub fn random() -> Key {
        Key(random_bytes())
    }

    /// The long-term key of `principal` in `realm` derived from `password`.
    pub fn from_password(password: &[u8], realm: &str, principal: &str, iterations: u32) -> Key {
        let salt = format!("{realm}{principal}");
        let mut out = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations.max(1)).expect("nonzero"),
            salt.as_bytes(),
            password,
            &mut out,
        );
        Key(out)
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("32-byte key"))
    }

    /// Seals `plain` under this key: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, label: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<12>();
        let mut buf = plain.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label),
                &mut buf,
            )
            .expect("seal");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    /// Opens what `seal` made with the same key and label.
    pub fn open(&self, label: &[u8], sealed: &[u8]) -> Result<Vec<u8>, FsError> {
        if sealed.len() < 12 + aead::CHACHA20_POLY1305.tag_len() {
            return Err(denied("sealed message too short"));
        }
        let nonce: [u8; 12] = sealed[..12].try_into().expect("12 bytes");
        let mut buf = sealed[12..].to_vec();
        let plain = self
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label),
                &mut buf,
            )
            .map_err(|_| denied("integrity check failed (wrong key or tampered)"))?;
        Ok(plain.to_vec())
    }

    pub fn seal_msg<T: Serialize>(&self, label: &[u8], msg: &T) -> Vec<u8> {
        self.seal(label, &crate::codec::encode(msg))
    }

    pub fn open_msg<T: DeserializeOwned>(&self, label: &[u8], sealed: &[u8]) -> Result<T, FsError> {
        let plain = self.open(label, sealed)?;
        crate::codec::decode(&plain).map_err(|e| denied(format!("malformed sealed message: {e}")))
    }
}

/// Who a principal is in the file system: carried inside tickets (like a PAC), so a file
/// server needs no database to know a caller's uid and groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub principal: String,
    pub realm: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub admin: bool,
}

/// A ticket, readable only by the service it is for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ticket {
    pub identity: Identity,
    pub service: String,
    pub session_key: Key,
    /// Unix seconds.
    pub issued: i64,
    pub expires: i64,
}

impl Ticket {
    pub fn seal(&self, service_key: &Key) -> Vec<u8> {
        service_key.seal_msg(&label(L_TICKET, &self.service), self)
    }

    /// Opens a ticket for `service` and checks that it is for `service` and current.
    pub fn open(
        service_key: &Key,
        service: &str,
        sealed: &[u8],
        now: i64,
        skew: i64,
    ) -> Result<Ticket, FsError> {
        let t: Ticket = service_key
            .open_msg(&label(L_TICKET, service), sealed)
            .map_err(|_| {
                denied(format!(
                    "ticket is not a valid ticket for service {service}"
                ))
            })?;
        if t.service != service {
            return Err(denied(format!(
                "ticket is for service {}, not {service}",
                t.service
            )));
        }
        if now > t.expires + skew {
            return Err(denied(format!(
                "ticket of {} expired; run `dfs login` again",
                t.identity.principal
            )));
        }
        if now + skew < t.issued {
            return Err(denied("ticket not yet valid (clock skew)"));
        }
        Ok(t)
    }
}

fn label(base: &[u8], extra: &str) -> Vec<u8> {
    let mut l = base.to_vec();
    l.push(b'/');
    l.extend_from_slice(extra.as_bytes());
    l
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RealmInfo {
    pub realm: String,
    pub iterations: u32,
}

/// Pre-authentication: the client's clock, sealed with its long-term key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PaTimestamp {
    pub time: i64,
    pub nonce: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AsReq {
    pub principal: String,
    /// `PaTimestamp` sealed with the user's key.
    pub padata: Vec<u8>,
    pub nonce: u64,
}

/// The client's part of a KDC answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncKdcPart {
    pub session_key: Key,
    pub service: String,
    pub identity: Identity,
    pub issued: i64,
    pub expires: i64,
    pub nonce: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KdcRep {
    /// The sealed ticket (opaque to the client).
    pub ticket: Vec<u8>,
    /// `EncKdcPart` sealed with the user's key (AS) or the TGT's session key (TGS).
    pub enc: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TgsReq {
    pub tgt: Vec<u8>,
    /// `Authenticator` sealed with the TGT's session key.
    pub authenticator: Vec<u8>,
    pub service: String,
    pub nonce: u64,
}

/// Proof that the sender holds a ticket's session key, bound to one request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Authenticator {
    pub principal: String,
    /// Unix seconds and nanoseconds.
    pub time: i64,
    pub nanos: u32,
    pub nonce: u64,
    pub seq: u64,
    /// `request_digest` of the request this authenticator is for.
    pub digest: [u8; 32],
}

/// The server's proof back, bound to one response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApReply {
    /// The nonce of the request's authenticator.
    pub nonce: u64,
    /// `response_digest` of the response.
    pub digest: [u8; 32],
}

/// Client credentials for one service: what `dfs login` obtains.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub identity: Identity,
    pub service: String,
    pub ticket: Vec<u8>,
    pub session_key: Key,
    pub issued: i64,
    pub expires: i64,
}

impl Credentials {
    /// Unseals a KDC answer with `key` (the user's key for AS, the TGT session key for TGS).
    pub fn from_rep(
        rep: &KdcRep,
        key: &Key,
        as_rep: bool,
        nonce: u64,
    ) -> Result<Credentials, FsError> {
        let label = if as_rep { L_AS_REP } else { L_TGS_REP };
        let part: EncKdcPart = key
            .open_msg(label, &rep.enc)
            .map_err(|_| denied("cannot open the KDC's answer (wrong password?)"))?;
        if part.nonce != nonce {
            return Err(denied("KDC answer does not match the request (nonce)"));
        }
        Ok(Credentials {
            identity: part.identity,
            service: part.service,
            ticket: rep.ticket.clone(),
            session_key: part.session_key,
            issued: part.issued,
            expires: part.expires,
        })
    }
}

/// Seals a KDC answer's client part.
pub fn seal_kdc_part(key: &Key, as_rep: bool, part: &EncKdcPart) -> Vec<u8> {
    key.seal_msg(if as_rep { L_AS_REP } else { L_TGS_REP }, part)
}

pub fn seal_padata(user_key: &Key, pa: &PaTimestamp) -> Vec<u8> {
    user_key.seal_msg(L_PA, pa)
}

pub fn open_padata(user_key: &Key, sealed: &[u8]) -> Result<PaTimestamp, FsError> {
    user_key
        .open_msg(L_PA, sealed)
        .map_err(|_| denied("pre-authentication failed: wrong password or unknown principal"))
}

pub fn seal_tgs_auth(session: &Key, a: &Authenticator) -> Vec<u8> {
    session.seal_msg(L_TGS_AUTH, a)
}

pub fn open_tgs_auth(session: &Key, sealed: &[u8]) -> Result<Authenticator, FsError> {
    session.open_msg(L_TGS_AUTH, sealed)
}

pub fn seal_ap_auth(session: &Key, a: &Authenticator) -> Vec<u8> {
    session.seal_msg(L_AP_AUTH, a)
}

pub fn open_ap_auth(session: &Key, sealed: &[u8]) -> Result<Authenticator, FsError> {
    session.open_msg(L_AP_AUTH, sealed)
}

pub fn seal_ap_reply(session: &Key, r: &ApReply) -> Vec<u8> {
    session.seal_msg(L_AP_REP, r)
}

pub fn open_ap_reply(session: &Key, sealed: &[u8]) -> Result<ApReply, FsError> {
    session.open_msg(L_AP_REP, sealed)
}

pub fn seal_admin<T: Serialize>(session: &Key, msg: &T) -> Vec<u8> {
    session.seal_msg(L_ADMIN, msg)
}

pub fn open_admin<T: DeserializeOwned>(session: &Key, sealed: &[u8]) -> Result<T, FsError> {
    session.open_msg(L_ADMIN, sealed)
}

/// User administration (admin only, except `Passwd` of one's own principal).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AdminRequest {
    Add {
        principal: String,
        key: Key,
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
        admin: bool,
    },
    Del {
        principal: String,
    },
    Passwd {
        principal: String,
        key: Key,
    },
    List,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AdminReply {
    Done,
    List(Vec<Identity>),
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    d.as_ref().try_into().expect("32 bytes")
}

/// Whether a header takes part in the request/response digest: every `x-dfs-*` header
/// except the AP headers themselves.
pub fn covered_header(name: &str) -> bool {
    name.starts_with("x-dfs-") && name != HDR_TICKET && name != HDR_AUTH && name != HDR_AUTH_REPLY
}

fn digest_of<'a>(
    first: &[u8],
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    body_sha: &[u8; 32],
) -> [u8; 32] {
    let mut hs: Vec<(&str, &[u8])> = headers.filter(|(n, _)| covered_header(n)).collect();
    hs.sort();
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut put = |b: &[u8]| {
        ctx.update(&(b.len() as u64).to_le_bytes());
        ctx.update(b);
    };
    put(first);
    for (n, v) in hs {
        put(n.as_bytes());
        put(v);
    }
    put(body_sha);
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

/// The digest an authenticator binds: method, path with query, covered headers, body hash.
pub fn request_digest<'a>(
    method: &str,
    path_and_query: &str,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    body_sha: &[u8; 32],
) -> [u8; 32] {
    digest_of(
        format!("{method} {path_and_query}").as_bytes(),
        headers,
        body_sha,
    )
}

/// The digest an `ApReply` binds: status, covered headers, body hash (all zero for
/// streamed file contents, which the client checks against the blob id instead).
pub fn response_digest<'a>(
    status: u16,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    body_sha: &[u8; 32],
) -> [u8; 32] {
    digest_of(&status.to_le_bytes(), headers, body_sha)
}

/// Hash that stands for a response body that is not hashed whole (a streamed blob,
/// verified against its content hash, or the callback channel).
pub const STREAMED: [u8; 32] = [0u8; 32];

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Identity {
        Identity {
            principal: "alice".into(),
            realm: "R".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![],
            admin: false,
        }
    }

    #[test]
    fn password_keys_depend_on_realm_principal_and_password() {
        let a = Key::from_password(b"pw", "R", "alice", 1000);
        assert_eq!(a, Key::from_password(b"pw", "R", "alice", 1000));
        assert_ne!(a, Key::from_password(b"pw", "R", "bob", 1000));
        assert_ne!(a, Key::from_password(b"pw", "S", "alice", 1000));
        assert_ne!(a, Key::from_password(b"px", "R", "alice", 1000));
    }

    #[test]
    fn seal_open_round_trips_and_detects_tampering_wrong_key_and_label() {
        let k = Key::random();
        let s = k.seal(b"l", b"hello");
        assert_eq!(k.open(b"l", &s).unwrap(), b"hello");
        assert!(k.open(b"m", &s).is_err());
        assert!(Key::random().open(b"l", &s).is_err());
        let mut t = s.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(k.open(b"l", &t).is_err());
        t = s.clone();
        t[14] ^= 1;
        assert!(k.open(b"l", &t).is_err());
        assert!(k.open(b"l", &s[..10]).is_err());
    }

    #[test]
    fn tickets_check_service_key_and_expiry() {
        let svc = Key::random();
        let t = Ticket {
            identity: ident(),
            service: FILE_SERVICE.into(),
            session_key: Key::random(),
            issued: 1000,
            expires: 2000,
        };
        let sealed = t.seal(&svc);
        assert!(Ticket::open(&svc, FILE_SERVICE, &sealed, 1500, 300).is_ok());
        assert!(Ticket::open(&svc, TGS_SERVICE, &sealed, 1500, 300).is_err());
        assert!(Ticket::open(&Key::random(), FILE_SERVICE, &sealed, 1500, 300).is_err());
        let e = Ticket::open(&svc, FILE_SERVICE, &sealed, 2301, 300).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        assert!(Ticket::open(&svc, FILE_SERVICE, &sealed, 600, 300).is_err());
    }

    #[test]
    fn digests_cover_method_path_dfs_headers_and_body_only() {
        let body = sha256(b"body");
        let h = |v: &'static [u8]| {
            vec![
                ("x-dfs-client", &b"1"[..]),
                ("x-dfs-attr", v),
                ("accept", &b"x"[..]),
            ]
        };
        let d = request_digest("POST", "/v1/dir", h(b"a").into_iter(), &body);
        assert_eq!(
            d,
            request_digest("POST", "/v1/dir", h(b"a").into_iter().rev(), &body)
        );
        assert_ne!(
            d,
            request_digest("PUT", "/v1/dir", h(b"a").into_iter(), &body)
        );
        assert_ne!(
            d,
            request_digest("POST", "/v1/dix", h(b"a").into_iter(), &body)
        );
        assert_ne!(
            d,
            request_digest("POST", "/v1/dir", h(b"b").into_iter(), &body)
        );
        assert_ne!(
            d,
            request_digest("POST", "/v1/dir", h(b"a").into_iter(), &sha256(b"bodY"))
        );
        let other = vec![
            ("x-dfs-client", &b"1"[..]),
            ("x-dfs-attr", &b"a"[..]),
            ("accept", &b"y"[..]),
        ];
        assert_eq!(
            d,
            request_digest("POST", "/v1/dir", other.into_iter(), &body)
        );
    }

    #[test]
    fn kdc_parts_open_only_with_the_right_key_and_nonce() {
        let user = Key::from_password(b"pw", "R", "alice", 10);
        let part = EncKdcPart {
            session_key: Key::random(),
            service: TGS_SERVICE.into(),
            identity: ident(),
            issued: 1,
            expires: 2,
            nonce: 7,
        };
        let rep = KdcRep {
            ticket: vec![1, 2, 3],
            enc: seal_kdc_part(&user, true, &part),
        };
        assert!(Credentials::from_rep(&rep, &user, true, 7).is_ok());
        assert!(Credentials::from_rep(&rep, &user, true, 8).is_err());
        assert!(Credentials::from_rep(&rep, &user, false, 7).is_err());
        let wrong = Key::from_password(b"px", "R", "alice", 10);
        let e = Credentials::from_rep(&rep, &wrong, true, 7).unwrap_err();
        assert!(e.to_string().contains("wrong password"), "{e}");
    }
}
