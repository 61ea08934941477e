//! The directory nodes a client may talk to, and the one it talks to now. A client is
//! given one address or several (`HOST:PORT,HOST:PORT,...`: the nodes of a replicated
//! directory); it follows a node that answers "not the leader, ask X" (learning X if it
//! was not given), and moves on to the next node when one cannot be reached or knows no
//! leader (an election is under way).
//!
//! Owns: the list and the current pick. Must not send requests or decide which answers
//! call for a move (`super::Remote::with_client` does).

use std::sync::RwLock;

pub struct Servers {
    state: RwLock<State>,
}

struct State {
    known: Vec<String>,
    current: usize,
}

impl Servers {
    /// The servers of `list`, comma separated, the first one current.
    pub fn parse(list: &str) -> Servers {
        let mut known: Vec<String> = Vec::new();
        for addr in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            if !known.iter().any(|k| k == addr) {
                known.push(addr.to_string());
            }
        }
        if known.is_empty() {
            known.push(list.to_string());
        }
        Servers {
            state: RwLock::new(State { known, current: 0 }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The `HOST:PORT` requests go to now.
    pub fn current(&self) -> String {
        let s = self.read();
        s.known[s.current].clone()
    }

    /// Every server known, the current one first.
    pub fn all(&self) -> Vec<String> {
        let s = self.read();
        let n = s.known.len();
        (0..n)
            .map(|i| s.known[(s.current + i) % n].clone())
            .collect()
    }

    /// How many servers this client knows.
    pub fn len(&self) -> usize {
        self.read().known.len()
    }

    /// `from` answered that `leader` leads: it becomes current (and known). False when
    /// `leader` is empty or is `from` itself, so there is no one to follow.
    pub fn follow(&self, from: &str, leader: &str) -> bool {
        if leader.is_empty() || leader == from {
            return false;
        }
        let mut s = self.write();
        let at = match s.known.iter().position(|k| k == leader) {
            Some(i) => i,
            None => {
                s.known.push(leader.to_string());
                s.known.len() - 1
            }
        };
        s.current = at;
        true
    }

    /// `from` could not be reached or named no leader: the next known server becomes
    /// current, unless another request already moved on from `from`.
    pub fn move_on(&self, from: &str) {
        let mut s = self.write();
        if s.known[s.current] == from {
            s.current = (s.current + 1) % s.known.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_follows_the_leader_and_moves_on_from_a_lost_node() {
        let s = Servers::parse("a:1, b:2,a:1");
        assert_eq!((s.len(), s.current()), (2, "a:1".to_string()));
        // "ask c:3": learned and followed.
        assert!(s.follow("a:1", "c:3"));
        assert_eq!((s.len(), s.current()), (3, "c:3".to_string()));
        // No leader named, or itself: nothing to follow.
        assert!(!s.follow("c:3", ""));
        assert!(!s.follow("c:3", "c:3"));
        // c:3 is lost: the next one; a second failure report of c:3 moves no further.
        s.move_on("c:3");
        assert_eq!(s.current(), "a:1");
        s.move_on("c:3");
        assert_eq!(s.current(), "a:1");
        assert_eq!(s.all(), ["a:1", "b:2", "c:3"]);
        let one = Servers::parse("only:1");
        one.move_on("only:1");
        assert_eq!(one.current(), "only:1");
    }
}
