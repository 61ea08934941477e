//! Registered clients for tests that speak the wire themselves: test client number `n` of
//! the server at `addr` is registered (`POST /v1/clients`, `dfs_common::client_id`) on
//! first use, and its requests carry the proof of who they come from, sent once more if
//! the server restarted since (a new epoch).

use crate::http::{http, HttpResponse};
use dfs_common::client_id::{Prover, HDR_EPOCH, REGISTER_PATH};
use dfs_common::FsError;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

/// Test clients by (server address, number).
type Registered = HashMap<(String, u64), Arc<Prover>>;

/// Test client `n` of the server at `addr`.
pub fn test_client(addr: &str, n: u64) -> Arc<Prover> {
    static CLIENTS: OnceLock<Mutex<Registered>> = OnceLock::new();
    let mut all = CLIENTS.get_or_init(Default::default).lock().unwrap();
    all.entry((addr.to_string(), n))
        .or_insert_with(|| {
            let prover = Prover::register(|body| {
                let r = http(addr, "POST", REGISTER_PATH, &[], &body)
                    .map_err(|e| FsError::Unavailable(e.to_string()))?;
                assert_eq!(r.status, 200, "registration: {}", r.describe());
                Ok(r.body)
            })
            .unwrap_or_else(|e| panic!("registering test client {n} with {addr}: {e}"));
            Arc::new(prover)
        })
        .clone()
}

/// The headers naming and proving test client `n` on a request.
pub fn proof_headers(addr: &str, n: u64, method: &str, path: &str) -> Vec<(&'static str, String)> {
    test_client(addr, n).headers(method, path).to_vec()
}

/// The server's epoch, as every answer names it (`None` if the server does not answer).
pub fn server_epoch(addr: &str) -> Option<u64> {
    let r = http(addr, "GET", "/v1/health", &[], b"").ok()?;
    r.header(HDR_EPOCH).and_then(|v| v.parse().ok())
}

/// Makes test client `n`'s proofs carry the server's current epoch (after a restart), and
/// returns it.
pub fn refresh_epoch(addr: &str, n: u64) -> Option<u64> {
    let epoch = server_epoch(addr)?;
    test_client(addr, n).set_epoch(epoch);
    Some(epoch)
}

/// `http` as test client `n`, with `headers` besides its proof.
pub fn http_as(
    addr: &str,
    n: u64,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let with_proof = |proof: Vec<(&'static str, String)>| {
        let mut all: Vec<(String, String)> =
            proof.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    };
    http_with_proof(addr, n, method, path, &with_proof, body)
}

/// Makes a request's headers from a test client's proof headers.
pub type HeadersWithProof<'a> = dyn Fn(Vec<(&'static str, String)>) -> Vec<(String, String)> + 'a;

/// `http` as test client `n`, with the headers `headers` makes of its proof's (a realm's
/// caller adds its ticket and authenticator, which cover the proof), sent once more if
/// the server restarted since (a new epoch).
pub fn http_with_proof(
    addr: &str,
    n: u64,
    method: &str,
    path: &str,
    headers: &HeadersWithProof,
    body: &[u8],
) -> io::Result<HttpResponse> {
    let send = || {
        let all = headers(proof_headers(addr, n, method, path));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        http(addr, method, path, &all, body)
    };
    let r = send()?;
    if r.status == 401 && r.code() == Some("EEPOCH") {
        refresh_epoch(addr, n);
        return send();
    }
    Ok(r)
}
