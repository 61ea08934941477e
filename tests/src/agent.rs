//! An agent: a small python3 process that a test drives line by line (open, write, close,
//! flock, fcntl F_SETLK/F_SETLKW/F_GETLK), so one test can hold a file open or a lock in
//! one process while it acts in another, and see the exact errno of every call. Each agent
//! is its own process, hence its own lock owner.
//!
//! Must not hang a test: every answer is awaited with a bound, and `Drop` kills the agent
//! (SIGKILL, bounded reap). A call blocked in a FUSE request the daemon holds cannot be
//! interrupted, so a test should drop its agents before its mounts (declare them later).

use crate::procs::wait_bounded;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

/// The agent's program. Commands (one per line) and answers (`ok [...]` or `err ERRNO`):
/// - `open MODE PATH` — MODE `r` (O_RDONLY), `w` (O_WRONLY|O_CREAT|O_TRUNC), `a`
///   (O_WRONLY|O_APPEND), `rw` (O_RDWR); one open file per agent;
/// - `reopen` — a second O_RDONLY descriptor of the last opened path becomes the current
///   one (the first stays open until the agent exits);
/// - `write HEX` — write(2) of the hex-decoded bytes; `close`;
/// - `size` — fstat(2), answers `ok SIZE`; `seekend` — lseek(0, SEEK_END), answers `ok OFFSET`;
/// - `flock ex|sh|un [nb]` — flock(2), `nb` adds LOCK_NB;
/// - `setlk r|w|u START LEN`, `setlkw …` — fcntl F_SETLK / F_SETLKW (whence SEEK_SET);
/// - `getlk r|w START LEN` — fcntl F_GETLK, answers `ok TYPE START LEN PID` (TYPE `r`, `w`
///   or `u` for unlocked);
/// - `pid`, `exit`.
const SCRIPT: &str = r#"
import errno, fcntl, os, struct, sys
FMT = 'hhqqi'  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid
TYPES = {'r': fcntl.F_RDLCK, 'w': fcntl.F_WRLCK, 'u': fcntl.F_UNLCK}
NAMES = {v: k for k, v in TYPES.items()}
MODES = {'r': os.O_RDONLY, 'w': os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
         'a': os.O_WRONLY | os.O_APPEND, 'rw': os.O_RDWR}
FLOCK = {'ex': fcntl.LOCK_EX, 'sh': fcntl.LOCK_SH, 'un': fcntl.LOCK_UN}
fd = None
path = None
spare = []
def answer(s):
    sys.stdout.write(s + '\n')
    sys.stdout.flush()
while True:
    line = sys.stdin.readline()
    if not line:
        break
    words = line.split(None, 2)
    if not words:
        continue
    op, out = words[0], ''
    try:
        if op == 'open':
            path = words[2].rstrip('\n')
            fd = os.open(path, MODES[words[1]], 0o644)
        elif op == 'reopen':
            # A second read-only descriptor of the same file; the first stays open.
            spare.append(fd)
            fd = os.open(path, os.O_RDONLY)
        elif op == 'close':
            f, fd = fd, None
            os.close(f)
        elif op == 'write':
            os.write(fd, bytes.fromhex(words[1]))
        elif op == 'size':
            out = str(os.fstat(fd).st_size)
        elif op == 'seekend':
            out = str(os.lseek(fd, 0, os.SEEK_END))
        elif op == 'flock':
            flags = FLOCK[words[1]]
            if len(words) > 2 and words[2].strip() == 'nb':
                flags |= fcntl.LOCK_NB
            fcntl.flock(fd, flags)
        elif op in ('setlk', 'setlkw', 'getlk'):
            args = line.split()
            lk = struct.pack(FMT, TYPES[args[1]], os.SEEK_SET, int(args[2]), int(args[3]), 0)
            cmd = {'setlk': fcntl.F_SETLK, 'setlkw': fcntl.F_SETLKW, 'getlk': fcntl.F_GETLK}[op]
            got = fcntl.fcntl(fd, cmd, lk)
            if op == 'getlk':
                t, _, start, length, pid = struct.unpack(FMT, got)
                out = '%s %d %d %d' % (NAMES.get(t, str(t)), start, length, pid)
        elif op == 'pid':
            out = str(os.getpid())
        elif op == 'exit':
            answer('ok')
            break
        else:
            out = 'unknown command ' + op
            answer('err EINVAL ' + out)
            continue
        answer(('ok ' + out).rstrip())
    except OSError as e:
        answer('err ' + errno.errorcode.get(e.errno, str(e.errno)))
"#;

/// A running agent process.
pub struct Agent {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Agent {
    /// Starts an agent called `name` (for messages) with `dir` as its working directory
    /// (keep it off the mounts).
    pub fn spawn(name: &str, dir: &Path) -> Agent {
        let mut child = Command::new("python3")
            .arg("-u")
            .arg("-c")
            .arg(SCRIPT)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 for agent {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("agent stdout pipe");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent {
            name: name.to_string(),
            child: Some(child),
            stdin,
            lines,
        }
    }

    /// The agent's process id (what F_GETLK should report for its locks).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent is running").id()
    }

    /// Sends one command without waiting for its answer.
    pub fn send(&mut self, cmd: &str) {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("agent {name} has no stdin"));
        writeln!(stdin, "{cmd}")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("agent {name}: cannot send {cmd:?}: {e}"));
    }

    /// The next answer, if it comes within `limit`: `Ok(rest of "ok …")` or
    /// `Err(errno name)`. `None` when nothing came in time.
    pub fn recv(&mut self, limit: Duration) -> Option<Result<String, String>> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Some(parse(&line)),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "agent {} exited (its stderr is in the test output)",
                    self.name
                )
            }
        }
    }

    /// Sends `cmd` and waits up to `limit` for its answer; panics if none comes.
    pub fn call(&mut self, cmd: &str, limit: Duration) -> Result<String, String> {
        self.send(cmd);
        self.recv(limit).unwrap_or_else(|| {
            panic!(
                "agent {}: no answer to {cmd:?} within {limit:?} (blocked in the mount?)",
                self.name
            )
        })
    }

    /// `call` that must succeed; returns what followed `ok`.
    pub fn ok(&mut self, cmd: &str, limit: Duration) -> String {
        match self.call(cmd, limit) {
            Ok(rest) => rest,
            Err(e) => panic!("agent {}: {cmd:?} failed with {e}", self.name),
        }
    }

    /// Kills the agent (SIGKILL) and reaps it, bounded: a process stuck in a FUSE request
    /// may not die until the daemon answers or the mount goes.
    pub fn kill(&mut self) {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if wait_bounded(&mut c, Duration::from_secs(5)).is_none() {
                eprintln!(
                    "agent {} (pid {}) did not die within 5 s",
                    self.name,
                    c.id()
                );
            }
        }
    }
}

fn parse(line: &str) -> Result<String, String> {
    if let Some(rest) = line.strip_prefix("ok") {
        Ok(rest.trim().to_string())
    } else if let Some(rest) = line.strip_prefix("err ") {
        Err(rest.trim().to_string())
    } else {
        Err(format!("unexpected answer {line:?}"))
    }
}

/// Hex of `data`, for the agent's `write` command.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_reports_ok_and_errno() {
        let dir = tempfile::TempDir::new().unwrap();
        let f = dir.path().join("f");
        let limit = Duration::from_secs(10);
        let mut a = Agent::spawn("a", dir.path());
        assert_eq!(
            a.call(&format!("open r {}", f.display()), limit),
            Err("ENOENT".to_string())
        );
        a.ok(&format!("open w {}", f.display()), limit);
        a.ok(&format!("write {}", hex(b"hi")), limit);
        a.ok("setlk w 0 10", limit);
        assert_eq!(a.ok("getlk w 0 10", limit), "u 0 10 0");
        a.ok("close", limit);
        assert_eq!(std::fs::read(&f).unwrap(), b"hi");
        assert_eq!(a.ok("pid", limit), a.pid().to_string());
        a.ok("exit", limit);
    }
}
