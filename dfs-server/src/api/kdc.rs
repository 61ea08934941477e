//! The KDC's resources under `/v1/kdc/`: `info` and the AS and TGS exchanges need no
//! ticket (they are how one gets tickets); `admin` needs one, and its bodies are sealed
//! with the session key whatever the protection level (they carry new users' keys).
//!
//! Owns: those resources' decoding and answers. Must not issue or check tickets itself
//! (`crate::kdc`, `crate::auth`).

use super::wire::{bincode_response, read_limited, Answer, ReqBody};
use super::Call;
use crate::errors::join_err;
use crate::services::Services;
use dfs_common::auth::{self, AdminRequest, AsReq, RealmInfo, TgsReq};
use dfs_common::{codec, FsError};
use hyper::{Method, Request};
use std::sync::Arc;

const MAX_KDC_REQUEST: usize = 64 << 10;

/// Handles `/v1/kdc/...` (`dfs_common::auth::KDC_PREFIX`).
pub async fn handle(svc: &Arc<Services>, call: &Call<'_>, req: Request<ReqBody>) -> Answer {
    let session = call.session;
    let Some(sec) = svc.security.get().cloned() else {
        return Err(FsError::NotSupported(
            "this server has no realm (an open cell); see `dfs-server init`".into(),
        ));
    };
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let now = crate::kdc::Kdc::now();
    match (method, path.as_str()) {
        (Method::GET | Method::POST, auth::KDC_INFO) => Ok(bincode_response(&RealmInfo {
            realm: sec.kdc.conf.realm.clone(),
            iterations: sec.kdc.conf.iterations,
        })),
        (Method::POST, auth::KDC_AS) => {
            let bytes = read_limited(body, &parts.headers, MAX_KDC_REQUEST).await?;
            let r: AsReq = codec::decode(&bytes)?;
            let rep = tokio::task::spawn_blocking(move || sec.kdc.as_exchange(&r, now))
                .await
                .map_err(join_err)?;
            match &rep {
                Ok(_) => log::info!("AS: issued a TGT"),
                Err(e) => log::info!("AS: {e}"),
            }
            Ok(bincode_response(&rep?))
        }
        (Method::POST, auth::KDC_TGS) => {
            let bytes = read_limited(body, &parts.headers, MAX_KDC_REQUEST).await?;
            let r: TgsReq = codec::decode(&bytes)?;
            let rep =
                tokio::task::spawn_blocking(move || sec.kdc.tgs_exchange(&r, now, &sec.replay))
                    .await
                    .map_err(join_err)??;
            Ok(bincode_response(&rep))
        }
        (Method::POST, auth::KDC_ADMIN) => {
            let session = session.ok_or_else(|| {
                auth::denied("user administration needs a ticket: run `dfs login`")
            })?;
            let bytes = read_limited(body, &parts.headers, MAX_KDC_REQUEST).await?;
            let sealed: Vec<u8> = codec::decode(&bytes)?;
            let r: AdminRequest = auth::open_admin(&session.key, &sealed)?;
            let identity = session.identity.clone();
            let reply = tokio::task::spawn_blocking(move || sec.kdc.admin(&identity, r))
                .await
                .map_err(join_err)??;
            Ok(bincode_response(&auth::seal_admin(&session.key, &reply)))
        }
        _ => Err(FsError::NotFound),
    }
}
