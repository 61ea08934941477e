//! The resources of a mount as a client: `POST /v1/clients` registers it (its key, for the
//! proofs every later request carries, `crate::clients`), and `GET /v1/callbacks` is its
//! callback channel, sealed with a key of its own.
//!
//! Owns: those two resources. Must not decide who a client is (`crate::clients`) nor what
//! a break is (`crate::callbacks`).

use super::wire::{bincode_response, channel, decode_body, method_not_allowed, Answer, ReqBody};
use super::Call;
use crate::callbacks;
use crate::services::Services;
use dfs_common::client_id::{RegisterRequest, REGISTER_PATH};
use dfs_common::proto::{HDR_CLIENT, MAX_DIR_REQUEST};
use dfs_common::FsError;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub const CALLBACKS: &str = "/v1/callbacks";

/// Whether `path` is one of this area's resources.
pub fn is_resource(path: &str) -> bool {
    path == CALLBACKS || path == REGISTER_PATH
}

/// Handles `CALLBACKS` and `REGISTER_PATH`.
pub async fn handle(svc: &Arc<Services>, call: &Call<'_>, req: Request<ReqBody>) -> Answer {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    match (path.as_str(), method) {
        (CALLBACKS, Method::GET) => {
            let client = call.caller.client;
            if client == 0 {
                return Err(FsError::BadRequest(format!(
                    "the callback channel needs a {HDR_CLIENT} header"
                )));
            }
            callbacks_channel(svc, client)
        }
        (CALLBACKS, method) => Ok(method_not_allowed(&method, &path, "GET")),
        (_, Method::POST) => {
            let request: RegisterRequest = decode_body(req, MAX_DIR_REQUEST).await?;
            let svc2 = svc.clone();
            let registered = svc
                .coherence
                .blocking(move |ns, _| svc2.clients.register(ns, &request))
                .await?;
            Ok(bincode_response(&registered))
        }
        (_, method) => Ok(method_not_allowed(&method, &path, "POST")),
    }
}

/// `GET /v1/callbacks` of a proven `client`: its callback channel, sealed with a key of its
/// own and this epoch (`dfs_common::client_id`), bound to a fresh nonce: nobody else can
/// read its breaks (entry breaks carry names) or slip it false ones.
fn callbacks_channel(svc: &Services, client: u64) -> Answer {
    let key = svc
        .clients
        .key(client)
        .ok_or_else(|| FsError::UnknownClient(format!("client {client:#x}")))?
        .channel_key(svc.clients.epoch());
    let mut nonce = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| FsError::Io("no randomness".into()))?;
    let nonce = u64::from_le_bytes(nonce);
    let sealer = dfs_common::privacy::Sealer::new(&key, dfs_common::privacy::Dir::Response, nonce);
    let rx = callbacks::channel::open(svc.callbacks.clone(), client);
    let body = dfs_common::sealed_body::sealing(channel(rx, None), sealer);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("cache-control", "no-store")
        .header(
            dfs_common::client_id::HDR_CHANNEL_NONCE,
            format!("{nonce:x}"),
        )
        .body(body)
        .expect("valid response"))
}
