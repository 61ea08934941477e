//! A history check of the replicated directory (#23): three clients run random mkdir,
//! rmdir and lookup calls on three shared names against a three-replica directory while
//! its leader is killed (kill -9) and later restarted; every call is recorded with the
//! times of its invocation and its answer, and the history is checked for
//! linearizability against a model of the namespace (each name: there or not).
//!
//! The checker is written here: Wing & Gong's search with Lowe's memoization (the
//! algorithm of Knossos and Porcupine), per name, since linearizability is local (a
//! history is linearizable when each object's is). A call with no definite answer (a
//! timeout, a node that went away, "not the leader" after the call may have been
//! appended) may have taken effect at any time after it began, or never: the search may
//! place it anywhere after its invocation or leave it out.

use dfs_common::proto::{DirRequest, HDR_DETAIL, HDR_ERROR};
use dfs_common::{codec, ROOT_INO};
use dfs_tests::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAMES: [&str; 3] = ["k0", "k1", "k2"];
const CLIENTS: usize = 3;
const OPS_PER_CLIENT: usize = 150;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mkdir,
    Rmdir,
    Lookup,
}

/// What a call got: a definite answer, or none (it may or may not have taken effect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// mkdir/rmdir applied; lookup found the name.
    Done,
    /// mkdir: the name was there; rmdir/lookup: it was not.
    Refused,
    Unknown,
}

#[derive(Clone, Debug)]
struct Op {
    name: usize,
    kind: Kind,
    outcome: Outcome,
    invoked: Instant,
    /// `None`: no answer, so no end.
    answered: Option<Instant>,
}

/// Sends one call to `addr`; an answer that names the leader moves `addr` there.
fn call(addrs: &[String], at: &mut usize, kind: Kind, name: &str) -> Outcome {
    let req = match kind {
        Kind::Mkdir => DirRequest::Mkdir {
            parent: ROOT_INO,
            name: name.as_bytes().to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 0,
            gid: 0,
        },
        Kind::Rmdir => DirRequest::Rmdir {
            parent: ROOT_INO,
            name: name.as_bytes().to_vec(),
        },
        Kind::Lookup => DirRequest::Lookup {
            parent: ROOT_INO,
            name: name.as_bytes().to_vec(),
        },
    };
    let Ok(r) = http(&addrs[*at], "POST", "/v1/dir", &[], &codec::encode(&req)) else {
        *at = (*at + 1) % addrs.len();
        return Outcome::Unknown;
    };
    match (r.status, r.header(HDR_ERROR)) {
        (200, _) => Outcome::Done,
        (_, Some("EEXIST")) if kind == Kind::Mkdir => Outcome::Refused,
        (_, Some("ENOENT")) if kind != Kind::Mkdir => Outcome::Refused,
        (421, _) => {
            match addrs
                .iter()
                .position(|a| Some(a.as_str()) == r.header(HDR_DETAIL))
            {
                Some(i) => *at = i,
                None => *at = (*at + 1) % addrs.len(),
            }
            // Refused by the router before anything, or by a deposed leader after the
            // call was appended: either way it may not be counted as not applied.
            Outcome::Unknown
        }
        _ => Outcome::Unknown,
    }
}

/// After a call without an answer: waits (bounded) until the node at `at` answers, moving
/// to the leader it names or on to the next node, so the next call goes to a leader.
fn find_leader(addrs: &[String], at: &mut usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let root = codec::encode(&DirRequest::GetAttr { ino: ROOT_INO });
    loop {
        match http(&addrs[*at], "POST", "/v1/dir", &[], &root) {
            Ok(r) if r.status == 200 => return,
            Ok(r) => match addrs
                .iter()
                .position(|a| Some(a.as_str()) == r.header(HDR_DETAIL))
            {
                Some(i) if i != *at => *at = i,
                _ => *at = (*at + 1) % addrs.len(),
            },
            Err(_) => *at = (*at + 1) % addrs.len(),
        }
        assert!(Instant::now() < deadline, "no leader answers");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `op` may take effect in state `there`, and the state after it.
fn step(op: &Op, there: bool) -> Option<bool> {
    match (op.kind, op.outcome) {
        (Kind::Mkdir, Outcome::Done) => (!there).then_some(true),
        (Kind::Mkdir, Outcome::Refused) => there.then_some(true),
        (Kind::Rmdir, Outcome::Done) => there.then_some(false),
        (Kind::Rmdir, Outcome::Refused) => (!there).then_some(false),
        (Kind::Lookup, Outcome::Done) => there.then_some(true),
        (Kind::Lookup, Outcome::Refused) => (!there).then_some(false),
        // Applied, a mkdir leaves the name there whatever it found, an rmdir leaves it
        // gone; an unknown lookup says nothing (it is dropped before the search).
        (Kind::Mkdir, Outcome::Unknown) => Some(true),
        (Kind::Rmdir, Outcome::Unknown) => Some(false),
        (Kind::Lookup, Outcome::Unknown) => Some(there),
    }
}

/// Whether the history of one name (starting absent) is linearizable.
fn linearizable(ops: &[Op]) -> bool {
    let ops: Vec<&Op> = ops
        .iter()
        .filter(|o| !(o.kind == Kind::Lookup && o.outcome == Outcome::Unknown))
        .collect();
    let n = ops.len();
    let words = n.div_ceil(64);
    let known = ops.iter().filter(|o| o.answered.is_some()).count();
    let mut seen: HashSet<(Vec<u64>, bool)> = HashSet::new();
    // Depth-first over (linearized set, state), with an explicit stack.
    let mut stack = vec![(vec![0u64; words], false, 0usize)];
    while let Some((done, there, known_done)) = stack.pop() {
        if known_done == known {
            return true;
        }
        if !seen.insert((done.clone(), there)) {
            continue;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // An op may go next if it was invoked before every pending op's answer.
        let horizon = (0..n)
            .filter(|&i| !is_done(i))
            .filter_map(|i| ops[i].answered)
            .min();
        for i in (0..n).filter(|&i| !is_done(i)) {
            if horizon.is_some_and(|h| ops[i].invoked > h) {
                continue;
            }
            if let Some(next) = step(ops[i], there) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                let k = known_done + usize::from(ops[i].answered.is_some());
                stack.push((d, next, k));
            }
        }
    }
    false
}

#[test]
fn the_checker_tells_a_linearizable_history_from_one_that_is_not() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let op = |kind, outcome, from, to: Option<u64>| Op {
        name: 0,
        kind,
        outcome,
        invoked: at(from),
        answered: to.map(at),
    };
    // mkdir done, then a lookup that does not find it: not linearizable.
    let bad = [
        op(Kind::Mkdir, Outcome::Done, 0, Some(10)),
        op(Kind::Lookup, Outcome::Refused, 20, Some(30)),
    ];
    assert!(!linearizable(&bad));
    // The same lookup overlapping the mkdir may go first.
    let overlapping = [
        op(Kind::Mkdir, Outcome::Done, 0, Some(10)),
        op(Kind::Lookup, Outcome::Refused, 5, Some(30)),
    ];
    assert!(linearizable(&overlapping));
    // An unknown mkdir may have happened later (a later lookup finds the name) or never.
    let unknown = [
        op(Kind::Mkdir, Outcome::Unknown, 0, None),
        op(Kind::Lookup, Outcome::Refused, 20, Some(30)),
        op(Kind::Lookup, Outcome::Done, 40, Some(50)),
    ];
    assert!(linearizable(&unknown));
    // Two successful mkdirs with no rmdir between them: not linearizable.
    let twice = [
        op(Kind::Mkdir, Outcome::Done, 0, Some(10)),
        op(Kind::Mkdir, Outcome::Done, 20, Some(30)),
    ];
    assert!(!linearizable(&twice));
}

#[test]
fn a_history_across_a_leader_kill_is_linearizable() {
    let mut c = Cluster::start_replicated_directory(3, &[]);
    let addrs = c.addrs();
    wait_for("a leader that answers", Duration::from_secs(30), || {
        addrs
            .iter()
            .find(|a| dir_call(a, &DirRequest::GetAttr { ino: ROOT_INO }).is_ok())
            .map(|_| ())
            .ok_or_else(|| "no node answers".to_string())
    });
    let history = Arc::new(Mutex::new(Vec::new()));
    let progress = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (addrs, history, progress) = (addrs.clone(), history.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut at = k % addrs.len();
                find_leader(&addrs, &mut at);
                let mut seed = k as u64 * 7919 + 17;
                for _ in 0..OPS_PER_CLIENT {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let name = (seed >> 33) as usize % NAMES.len();
                    let kind = [Kind::Mkdir, Kind::Rmdir, Kind::Lookup][(seed >> 40) as usize % 3];
                    let invoked = Instant::now();
                    let outcome = call(&addrs, &mut at, kind, NAMES[name]);
                    let answered = (outcome != Outcome::Unknown).then(Instant::now);
                    if outcome == Outcome::Unknown {
                        find_leader(&addrs, &mut at);
                    }
                    history.lock().unwrap().push(Op {
                        name,
                        kind,
                        outcome,
                        invoked,
                        answered,
                    });
                    progress.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // The leader is killed a third of the way through, and restarted at two thirds.
    let total = CLIENTS * OPS_PER_CLIENT;
    wait_for("a third of the calls", Duration::from_secs(120), || {
        (progress.load(Ordering::SeqCst) >= total / 3)
            .then_some(())
            .ok_or_else(|| format!("{} calls", progress.load(Ordering::SeqCst)))
    });
    let leader = (0..3)
        .find(|&i| {
            c.try_status(i)
                .ok()
                .and_then(|s| s.directory)
                .is_some_and(|d| d.state == "Leader")
        })
        .expect("a leader");
    c.kill9(leader);
    wait_for("two thirds of the calls", Duration::from_secs(120), || {
        (progress.load(Ordering::SeqCst) >= 2 * total / 3)
            .then_some(())
            .ok_or_else(|| format!("{} calls", progress.load(Ordering::SeqCst)))
    });
    c.restart(leader);
    for t in clients {
        t.join().expect("a client thread");
    }
    let history = history.lock().unwrap().clone();
    let unknown = history
        .iter()
        .filter(|o| o.outcome == Outcome::Unknown)
        .count();
    for (n, name) in NAMES.iter().enumerate() {
        let ops: Vec<Op> = history.iter().filter(|o| o.name == n).cloned().collect();
        assert!(
            linearizable(&ops),
            "the history of {name} is not linearizable: {ops:#?}"
        );
    }
    println!(
        "linearizable: {} operations checked ({unknown} without a definite answer) on {} names, node {leader} killed and restarted",
        history.len(),
        NAMES.len()
    );
}
