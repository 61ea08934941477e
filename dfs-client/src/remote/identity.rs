//! This mount's identity on its server (`dfs_common::client_id`): the client id the server
//! issued and the key of the registration exchange, kept in the cache directory (a 0600
//! file) so that a restarted mount is the same client and its locks stay its own; the
//! server's epoch as last seen; the sequence numbers of requests, which start at the clock
//! (in microseconds) so they keep growing across restarts of the mount.
//!
//! Owns: the registration and the proof each request carries. Must not send anything but
//! the registration.

use dfs_common::client_id::{self, ClientKey, Exchange, Registered};
use dfs_common::FsError;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// An id and key as kept on disk: 8 bytes of id (little-endian) then 32 of key.
const FILE_LEN: usize = 40;

pub struct Identity {
    /// Where the id and key are kept; `None`: in memory only (a tool that is no mount).
    file: Option<PathBuf>,
    current: Mutex<Option<(u64, ClientKey)>>,
    epoch: AtomicU64,
    seq: AtomicU64,
    /// One registration at a time.
    pub(super) registering: tokio::sync::Mutex<()>,
}

fn clock_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
}

impl Identity {
    /// An identity kept in `file`: the one there, if any (else none yet: the first request
    /// registers).
    pub fn kept_in(file: PathBuf) -> Identity {
        let current = match std::fs::read(&file) {
            Ok(b) if b.len() == FILE_LEN => {
                let id = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
                let key: [u8; 32] = b[8..].try_into().expect("32 bytes");
                (id != 0).then_some((id, ClientKey(key)))
            }
            Ok(_) => {
                log::warn!(
                    "{}: not a client identity; registering anew",
                    file.display()
                );
                None
            }
            Err(_) => None,
        };
        Identity::with(Some(file), current)
    }

    /// An identity held in memory only.
    pub fn in_memory() -> Identity {
        Identity::with(None, None)
    }

    fn with(file: Option<PathBuf>, current: Option<(u64, ClientKey)>) -> Identity {
        Identity {
            file,
            current: Mutex::new(current),
            epoch: AtomicU64::new(0),
            seq: AtomicU64::new(clock_micros()),
            registering: tokio::sync::Mutex::new(()),
        }
    }

    /// The client id (0 until registered).
    pub fn client(&self) -> u64 {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |(id, _)| *id)
    }

    pub fn registered(&self) -> bool {
        self.client() != 0
    }

    /// The server's epoch as last seen.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// An answer named the server's epoch.
    pub fn saw_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    /// `(client id, x-dfs-client-auth value)` for a request, if registered.
    pub fn proof(&self, method: &str, path: &str) -> Option<(u64, String)> {
        let (id, key) = self.current.lock().unwrap().clone()?;
        let epoch = self.epoch();
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let mac = key.request_mac(epoch, id, seq, method, path);
        Some((id, client_id::auth_header(epoch, seq, &mac)))
    }

    /// The key of the callback channel the server sealed in `epoch`.
    pub fn channel_key(&self, epoch: u64) -> Option<dfs_common::auth::Key> {
        let (_, key) = self.current.lock().unwrap().clone()?;
        Some(key.channel_key(epoch))
    }

    /// Takes the server's answer to a registration this exchange started; keeps it.
    pub fn adopt(&self, exchange: Exchange, answer: &Registered) -> Result<(), FsError> {
        let key = exchange.finish(answer)?;
        if let Some(file) = &self.file {
            keep(file, answer.client, &key)?;
        }
        *self.current.lock().unwrap() = Some((answer.client, key));
        self.saw_epoch(answer.epoch);
        Ok(())
    }

    /// Forgets the current id (the server does not know it).
    pub fn forget(&self, id: u64) {
        let mut current = self.current.lock().unwrap();
        if current.as_ref().is_some_and(|(c, _)| *c == id) {
            *current = None;
        }
    }
}

/// Writes an id and key to `file` (mode 0600, replaced atomically, synced).
fn keep(file: &std::path::Path, id: u64, key: &ClientKey) -> Result<(), FsError> {
    let temp = file.with_extension("new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    f.write_all(&id.to_le_bytes())?;
    f.write_all(&key.0)?;
    f.sync_all()?;
    std::fs::rename(&temp, file)?;
    Ok(())
}
