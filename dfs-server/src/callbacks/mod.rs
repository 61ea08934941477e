//! The callback registry: which client holds a promise on which inode, and the frames
//! (breaks) owed to each client, delivered over its callback channel (`channel`).
//!
//! Two kinds of promise: on an inode's attributes and contents (`Break{ino}`, consumed by
//! the break: the client asks again before it trusts the inode), and on the names of a
//! directory (`EntryBreak{dir, name}`, *not* consumed): a client keeps caching names it
//! learnt in a directory (and the kernel keeps their dentries) after the directory's own
//! attributes changed, so every later change of one of those names must still reach it.
//! Any promise on an inode also watches its names (a lookup promises the parent, a
//! listing the directory); a watch ends only when its client is forgotten.
//!
//! Owns: promises, per-client queues of undelivered frames (bounded; on overflow the queue
//! is dropped and the client gets `RevalidateAll`), connection replacement, forgetting
//! clients that stayed away, and the epoch. Must not touch: the namespace or blobs; it is
//! told what changed.
//!
//! Every frame for a client goes through its queue; the client's live connection (if
//! any) drains the queue into a bounded tokio mpsc channel that feeds the HTTP body. So a
//! frame is never lost because the client is disconnected or slow: it waits in the queue.

pub mod channel;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use dfs_common::codec;
use dfs_common::proto::CallbackFrame;
use dfs_common::Ino;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most frames queued for one client before the queue is dropped (→ RevalidateAll).
pub const QUEUE_MAX: usize = 10_000;
/// A client disconnected for longer than this is forgotten with its promises.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// A client id. 0 means "anonymous" (no `x-dfs-client`): it gets no promises.
pub type ClientId = u64;

struct Conn {
    generation: u64,
    notify: Arc<Notify>,
}

struct Client {
    inos: HashSet<Ino>,
    /// Directories whose names this client is told about (see `Inner::watchers`).
    watching: HashSet<Ino>,
    queue: VecDeque<Bytes>,
    /// Frames were dropped: the next frame delivered is RevalidateAll.
    lost: bool,
    conn: Option<Conn>,
    last_seen: Instant,
}

impl Client {
    fn new() -> Client {
        Client {
            inos: HashSet::new(),
            watching: HashSet::new(),
            queue: VecDeque::new(),
            lost: false,
            conn: None,
            last_seen: Instant::now(),
        }
    }

    fn push(&mut self, frame: &CallbackFrame) {
        if self.lost {
            return;
        }
        if self.queue.len() >= QUEUE_MAX {
            crate::metrics::BREAKS_DROPPED.add(self.queue.len() as u64 + 1);
            self.queue.clear();
            self.lost = true;
        } else {
            crate::metrics::BREAKS_QUEUED.inc();
            self.queue.push_back(Bytes::from(codec::frame(frame)));
        }
        if let Some(c) = &self.conn {
            c.notify.notify_one();
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Promises on attributes and contents, consumed by their break.
    promises: HashMap<Ino, HashSet<ClientId>>,
    /// Watches on the names of a directory (keyed by any inode a client was shown; only
    /// directories have names), kept across breaks.
    watchers: HashMap<Ino, HashSet<ClientId>>,
    clients: HashMap<ClientId, Client>,
    next_generation: u64,
    stopping: bool,
}

/// What the connection of a client should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send this frame.
    Frame(Bytes),
    /// Nothing queued: wait for a notification.
    Idle,
    /// This connection was replaced (or the server is stopping): end it.
    Stop,
}

/// The registry of one server process.
pub struct Registry {
    epoch: u64,
    inner: Mutex<Inner>,
}

impl Registry {
    pub fn new(epoch: u64) -> Registry {
        Registry {
            epoch,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A random epoch for this process start.
    pub fn random_epoch() -> u64 {
        let mut b = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .expect("system randomness");
        u64::from_le_bytes(b)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `client` now holds a promise on each of `inos`.
    pub fn promise(&self, client: ClientId, inos: &[Ino]) {
        if client == 0 || inos.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let c = inner.clients.entry(client).or_insert_with(Client::new);
        c.last_seen = Instant::now();
        c.inos.extend(inos.iter().copied());
        c.watching.extend(inos.iter().copied());
        for &ino in inos {
            inner.promises.entry(ino).or_default().insert(client);
            inner.watchers.entry(ino).or_default().insert(client);
        }
    }

    /// Breaks the promises of every client but `except` on `inos` (frame `Break`) and
    /// tells every watcher of the directories of `entries` (frame `EntryBreak` per entry,
    /// then `Break` if the directory is also in `inos`). The broken promises on inodes and
    /// directories' attributes are removed; the watches stay.
    pub fn break_changes(&self, inos: &[Ino], entries: &[(Ino, Vec<u8>)], except: ClientId) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for (c, frame) in Self::plan_breaks(inner, inos, entries, except) {
            if let Some(client) = inner.clients.get_mut(&c) {
                client.push(&frame);
            }
        }
    }

    /// Like `break_changes`, but each client gets all of its breaks in ONE frame
    /// (`CallbackFrame::Group` when there are several), so it applies them together: used
    /// for a transaction, whose readers must see none or all of it.
    pub fn break_group(&self, inos: &[Ino], entries: &[(Ino, Vec<u8>)], except: ClientId) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut per_client: Vec<(ClientId, Vec<CallbackFrame>)> = Vec::new();
        for (c, frame) in Self::plan_breaks(inner, inos, entries, except) {
            match per_client.iter_mut().find(|(x, _)| *x == c) {
                Some((_, frames)) => frames.push(frame),
                None => per_client.push((c, vec![frame])),
            }
        }
        for (c, mut frames) in per_client {
            let frame = if frames.len() == 1 {
                frames.pop().expect("one frame")
            } else {
                CallbackFrame::Group(frames)
            };
            if let Some(client) = inner.clients.get_mut(&c) {
                client.push(&frame);
            }
        }
    }

    /// The frames that break every promise on `inos` and `entries` but those of `except`;
    /// forgets the broken promises.
    fn plan_breaks(
        inner: &mut Inner,
        inos: &[Ino],
        entries: &[(Ino, Vec<u8>)],
        except: ClientId,
    ) -> Vec<(ClientId, CallbackFrame)> {
        let mut frames: Vec<(ClientId, CallbackFrame)> = Vec::new();
        for (dir, name) in entries {
            if let Some(holders) = inner.watchers.get(dir) {
                let mut hs: Vec<_> = holders.iter().copied().filter(|&c| c != except).collect();
                hs.sort_unstable();
                for c in hs {
                    frames.push((
                        c,
                        CallbackFrame::EntryBreak {
                            dir: *dir,
                            name: name.clone(),
                        },
                    ));
                }
            }
        }
        let mut touched: Vec<Ino> = inos.to_vec();
        for (dir, _) in entries {
            if !touched.contains(dir) {
                touched.push(*dir);
            }
        }
        for ino in touched {
            let Some(holders) = inner.promises.get_mut(&ino) else {
                continue;
            };
            let mut broken: Vec<_> = holders.iter().copied().filter(|&c| c != except).collect();
            broken.sort_unstable();
            holders.retain(|&c| c == except);
            if holders.is_empty() {
                inner.promises.remove(&ino);
            }
            for c in broken {
                if let Some(client) = inner.clients.get_mut(&c) {
                    client.inos.remove(&ino);
                }
                if inos.contains(&ino) {
                    frames.push((c, CallbackFrame::Break { ino }));
                }
            }
        }
        frames
    }

    /// `Break{ino}` to every holder of a promise on `ino` but `except`.
    pub fn break_ino(&self, ino: Ino, except: ClientId) {
        self.break_changes(&[ino], &[], except);
    }

    /// `EntryBreak{dir, name}` to every holder of a promise on `dir` but `except`.
    pub fn break_entry(&self, dir: Ino, name: &[u8], except: ClientId) {
        self.break_changes(&[], &[(dir, name.to_vec())], except);
    }

    /// A new callback connection of `client`; replaces (ends) any previous one. Returns
    /// its generation and the notifier it waits on.
    pub fn connect(&self, client: ClientId) -> (u64, Arc<Notify>) {
        let mut inner = self.lock();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let c = inner.clients.entry(client).or_insert_with(Client::new);
        c.last_seen = Instant::now();
        let notify = Arc::new(Notify::new());
        if let Some(old) = c.conn.replace(Conn {
            generation,
            notify: notify.clone(),
        }) {
            old.notify.notify_one();
        }
        (generation, notify)
    }

    /// The next frame for connection `generation` of `client`.
    pub fn next(&self, client: ClientId, generation: u64) -> Next {
        let mut inner = self.lock();
        if inner.stopping {
            return Next::Stop;
        }
        let Some(c) = inner.clients.get_mut(&client) else {
            return Next::Stop;
        };
        if c.conn.as_ref().map(|x| x.generation) != Some(generation) {
            return Next::Stop;
        }
        c.last_seen = Instant::now();
        if c.lost {
            c.lost = false;
            c.queue.clear();
            return Next::Frame(Bytes::from(codec::frame(&CallbackFrame::RevalidateAll)));
        }
        match c.queue.pop_front() {
            Some(f) => {
                crate::metrics::BREAKS_DELIVERED.inc();
                Next::Frame(f)
            }
            None => Next::Idle,
        }
    }

    /// Frames waiting in every client's queue (read when metrics are scraped).
    pub fn queued_frames(&self) -> usize {
        self.lock().clients.values().map(|c| c.queue.len()).sum()
    }

    /// A frame taken by `next` could not be delivered: put it back in front.
    pub fn requeue_front(&self, client: ClientId, frame: Bytes) {
        let mut inner = self.lock();
        if let Some(c) = inner.clients.get_mut(&client) {
            if !c.lost {
                c.queue.push_front(frame);
                if c.queue.len() > QUEUE_MAX {
                    c.queue.clear();
                    c.lost = true;
                }
            }
        }
    }

    /// Connection `generation` of `client` ended.
    pub fn disconnect(&self, client: ClientId, generation: u64) {
        let mut inner = self.lock();
        if let Some(c) = inner.clients.get_mut(&client) {
            if c.conn.as_ref().map(|x| x.generation) == Some(generation) {
                c.conn = None;
                c.last_seen = Instant::now();
            }
        }
    }

    /// Forgets clients disconnected since before `now - FORGET_AFTER`, with their promises.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let gone: Vec<ClientId> = inner
            .clients
            .iter()
            .filter(|(_, c)| c.conn.is_none() && now.duration_since(c.last_seen) > FORGET_AFTER)
            .map(|(&id, _)| id)
            .collect();
        for id in &gone {
            if let Some(c) = inner.clients.remove(id) {
                for (inos, held) in [
                    (c.inos, &mut inner.promises),
                    (c.watching, &mut inner.watchers),
                ] {
                    for ino in inos {
                        if let Some(h) = held.get_mut(&ino) {
                            h.remove(id);
                            if h.is_empty() {
                                held.remove(&ino);
                            }
                        }
                    }
                }
            }
        }
        gone.len()
    }

    /// Ends every callback connection (server shutdown).
    pub fn stop(&self) {
        let mut inner = self.lock();
        inner.stopping = true;
        for c in inner.clients.values() {
            if let Some(conn) = &c.conn {
                conn.notify.notify_one();
            }
        }
    }

    /// Clients known, promises held and directory watches (for logs and tests).
    pub fn counts(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (
            inner.clients.len(),
            inner.promises.values().map(|h| h.len()).sum(),
            inner.watchers.values().map(|h| h.len()).sum(),
        )
    }

    /// Whether `client` holds a promise on `ino`.
    pub fn holds(&self, client: ClientId, ino: Ino) -> bool {
        self.lock()
            .promises
            .get(&ino)
            .is_some_and(|h| h.contains(&client))
    }
}
