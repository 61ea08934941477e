//! The harness of the dfs integration tests: real `dfs-server` processes and real FUSE
//! mounts (`dfs-mount`), each test in its own temporary directory with its own port.
//!
//! Owns: finding the release binaries, starting/stopping/killing servers and mounts (with
//! their logs), bounded shell and file-system helpers (a hung FUSE operation fails the test
//! instead of hanging CI), a raw HTTP/1.1 client for talking to the server directly, and
//! small measurement helpers (SHA-256 of a file, RSS/peak RSS of a process).
//!
//! Must not: depend on the server or client crates (the tests treat them as black boxes
//! and only use the wire contract in `dfs-common`), or leave a mount or a process behind:
//! `Drop` of `Server` and `Mount` cleans up, also when a test panics.
//!
//! Modules, one concern each (re-exported here, so tests `use dfs_tests::…`, but for `tx`
//! and `caller`, which are used by their paths):
//! - `procs`: binaries, ports, logs, signals, spawning daemons that die with their test;
//! - `server`: a `dfs-server` process; `mount`: a `dfs-mount` FUSE mount and mountinfo;
//! - `cluster`: N replicating servers on their own loopback addresses, their status and
//!   blob stores, iptables partitions;
//! - `fixture`: one server plus one mount in a temporary directory; `pair`: two mounts of
//!   one server, and a bounded poll for what the second one sees;
//! - `fsops`: bounded file-system calls; `sys`: bounded system calls std lacks (mknod,
//!   xattrs, renameat2, truncate); `shell`: bounded scripts and the `dfs` command;
//! - `agent`: a python3 process driven line by line (opens, writes, flock, fcntl locks);
//! - `http`: a raw HTTP/1.1 client; `api`: the server's API through it; `clients`: test
//!   clients registered with a server, whose requests carry their proof; `callbacks`: a
//!   test client's callback channel, opened and read frame by frame; `caller`: requests as
//!   a test client, in a realm also as a principal (directory, files, xattrs,
//!   transactions), checked or answered whole;
//! - `measure`: hashes, memory figures, test data, polling;
//! - `realm_mount`: a realm made with `dfs-server init`, with a mount, users and `dfs login`;
//! - `replicas`: what the replication tests share: files of mixed sizes written through a
//!   mount of a cluster and read back, the convergence check, their bounds;
//! - `realm`: a realm made with `dfs-server init` and requests signed as any of its
//!   principals (tickets minted with its service key), kept whole to be replayed;
//! - `ops`: the install script into a temporary prefix, the mount(8) helper in /sbin,
//!   Prometheus scrapes;
//! - `conns`: raw connections from chosen loopback addresses, a process's open files;
//! - `tx`: `dfs tx` as a child process, the raw `/v1/tx` resources, a namespace snapshot.
//!
//! Needs release binaries (`scripts/test.sh` builds them first; `use_bin_dir` points
//! elsewhere, as dfs-server's own tests do), and root for the tests with mounts. The tests
//! that talk to a server without a mount (`http_*`, `bad_requests`, ...) need no root.

pub mod agent;
pub mod api;
pub mod callbacks;
pub mod caller;
pub mod clients;
pub mod cluster;
pub mod conns;
pub mod fixture;
pub mod fsops;
pub mod http;
pub mod measure;
pub mod mount;
pub mod ops;
pub mod pair;
pub mod procs;
pub mod realm;
pub mod realm_mount;
pub mod replicas;
pub mod server;
pub mod shell;
pub mod sys;
pub mod tx;

pub use agent::*;
pub use api::*;
pub use callbacks::*;
pub use clients::*;
pub use cluster::*;
pub use conns::*;
pub use fixture::*;
pub use fsops::*;
pub use http::*;
pub use measure::*;
pub use mount::*;
pub use ops::*;
pub use pair::*;
pub use procs::*;
pub use realm::*;
pub use realm_mount::*;
pub use replicas::*;
pub use server::*;
pub use shell::*;
pub use sys::*;
