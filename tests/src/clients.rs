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

/// Makes test client `n`'s proofs carry the server's current epoch (after a restart).
pub fn refresh_epoch(addr: &str, n: u64) {
    let r = http(addr, "GET", "/v1/health", &[], b"").expect("health");
    if let Some(epoch) = r.header(HDR_EPOCH).and_then(|v| v.parse().ok()) {
        test_client(addr, n).set_epoch(epoch);
    }
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
    let send = || {
        let proof = proof_headers(addr, n, method, path);
        let mut all: Vec<(&str, &str)> = proof.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(headers);
        http(addr, method, path, &all, body)
    };
    let r = send()?;
    if r.status == 401 && r.header("x-dfs-error") == Some("EEPOCH") {
        refresh_epoch(addr, n);
        return send();
    }
    Ok(r)
}
