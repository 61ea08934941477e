//! One live callback connection: a task that sends `Hello`, then drains the client's queue
//! into a bounded mpsc channel (the HTTP response body reads the other end), and sends a
//! `Heartbeat` every `HEARTBEAT_SECS` while idle.
//!
//! Owns: the delivery loop. Must not decide what to break (that is the registry's caller).

use super::{ClientId, Next, Registry};
use bytes::Bytes;
use dfs_common::codec;
use dfs_common::proto::{CallbackFrame, HEARTBEAT_SECS};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Frames in flight between the queue and the socket.
const LIVE_CAPACITY: usize = 64;

/// Opens the callback channel of `client`: the returned receiver yields the bytes of the
/// response body (frames), and ends when the connection is replaced or the server stops.
pub fn open(registry: Arc<Registry>, client: ClientId) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(LIVE_CAPACITY);
    let (generation, notify) = registry.connect(client);
    tokio::spawn(pump(registry, client, generation, notify, tx));
    rx
}

fn bytes_of(frame: &CallbackFrame) -> Bytes {
    Bytes::from(codec::frame(frame))
}

async fn pump(
    registry: Arc<Registry>,
    client: ClientId,
    generation: u64,
    notify: Arc<Notify>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let hello = bytes_of(&CallbackFrame::Hello {
        epoch: registry.epoch(),
        client,
    });
    if tx.send(Ok(hello)).await.is_err() {
        registry.disconnect(client, generation);
        return;
    }
    log::debug!("callback channel of client {client} open (generation {generation})");
    let period = Duration::from_secs(HEARTBEAT_SECS);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        match registry.next(client, generation) {
            Next::Stop => break,
            Next::Frame(frame) => {
                tokio::select! {
                    permit = tx.reserve() => match permit {
                        Ok(p) => p.send(Ok(frame)),
                        Err(_) => {
                            registry.requeue_front(client, frame);
                            break;
                        }
                    },
                    // Replaced or stopping while the client is slow: keep the frame.
                    _ = notify.notified() => registry.requeue_front(client, frame),
                }
            }
            Next::Idle => {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = heartbeat.tick() => {
                        if tx.send(Ok(bytes_of(&CallbackFrame::Heartbeat))).await.is_err() {
                            break;
                        }
                    }
                    _ = tx.closed() => break,
                }
            }
        }
    }
    registry.disconnect(client, generation);
    log::debug!("callback channel of client {client} closed (generation {generation})");
}
