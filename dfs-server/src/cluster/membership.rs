//! Cluster membership and failure detection: which nodes exist, with which roles, and
//! whether each one is alive, suspect or dead, learned by gossip over UDP.
//!
//! Owns: the gossip UDP socket (bound on the node's advertised address: same port number
//! as its TCP HTTP listener), the SWIM protocol state (driven through `foca`), the wire
//! envelope that authenticates every gossip packet with the cluster key, and the member
//! list that other services read. Must not touch blobs, the namespace, placement or
//! repair: callers decide what a dead member means (e.g. derive `Departed` after a grace).
//!
//! Why SWIM (foca) and not chitchat: the question we ask is exactly "is this node alive",
//! and SWIM's probe / indirect probe / suspicion cycle is a failure detector built for it,
//! with a bounded, tunable detection time and few false positives. Its state is one entry
//! per member, where chitchat replicates a key-value store per node that we don't need
//! (the roles fit in the identity). And foca is a no-std state machine that we drive from
//! our own tokio loop, so every byte on the wire passes through our code: we authenticate
//! packets with the cluster key before the protocol ever sees them.
//!
//! Wire format of every packet: `b"DFSG"` | version 1 | unix ms (u64 LE) | foca payload
//! (bincode) | HMAC-SHA256 over everything before it. A packet with a bad shape, a bad MAC
//! or a clock more than 60 s off is dropped and counted: a node without the key can
//! neither join nor poison membership. (A packet can be replayed within those 60 s; SWIM
//! messages are idempotent enough for that to be harmless.)

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut};
use dfs_common::cluster::MemberState;
use foca::{AccumulatingRuntime, Codec, Config, Foca, Header, Member, NoCustomBroadcast};
use foca::{OwnedNotification as Note, PeriodicParams, State, Timer};
use rand::{rngs::StdRng, SeedableRng};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::watch;

pub const ROLE_DIRECTORY: u8 = dfs_common::cluster::ROLE_DIRECTORY;

const MAGIC: &[u8; 4] = b"DFSG";
const WIRE_VERSION: u8 = 1;
/// Magic, version, timestamp.
const PREFIX_LEN: usize = 4 + 1 + 8;
const MAC_LEN: usize = 32;
const MAX_SKEW_MS: u64 = 60_000;
/// Largest foca payload (foca's default); the envelope adds 45 bytes.
const MAX_PAYLOAD: usize = 1400;
/// How often a node that knows no live member re-announces itself.
const JOIN_EVERY: Duration = Duration::from_secs(1);
/// Every this many join ticks, announce to the seeds we think are down.
const DEAD_SEEDS_EVERY_TICKS: u64 = 4;
/// Warn again about rejected packets from the same source after this long.
const WARN_AGAIN_AFTER: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct MembershipConfig {
    /// This node's address: UDP gossip binds here (same port number as the HTTP listener).
    pub advertise: SocketAddr,
    /// Bit set of `dfs_common::cluster::ROLE_*`.
    pub roles: u8,
    /// Peers to announce to.
    pub seeds: Vec<SocketAddr>,
    /// Cluster key.
    pub key: [u8; 32],
    pub probe_period: Duration,
    pub suspect_to_dead: Duration,
}

impl MembershipConfig {
    pub fn new(advertise: SocketAddr, roles: u8, seeds: Vec<SocketAddr>, key: [u8; 32]) -> Self {
        MembershipConfig {
            advertise,
            roles,
            seeds,
            key,
            probe_period: Duration::from_millis(500),
            suspect_to_dead: Duration::from_secs(3),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MemberInfo {
    pub addr: SocketAddr,
    pub roles: u8,
    /// Alive, Suspect or Dead (never Departed here).
    pub state: MemberState,
    /// When `state` last changed.
    pub since: Instant,
}

/// The member list, kept up to date by a gossip task until the stop watch says stop.
pub struct Membership {
    view: Mutex<BTreeMap<SocketAddr, MemberInfo>>,
    rejected: AtomicU64,
    changes: watch::Sender<u64>,
}

impl Membership {
    /// Binds the UDP socket on `cfg.advertise` (so packets leave from that IP), starts the
    /// gossip task and announces to the seeds. The task ends, dropping the socket, when
    /// `stop` turns true or its sender is dropped.
    pub async fn start(
        cfg: MembershipConfig,
        stop: watch::Receiver<bool>,
    ) -> io::Result<Arc<Membership>> {
        let socket = UdpSocket::bind(cfg.advertise).await?;
        let addr = match cfg.advertise.port() {
            0 => socket.local_addr()?,
            _ => cfg.advertise,
        };
        let shared = Arc::new(Membership {
            view: Mutex::new(BTreeMap::new()),
            rejected: AtomicU64::new(0),
            changes: watch::channel(0).0,
        });
        let identity = NodeId::new(addr, cfg.roles, unix_time().as_micros() as u64);
        let mut seed = [0u8; 32];
        let no_randomness = |_| io::Error::other("no system randomness for gossip");
        SystemRandom::new().fill(&mut seed).map_err(no_randomness)?;
        let rng = StdRng::from_seed(seed);
        let driver = Driver {
            foca: Foca::new(identity, swim_config(&cfg), rng, BincodeCodec),
            runtime: AccumulatingRuntime::new(),
            socket,
            key: hmac::Key::new(hmac::HMAC_SHA256, &cfg.key),
            seeds: cfg.seeds,
            timers: BinaryHeap::new(),
            connected: false,
            warned: HashMap::new(),
            shared: Arc::clone(&shared),
        };
        driver.refresh_view(); // lists this node before `start` returns
        tokio::spawn(driver.run(stop));
        Ok(shared)
    }

    /// Every member known, this node included (always Alive), sorted by address. A dead
    /// member stays listed until it comes back.
    pub fn members(&self) -> Vec<MemberInfo> {
        lock(&self.view).values().cloned().collect()
    }

    /// Gossip packets refused since start (bad MAC, malformed, clock skew over 60 s).
    pub fn rejected_packets(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Changes (value: a change counter) whenever a member appears or changes state.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// A node as SWIM knows it. `boot` grows with every process start (unix µs) and with every
/// rejoin after being declared down, so the newest incarnation of an address wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct NodeId {
    addr: SocketAddr,
    roles: u8,
    boot: u64,
}

impl NodeId {
    fn new(addr: SocketAddr, roles: u8, boot: u64) -> NodeId {
        NodeId { addr, roles, boot }
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        let boot = self.boot.wrapping_add(1);
        Some(NodeId::new(self.addr, self.roles, boot))
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.boot > adversary.boot
    }
}

/// foca's payload encoding, with bincode like the rest of the project.
struct BincodeCodec;

impl BincodeCodec {
    fn encode<V: Serialize>(value: &V, mut buf: impl BufMut) -> io::Result<()> {
        let config = bincode::config::standard().with_limit::<MAX_PAYLOAD>();
        let bytes = bincode::serde::encode_to_vec(value, config).map_err(io::Error::other)?;
        if buf.remaining_mut() < bytes.len() {
            return Err(io::Error::other("gossip packet full"));
        }
        buf.put_slice(&bytes);
        Ok(())
    }

    /// foca hands us contiguous slices, so `chunk()` is the whole input.
    fn decode<V: DeserializeOwned>(mut buf: impl Buf) -> io::Result<V> {
        let config = bincode::config::standard().with_limit::<MAX_PAYLOAD>();
        let (value, used) =
            bincode::serde::decode_from_slice(buf.chunk(), config).map_err(io::Error::other)?;
        buf.advance(used);
        Ok(value)
    }
}

impl Codec<NodeId> for BincodeCodec {
    type Error = io::Error;

    fn encode_header(&mut self, h: &Header<NodeId>, buf: impl BufMut) -> io::Result<()> {
        Self::encode(h, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> io::Result<Header<NodeId>> {
        Self::decode(buf)
    }

    fn encode_member(&mut self, m: &Member<NodeId>, buf: impl BufMut) -> io::Result<()> {
        Self::encode(m, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> io::Result<Member<NodeId>> {
        Self::decode(buf)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_time() -> Duration {
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn unix_ms() -> u64 {
    unix_time().as_millis() as u64
}

/// Wraps a foca payload in the authenticated envelope.
fn seal(key: &hmac::Key, payload: &[u8], now_ms: u64) -> Vec<u8> {
    let mut packet = Vec::with_capacity(PREFIX_LEN + payload.len() + MAC_LEN);
    packet.extend_from_slice(MAGIC);
    packet.push(WIRE_VERSION);
    packet.extend_from_slice(&now_ms.to_le_bytes());
    packet.extend_from_slice(payload);
    let tag = hmac::sign(key, &packet);
    packet.extend_from_slice(tag.as_ref());
    packet
}

/// Checks the envelope and returns the foca payload, or why the packet is refused.
fn open<'a>(key: &hmac::Key, packet: &'a [u8], now_ms: u64) -> Result<&'a [u8], &'static str> {
    if packet.len() < PREFIX_LEN + MAC_LEN {
        return Err("too short");
    }
    let (signed, mac) = packet.split_at(packet.len() - MAC_LEN);
    if &signed[..4] != MAGIC || signed[4] != WIRE_VERSION {
        return Err("bad magic or version");
    }
    hmac::verify(key, signed, mac).map_err(|_| "bad MAC (wrong or no cluster key)")?;
    let mut sent_ms = [0u8; 8];
    sent_ms.copy_from_slice(&signed[5..PREFIX_LEN]);
    if u64::from_le_bytes(sent_ms).abs_diff(now_ms) > MAX_SKEW_MS {
        return Err("timestamp more than 60 s off");
    }
    Ok(&signed[PREFIX_LEN..])
}

fn swim_config(cfg: &MembershipConfig) -> Config {
    let probe_period = cfg.probe_period.max(Duration::from_millis(100));
    let mut config = Config::simple();
    config.probe_period = probe_period;
    config.probe_rtt = probe_period * 2 / 5;
    config.suspect_to_down_after = cfg.suspect_to_dead.max(Duration::from_millis(100));
    // A dead member stays listed until it comes back (with a newer identity).
    config.remove_down_after = None;
    // Tell a member we think is down, so it rejoins with a renewed identity.
    config.notify_down_members = true;
    let every = |frequency, members| {
        let num_members = NonZeroUsize::new(members)?;
        Some(PeriodicParams {
            frequency,
            num_members,
        })
    };
    config.periodic_announce = every(Duration::from_secs(10), 1);
    // Heals partitions while we know live members (see `join_targets` for the rest).
    config.periodic_announce_to_down_members = every(Duration::from_secs(5), 2);
    config.periodic_gossip = every(probe_period / 2, 3);
    config
}

type Swim = Foca<NodeId, BincodeCodec, StdRng, NoCustomBroadcast>;

/// The gossip task: the only owner of foca and of the socket.
struct Driver {
    foca: Swim,
    runtime: AccumulatingRuntime<NodeId>,
    socket: UdpSocket,
    key: hmac::Key,
    seeds: Vec<SocketAddr>,
    /// foca's timers, fired in (deadline, foca's order) so events keep their order.
    timers: BinaryHeap<Reverse<(tokio::time::Instant, Timer<NodeId>)>>,
    /// Whether foca says some live member knows us (between `Active` and `Idle`).
    connected: bool,
    /// Sources of rejected packets and when we last warned about each.
    warned: HashMap<SocketAddr, Instant>,
    shared: Arc<Membership>,
}

impl Driver {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let me = self.foca.identity().addr;
        let mut join_tick = tokio::time::interval(JOIN_EVERY);
        join_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        let mut buf = vec![0u8; 2 * MAX_PAYLOAD];
        log::info!("gossip on {me} (udp) started, seeds {:?}", self.seeds);
        while !*stop.borrow() {
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let next_timer = self.timers.peek().map_or(far, |Reverse((at, _))| *at);
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.on_packet(&buf[..len], from).await,
                    Err(e) => {
                        log::debug!("gossip on {me}: receive failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = tokio::time::sleep_until(next_timer) => self.fire_due_timers().await,
                _ = join_tick.tick() => {
                    self.announce(ticks).await;
                    ticks += 1;
                }
            }
        }
        log::info!("gossip on {me} stopped");
    }

    async fn on_packet(&mut self, packet: &[u8], from: SocketAddr) {
        let payload = match open(&self.key, packet, unix_ms()) {
            Ok(payload) => payload,
            Err(reason) => return self.reject(from, reason),
        };
        match self.foca.handle_data(payload, &mut self.runtime) {
            Ok(()) => {}
            Err(
                foca::Error::Decode(_) | foca::Error::MalformedPacket | foca::Error::DataTooBig,
            ) => self.reject(from, "malformed payload"),
            Err(e) => log::debug!("gossip: packet from {from} ignored: {e}"),
        }
        self.drain().await;
    }

    fn reject(&mut self, from: SocketAddr, reason: &str) {
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let last_warned = self.warned.get(&from);
        if last_warned.is_none_or(|at| now - *at >= WARN_AGAIN_AFTER) {
            if self.warned.len() >= 4096 {
                self.warned.clear();
            }
            self.warned.insert(from, now);
            log::warn!("gossip: refused packet from {from}: {reason} (more at debug level)");
        } else {
            log::debug!("gossip: refused packet from {from}: {reason}");
        }
    }

    async fn fire_due_timers(&mut self) {
        let now = tokio::time::Instant::now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, timer))) = self.timers.pop() {
                if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
                    log::debug!("gossip: timer: {e}");
                }
                self.drain().await;
            }
        }
    }

    /// Whom to announce ourselves to on join tick number `tick`.
    fn join_targets(&self, tick: u64) -> Vec<SocketAddr> {
        let mut targets: Vec<SocketAddr> = if !self.connected {
            // Alone (just started, or everyone else looks down): knock on every known door.
            let known = self.foca.iter_membership_state().map(|m| m.id().addr);
            self.seeds.iter().copied().chain(known).collect()
        } else if tick.is_multiple_of(DEAD_SEEDS_EVERY_TICKS) {
            // A seed we think is down may be on the far side of a partition that healed.
            let mut seeds = self.seeds.clone();
            seeds.retain(|seed| self.foca.iter_members().all(|m| m.id().addr != *seed));
            seeds
        } else {
            Vec::new()
        };
        let me = self.foca.identity().addr;
        targets.retain(|addr| *addr != me);
        targets.sort();
        targets.dedup();
        targets
    }

    async fn announce(&mut self, tick: u64) {
        for addr in self.join_targets(tick) {
            // foca accepts an announce addressed to any identity of its own address.
            let target = NodeId::new(addr, 0, 0);
            if let Err(e) = self.foca.announce(target, &mut self.runtime) {
                log::debug!("gossip: announce to {addr}: {e}");
            }
        }
        self.drain().await;
    }

    /// Carries out what foca asked for: sends, timers, notifications; then refreshes the view.
    async fn drain(&mut self) {
        while let Some((to, payload)) = self.runtime.to_send() {
            let packet = seal(&self.key, &payload, unix_ms());
            if let Err(e) = self.socket.send_to(&packet, to.addr).await {
                log::debug!("gossip: send to {}: {e}", to.addr);
            }
        }
        let now = tokio::time::Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.push(Reverse((now + after, timer)));
        }
        while let Some(note) = self.runtime.to_notify() {
            let bad_news = matches!(note, Note::MemberDown(_) | Note::Idle | Note::Defunct);
            let level = if bad_news {
                log::Level::Warn
            } else {
                log::Level::Info
            };
            log::log!(level, "gossip: {note:?}");
            match note {
                Note::Active => self.connected = true,
                Note::Idle | Note::Rejoin(_) | Note::Defunct => self.connected = false,
                _ => {}
            }
        }
        self.refresh_view();
    }

    /// Copies foca's view (one identity per address, renames included) into the shared list.
    fn refresh_view(&self) {
        let me = self.foca.identity();
        let now = Instant::now();
        let mut changed = false;
        let mut view = lock(&self.shared.view);
        let myself = Member::new(me.clone(), 0, State::Alive);
        let all = self.foca.iter_membership_state();
        for member in all.filter(|m| m.id().addr != me.addr).chain([&myself]) {
            let NodeId { addr, roles, .. } = *member.id();
            let state = match member.state() {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down => MemberState::Dead,
            };
            let since = match view.get(&addr) {
                Some(old) if old.state == state && old.roles == roles => continue,
                Some(old) if old.state == state => old.since,
                _ => now,
            };
            let info = MemberInfo {
                addr,
                roles,
                state,
                since,
            };
            view.insert(addr, info);
            changed = true;
        }
        drop(view);
        if changed {
            self.shared.changes.send_modify(|count| *count += 1);
        }
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
