//! The lock record of one file id and the pure rules over it: who is live, who conflicts
//! with a request, how an owner's own locks are replaced, merged and split (POSIX-style),
//! and what a release removes.
//!
//! A lease that runs out is lost only to a competitor. The holder stays in the record,
//! *lapsed*, for `LAPSED_KEEP_MS`: it conflicts with nobody, and the first request it
//! would have conflicted with takes its place; until then its client keeps it by renewing,
//! by asking for it again (same token) or by storing with its token. So a client that is
//! alive but slow (its renewals stuck behind its own bulk work or a loaded server) never
//! loses its turn, or its writes, when nobody else wanted the file.
//!
//! Owns: `Holder`, `InoRecord` (the bincode value stored per file id) and every decision
//! about them. Must not touch: the database, the clock (callers pass `now_ms`), stripes,
//! HTTP.

use dfs_common::locks::{LockClass, LockInfo, LockMode, LockRange, LockRequest};
use dfs_common::Ino;
use serde::{Deserialize, Serialize};

/// One held lock as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub class: LockClass,
    pub mode: LockMode,
    pub range: LockRange,
    pub client: u64,
    pub owner: u64,
    pub pid: u32,
    pub label: String,
    pub token: u64,
    /// Absolute wall-clock expiry, milliseconds since the Unix epoch (so a lease keeps
    /// counting across a server restart).
    pub expires_at_ms: u64,
}

/// How long a holder whose lease ran out stays in its record (see the module comment).
pub const LAPSED_KEEP_MS: u64 = 10 * 60 * 1000;

impl Holder {
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }

    /// Whether it is still in the record: live, or lapsed less than `LAPSED_KEEP_MS` ago.
    fn kept(&self, now_ms: u64) -> bool {
        self.expires_at_ms.saturating_add(LAPSED_KEEP_MS) > now_ms
    }

    /// Whether it conflicts with `req` by `client`, lease aside: same class, another
    /// owner, overlapping range, and at least one of the two exclusive.
    fn contends(&self, req: &LockRequest, client: u64) -> bool {
        self.class == req.class
            && !(self.client == client && self.owner == req.owner)
            && self.range.overlaps(&req.range)
            && (self.mode == LockMode::Exclusive || req.mode == LockMode::Exclusive)
    }

    fn same_owner(&self, class: LockClass, client: u64, owner: u64) -> bool {
        self.class == class && self.client == client && self.owner == owner
    }

    pub fn info(&self, ino: Ino, now_ms: u64) -> LockInfo {
        LockInfo {
            ino,
            class: self.class,
            mode: self.mode,
            range: self.range,
            client: self.client,
            owner: self.owner,
            pid: self.pid,
            label: self.label.clone(),
            token: self.token,
            expires_in_ms: self.expires_at_ms.saturating_sub(now_ms),
        }
    }

    /// "label (client 0x.., pid .., token ..)" for error messages.
    pub fn describe(&self) -> String {
        let label = if self.label.is_empty() {
            "?"
        } else {
            &self.label
        };
        format!(
            "{:?} {:?} lock held by {label} (client {:#x}, owner {:#x}, pid {}, token {})",
            self.mode, self.class, self.client, self.owner, self.pid, self.token
        )
    }
}

/// Every lock on one file id. An empty record is not stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InoRecord {
    pub holders: Vec<Holder>,
}

/// The parts of `r` outside `cut` (zero, one or two ranges).
fn subtract(r: LockRange, cut: LockRange) -> Vec<LockRange> {
    let mut out = Vec::new();
    if !r.overlaps(&cut) {
        out.push(r);
        return out;
    }
    if r.start < cut.start {
        out.push(LockRange {
            start: r.start,
            end: cut.start - 1,
        });
    }
    if cut.end < r.end {
        out.push(LockRange {
            start: cut.end + 1,
            end: r.end,
        });
    }
    out
}

/// Whether two ranges overlap or touch (so that POSIX merges them).
fn touches(a: &LockRange, b: &LockRange) -> bool {
    a.overlaps(b)
        || (a.end != u64::MAX && a.end + 1 == b.start)
        || (b.end != u64::MAX && b.end + 1 == a.start)
}

/// What an acquire decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Granted {
        token: u64,
    },
    /// `holder` conflicts; `wake_at_ms` is the earliest expiry among all conflicting holders.
    Conflict {
        holder: Holder,
        wake_at_ms: u64,
    },
}

impl InoRecord {
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// Drops holders lapsed for longer than `LAPSED_KEEP_MS`; true if any went.
    pub fn prune(&mut self, now_ms: u64) -> bool {
        let before = self.holders.len();
        self.holders.retain(|h| h.kept(now_ms));
        self.holders.len() != before
    }

    /// When the first holder leaves the record for good (the key of the expiry index).
    pub fn min_expiry(&self) -> Option<u64> {
        self.holders
            .iter()
            .map(|h| h.expires_at_ms.saturating_add(LAPSED_KEEP_MS))
            .min()
    }

    /// The distinct clients holding something here, sorted.
    pub fn clients(&self) -> Vec<u64> {
        let mut c: Vec<u64> = self.holders.iter().map(|h| h.client).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Live holders that conflict with `req` by `client`: same class, another owner,
    /// overlapping range, and at least one of the two exclusive.
    pub fn conflicts<'a>(
        &'a self,
        req: &'a LockRequest,
        client: u64,
        now_ms: u64,
    ) -> impl Iterator<Item = &'a Holder> + 'a {
        self.holders
            .iter()
            .filter(move |h| h.live(now_ms) && h.contends(req, client))
    }

    /// Decides `req` by `client` and, if granted, applies it (POSIX-style: the owner's own
    /// locks of this class under `req.range` are replaced, the rest of them kept or split,
    /// and same-mode neighbours merged). A request already covered by an own lock of the
    /// same mode keeps that lock's token and only restarts its lease; anything else takes
    /// `new_token()` (an own lapsed lock of that shape is taken back with its token).
    /// Lapsed holders this request conflicts with lose their place to it.
    pub fn acquire(
        &mut self,
        req: &LockRequest,
        client: u64,
        now_ms: u64,
        lease_ms: u64,
        new_token: impl FnOnce() -> u64,
    ) -> Decision {
        let conflict = {
            let mut conflicts = self.conflicts(req, client, now_ms);
            conflicts.next().map(|first| {
                let wake = conflicts
                    .map(|h| h.expires_at_ms)
                    .fold(first.expires_at_ms, u64::min);
                (first.clone(), wake)
            })
        };
        if let Some((holder, wake_at_ms)) = conflict {
            return Decision::Conflict { holder, wake_at_ms };
        }
        self.holders
            .retain(|h| h.live(now_ms) || !h.contends(req, client));
        let expires_at_ms = now_ms.saturating_add(lease_ms);
        if let Some(h) = self.holders.iter_mut().find(|h| {
            h.same_owner(req.class, client, req.owner)
                && h.mode == req.mode
                && h.range.start <= req.range.start
                && req.range.end <= h.range.end
        }) {
            h.expires_at_ms = h.expires_at_ms.max(expires_at_ms);
            h.pid = req.pid;
            h.label.clone_from(&req.label);
            return Decision::Granted { token: h.token };
        }
        let token = new_token();
        let mut new = Holder {
            class: req.class,
            mode: req.mode,
            range: req.range,
            client,
            owner: req.owner,
            pid: req.pid,
            label: req.label.clone(),
            token,
            expires_at_ms,
        };
        let mut kept = Vec::with_capacity(self.holders.len() + 1);
        for h in self.holders.drain(..) {
            if !h.same_owner(req.class, client, req.owner) {
                kept.push(h);
                continue;
            }
            if h.mode == req.mode && touches(&h.range, &new.range) {
                new.range = LockRange {
                    start: h.range.start.min(new.range.start),
                    end: h.range.end.max(new.range.end),
                };
                new.expires_at_ms = new.expires_at_ms.max(h.expires_at_ms);
                continue;
            }
            for part in subtract(h.range, req.range) {
                kept.push(Holder {
                    range: part,
                    ..h.clone()
                });
            }
        }
        kept.push(new);
        self.holders = kept;
        Decision::Granted { token }
    }

    /// Removes (or shrinks, POSIX-style) the locks of `(client, owner)` in `class` under
    /// `range` (`None` = all of them). Returns how many holders were removed or shrunk.
    pub fn release(
        &mut self,
        class: LockClass,
        client: u64,
        owner: u64,
        range: Option<LockRange>,
    ) -> u32 {
        let mut count = 0u32;
        let mut kept = Vec::with_capacity(self.holders.len() + 1);
        for h in self.holders.drain(..) {
            if !h.same_owner(class, client, owner) {
                kept.push(h);
                continue;
            }
            match range {
                None => count += 1,
                Some(cut) if !h.range.overlaps(&cut) => kept.push(h),
                Some(cut) => {
                    count += 1;
                    for part in subtract(h.range, cut) {
                        kept.push(Holder {
                            range: part,
                            ..h.clone()
                        });
                    }
                }
            }
        }
        self.holders = kept;
        count
    }

    /// Restarts the lease of every lock of `client` still in the record (a lapsed one that
    /// nobody took is taken back); returns how many.
    pub fn renew(&mut self, client: u64, now_ms: u64, until_ms: u64) -> u32 {
        let mut n = 0;
        for h in self.holders.iter_mut() {
            if h.client == client && h.kept(now_ms) {
                h.expires_at_ms = h.expires_at_ms.max(until_ms);
                n += 1;
            }
        }
        n
    }

    /// Whether `(client, owner)` holds a live lock of `class` here.
    pub fn holds(&self, class: LockClass, client: u64, owner: u64, now_ms: u64) -> bool {
        self.holders
            .iter()
            .any(|h| h.same_owner(class, client, owner) && h.live(now_ms))
    }

    /// Whether `client` still has the writers' turn it was given with `token`: live, or
    /// lapsed with nobody having taken it since.
    pub fn has_turn(&self, client: u64, token: u64, now_ms: u64) -> bool {
        self.holders.iter().any(|h| {
            h.class == LockClass::Open
                && h.mode == LockMode::Exclusive
                && h.client == client
                && h.token == token
                && h.kept(now_ms)
        })
    }

    /// The live `Open`-class exclusive holder (the current writer), if any.
    pub fn writer(&self, now_ms: u64) -> Option<&Holder> {
        self.holders
            .iter()
            .find(|h| h.class == LockClass::Open && h.mode == LockMode::Exclusive && h.live(now_ms))
    }
}
