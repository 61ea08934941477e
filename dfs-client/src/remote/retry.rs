//! The retry of every exchange with the server (`Remote::with_client`): one request id
//! per call, kept across its attempts; registering this client first; mending a refused
//! proof (a new epoch, a forgotten client); and, with a replicated directory, following
//! the leader or moving on to the next node until one answers (`servers`).
//!
//! Owns: `Attempt`, request ids, the failover wait and pauses, registration. Must not
//! build requests of a resource (the callers' attempts do).

use super::{full, identity, unavailable, Remote, ServerAnswer, META_TIMEOUT};
use dfs_common::{client_id, codec, FsError};
use http_body_util::BodyExt;
use hyper::{Method, Request};
use std::time::Duration;

/// A new request id: a random start per process, then counting up.
fn next_request_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: std::sync::LazyLock<AtomicU64> = std::sync::LazyLock::new(|| {
        let mut seed = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        // The top bit stays clear: ids never wrap within a process's life.
        AtomicU64::new(u64::from_le_bytes(seed) >> 1)
    });
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How long a call keeps looking for the directory's leader (a failover takes 1-2 s)
/// before it fails with the last error.
const FAILOVER_WAIT: Duration = Duration::from_secs(15);
/// The first pause before asking again while no leader is known, doubled up to
/// `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
const MAX_PAUSE: Duration = Duration::from_millis(400);
/// How many refused proofs (new epoch, unknown client) one call mends.
const MAX_MENDS: u32 = 4;

/// One call to the server, however many times it is sent: its request id (sent as 16
/// hex digits), by which a replicated directory applies a mutation once.
#[derive(Clone, Copy)]
pub(crate) struct Attempt {
    pub(super) id: u64,
}

impl Attempt {
    /// A call made once (no retry keeps its id).
    pub(crate) fn single() -> Attempt {
        Attempt {
            id: next_request_id(),
        }
    }
}

impl Remote {
    /// Runs one exchange with the server, `attempt`, after registering this client if it
    /// is not yet; and again, under the same request id, while the answer calls for it:
    /// - a proof refused for a reason that can be mended: a new epoch (the server
    ///   restarted, or another node leads now; its answer told the epoch) or an id it does
    ///   not know (this client registers again);
    /// - "not the leader" (a replicated directory): to the leader it names, or, while
    ///   none is known, to the next node after a pause;
    /// - a node that cannot be reached, when this client knows others.
    ///
    /// It gives up after `FAILOVER_WAIT`, with the last error.
    pub(crate) async fn with_client<T, E, F, Fut>(&self, attempt: F) -> Result<T, E>
    where
        E: ServerAnswer + From<FsError>,
        F: Fn(Attempt) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let this = Attempt::single();
        let started = std::time::Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut mends = 0;
        // Set when the server forgot this client: the id to register again in place of.
        let mut forgotten: Option<u64> = None;
        loop {
            let server = self.servers.current();
            let registered = match &self.identity {
                Some(identity) if !identity.registered() || forgotten.is_some() => {
                    self.register(identity, forgotten.unwrap_or(0)).await
                }
                _ => Ok(()),
            };
            let result = match registered {
                Ok(()) => {
                    forgotten = None;
                    attempt(this).await
                }
                Err(e) => Err(E::from(e)),
            };
            let Err(e) = &result else {
                return result;
            };
            let wait = match (e.answer(), &self.identity) {
                (Some(FsError::StaleEpoch(_)), Some(_)) if mends < MAX_MENDS => {
                    mends += 1;
                    false
                }
                (Some(FsError::UnknownClient(why)), Some(identity)) if mends < MAX_MENDS => {
                    mends += 1;
                    log::warn!("{server} does not know this client ({why}); registering again");
                    forgotten = Some(identity.client());
                    false
                }
                (Some(FsError::NotLeader(leader)), _) => {
                    let followed = self.servers.follow(&server, leader);
                    mends = 0;
                    if followed {
                        log::info!("{server} does not lead the directory; {leader} does");
                    } else {
                        self.servers.move_on(&server);
                    }
                    !followed
                }
                (Some(FsError::Unavailable(why)), _) if self.servers.len() > 1 => {
                    log::warn!("{server}: {why}; trying the next directory node");
                    mends = 0;
                    self.servers.move_on(&server);
                    true
                }
                _ => return result,
            };
            if started.elapsed() + pause > FAILOVER_WAIT {
                return result;
            }
            if wait {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }

    /// Registers this client (`dfs_common::client_id`), unless another task did since the
    /// caller saw client `stale` (0: none).
    async fn register(&self, identity: &identity::Identity, stale: u64) -> Result<(), FsError> {
        let _one = identity.registering.lock().await;
        if identity.registered() && identity.client() != stale {
            return Ok(());
        }
        identity.forget(stale);
        let exchange = client_id::Exchange::start()?;
        let http_req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{}", self.base(), client_id::REGISTER_PATH))
            .body(full(codec::encode(&exchange.request())))
            .map_err(|e| FsError::Invalid(e.to_string()))?;
        let call = async {
            let resp = self.send(http_req).await?;
            if !resp.status().is_success() {
                return Err(Self::error_of(resp).await);
            }
            let body = resp.into_body().collect().await.map_err(unavailable)?;
            codec::decode::<client_id::Registered>(&body.to_bytes())
        };
        let answer = tokio::time::timeout(META_TIMEOUT, call)
            .await
            .map_err(|_| unavailable("registration timed out"))??;
        identity.adopt(exchange, &answer)?;
        log::info!("registered with the server as client {:#x}", answer.client);
        Ok(())
    }
}
