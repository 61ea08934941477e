//! How many connections the server holds, and the count of what it refused and reaped.
//!
//! Every accepted connection takes a `Permit` from the `Gate`: at most `max_connections`
//! in all and `max_per_peer` from one peer (an IPv4 address, or an IPv6 /64, which one
//! host usually holds whole). One over either cap is answered `503` and closed at once,
//! before any of its bytes are read, so a flood of connections from a few addresses can
//! neither use up the server's file descriptors nor crowd out other peers, and the
//! descriptors held never pass what the process may open (`fit_to_fd_limit`). The timeouts
//! that reap connections that stop moving are `super::reaper`'s; this module counts them
//! too, and a reporter logs the counts every few seconds while anything happens.
//!
//! Owns: `ConnLimits`, the gate and its permits, the tally and its log line. Must not read
//! requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Descriptors kept free for everything but client connections (databases, blob files,
/// node-to-node connections, the log).
const FD_RESERVE: u64 = 256;

/// How often the reporter logs, while anything happens.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Refused connections being closed politely at one time; beyond it they are dropped.
const MAX_LINGERING: u64 = 64;

/// What a refused connection is answered.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\
    connection: close\r\nretry-after: 1\r\nx-dfs-error: EUNAVAIL\r\n\r\n";

/// Defaults of `ConnLimits` (and of the `dfs-server` options that set them). The idle
/// timeout is longer than a mount's pool keeps an idle connection (60 s), so the mount
/// closes first and never sends a request on a connection the server is closing.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 4096;
pub const DEFAULT_MAX_PER_PEER: u64 = 256;
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 75;
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;

/// The server's connection limits (`dfs-server --max-connections` and the timeouts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once, from everyone.
    pub max_connections: u64,
    /// Connections open at once from one peer.
    pub max_per_peer: u64,
    /// Longest time from the first byte of a request to the end of its head.
    pub header_timeout: Duration,
    /// Longest time a connection waits for its next request.
    pub idle_timeout: Duration,
    /// Longest time a request body goes without a byte, and an answer waits for the
    /// client to take one.
    pub body_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_peer: DEFAULT_MAX_PER_PEER,
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
        }
    }
}

impl ConnLimits {
    /// Makes room for `max_connections` in the process's descriptor limit: raises the soft
    /// limit (up to the hard one) if needed, else lowers `max_connections` to fit, and
    /// says so.
    pub fn fit_to_fd_limit(&mut self) {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        let wanted = self.max_connections + FD_RESERVE;
        if lim.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = raised.rlim_cur;
            }
        }
        if lim.rlim_cur < wanted {
            let fits = lim.rlim_cur.saturating_sub(FD_RESERVE).max(16);
            log::warn!(
                "--max-connections {} does not fit in this process's {} file descriptors; \
                 using {fits}",
                self.max_connections,
                lim.rlim_cur
            );
            self.max_connections = fits;
        }
    }
}

/// Whom a connection counts against.
fn peer_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    PerPeer,
    Total,
}

/// Why a connection was closed by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaped {
    /// No request came within the idle timeout.
    Idle,
    /// A request head was begun and not finished within the header timeout.
    SlowHead,
    /// A request body went without a byte for the body timeout.
    StalledBody,
    /// The client took no byte of an answer for the body timeout.
    StalledReader,
}

const KINDS: usize = 6;

fn slot_of_refusal(r: Refusal) -> usize {
    match r {
        Refusal::PerPeer => 0,
        Refusal::Total => 1,
    }
}

fn slot_of_reap(r: Reaped) -> usize {
    match r {
        Reaped::Idle => 2,
        Reaped::SlowHead => 3,
        Reaped::StalledBody => 4,
        Reaped::StalledReader => 5,
    }
}

/// Counts of refused and reaped connections: since the last report, and since start.
#[derive(Default)]
pub struct Tally {
    recent: [AtomicU64; KINDS],
    total: [AtomicU64; KINDS],
}

impl Tally {
    /// Connections refused over a cap since start.
    pub fn refused_total(&self) -> u64 {
        (0..KINDS)
            .filter(|slot| {
                *slot == slot_of_refusal(Refusal::PerPeer)
                    || *slot == slot_of_refusal(Refusal::Total)
            })
            .map(|slot| self.total[slot].load(Ordering::Relaxed))
            .sum()
    }

    fn count(&self, slot: usize) {
        self.recent[slot].fetch_add(1, Ordering::Relaxed);
        self.total[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, r: Refusal) {
        self.count(slot_of_refusal(r));
    }

    pub fn reaped(&self, r: Reaped) {
        log::debug!("closing a connection: {r:?}");
        self.count(slot_of_reap(r));
    }
}

struct Open {
    total: u64,
    by_peer: HashMap<IpAddr, u64>,
}

/// Admits connections within the caps.
pub struct Gate {
    pub limits: ConnLimits,
    pub tally: Arc<Tally>,
    open: Mutex<Open>,
    lingering: AtomicU64,
}

/// One admitted connection; dropping it gives its place back.
pub struct Permit {
    gate: Arc<Gate>,
    peer: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.by_peer.remove(&self.peer);
            }
        }
    }
}

impl Gate {
    pub fn new(limits: ConnLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            tally: Arc::new(Tally::default()),
            open: Mutex::new(Open {
                total: 0,
                by_peer: HashMap::new(),
            }),
            lingering: AtomicU64::new(0),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// A permit for a connection from `ip`, or why there is none (counted).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let peer = peer_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let refusal = if open.total >= self.limits.max_connections {
            Some(Refusal::Total)
        } else if open.by_peer.get(&peer).copied().unwrap_or(0) >= self.limits.max_per_peer {
            Some(Refusal::PerPeer)
        } else {
            None
        };
        if let Some(r) = refusal {
            drop(open);
            self.tally.refused(r);
            return Err(r);
        }
        open.total += 1;
        *open.by_peer.entry(peer).or_insert(0) += 1;
        Ok(Permit {
            gate: self.clone(),
            peer,
        })
    }

    /// Answers a refused connection `503` and closes it. Its request is read and thrown
    /// away for at most a second first (closing with unread bytes would reset the
    /// connection, and the client might lose the answer); past `MAX_LINGERING` such
    /// closes at once, it is dropped without a word.
    pub fn turn_away(self: &Arc<Self>, stream: TcpStream) {
        let _ = stream.try_write(BUSY);
        if self.lingering.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let gate = self.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let (mut rd, mut wr) = stream.split();
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
                while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
            gate.lingering.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// The log line for counts `recent` and `total` (indexed by slot), or `None` if
    /// nothing happened recently.
    fn report(&self, recent: [u64; KINDS], total: [u64; KINDS]) -> Option<String> {
        let refused = |c: &[u64; KINDS]| c[0] + c[1];
        let closed = |c: &[u64; KINDS]| c[2..].iter().sum::<u64>();
        if refused(&recent) + closed(&recent) == 0 {
            return None;
        }
        let l = &self.limits;
        Some(format!(
            "connections: {} open; in the last {} s {} refused, {} closed; since start: {} \
             refused ({} over the per-peer cap of {}, {} over the total cap of {}), closed \
             {} idle, {} slow heads, {} stalled bodies, {} stalled readers",
            self.open(),
            REPORT_EVERY.as_secs(),
            refused(&recent),
            closed(&recent),
            refused(&total),
            total[0],
            l.max_per_peer,
            total[1],
            l.max_connections,
            total[2],
            total[3],
            total[4],
            total[5],
        ))
    }

    /// Logs the counts every `REPORT_EVERY` while anything is refused or reaped, until
    /// `stop` turns true.
    pub fn spawn_reporter(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let gate = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REPORT_EVERY);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = super::raised(&mut stop) => return,
                }
                let t = &gate.tally;
                let recent = std::array::from_fn(|i| t.recent[i].swap(0, Ordering::Relaxed));
                let total = std::array::from_fn(|i| t.total[i].load(Ordering::Relaxed));
                if let Some(line) = gate.report(recent, total) {
                    if recent[0] + recent[1] > 0 {
                        log::warn!("{line}");
                    } else {
                        log::info!("{line}");
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u64, per_peer: u64) -> ConnLimits {
        ConnLimits {
            max_connections: total,
            max_per_peer: per_peer,
            ..ConnLimits::default()
        }
    }

    #[test]
    fn the_caps_hold_and_permits_give_places_back() {
        let gate = Gate::new(limits(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refusal::PerPeer));
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).err(), Some(Refusal::Total));
        drop(a1);
        let _a3 = gate.admit(a).unwrap();
        assert_eq!(gate.open(), 3);
        let line = gate.report([1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]).unwrap();
        assert!(
            line.contains(
                "since start: 2 refused (1 over the per-peer cap of 2, 1 over the total cap of 3)"
            ),
            "{line}"
        );
        assert_eq!(gate.report([0; KINDS], [1, 1, 0, 0, 0, 0]), None);
    }

    #[test]
    fn an_ipv6_host_is_one_peer_and_a_mapped_ipv4_address_is_itself() {
        let gate = Gate::new(limits(10, 1));
        let _one = gate.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(gate.admit("2001:db8::ffff:2".parse().unwrap()).is_err());
        let _other = gate.admit("2001:db8:0:1::1".parse().unwrap()).unwrap();
        let _v4 = gate.admit("10.1.1.1".parse().unwrap()).unwrap();
        assert!(gate.admit("::ffff:10.1.1.1".parse().unwrap()).is_err());
    }
}
