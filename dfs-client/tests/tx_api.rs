//! The transaction API of the client library against a real `dfs-server` (no mount): a
//! commit through the cache manager is seen at once by the same manager (it forgets what
//! the batch changed), a failed precondition is a typed error naming the file and both
//! versions, and an aborted transaction leaves nothing behind.
//!
//! Needs the release binary `dfs-server` (scripts/test.sh builds it first; `DFS_BIN_DIR`
//! points elsewhere).

use dfs_client::cache::CacheError;
use dfs_client::tx::{TxClient, TxError};
use dfs_client::{CacheOptions, Dfs};
use dfs_common::tx::{Actual, Expected, TxFailure, TxStatus};
use dfs_common::FsError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_bin() -> PathBuf {
    let dir = if let Some(d) = std::env::var_os("DFS_BIN_DIR") {
        PathBuf::from(d)
    } else {
        let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) => ws.join(t).join("release"),
            None => ws.join("target").join("release"),
        }
    };
    let p = dir.join("dfs-server");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test.sh (it builds the release binaries first)",
        p.display()
    );
    p
}

fn start_server(data: &std::path::Path) -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(server_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg(&addr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let _ = s.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return (server, addr);
            }
        }
        assert!(Instant::now() < deadline, "dfs-server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_seen_at_once_by_its_own_cache_and_failures_are_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&tmp.path().join("data"));
    let dfs = Dfs::connect(&addr, &tmp.path().join("cache"), CacheOptions::default()).unwrap();
    let up = Instant::now();
    while !dfs.manager().status(&addr).callback_channel_up {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "no callback channel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dfs.write_file("/a", b"one").await.unwrap();
    assert_eq!(dfs.read_file("/a").await.unwrap(), b"one");
    let v = dfs.stat("/a").await.unwrap().version;
    // Cached now (with a promise): the same reads make no round trip.
    assert_eq!(dfs.read_file("/a").await.unwrap(), b"one");
    let a = dfs.stat("/a").await.unwrap();
    let root = dfs.stat("/").await.unwrap();
    assert!(dfs.manager().holds_promise(a.ino) && dfs.manager().holds_promise(root.ino));

    let mut tx = dfs.begin_tx().await.unwrap();
    tx.expect_version("/a", v);
    tx.expect_absent("/d");
    tx.put_bytes("/a", b"two".to_vec()).await.unwrap();
    tx.mkdir("/d", None);
    tx.rename("/a", "/d/a");
    tx.create("/d/empty", 0o600);
    tx.set_mode("/d", 0o700);
    let c = tx.commit().await.unwrap();
    assert_eq!(c.results.len(), 7);
    assert_eq!(c.results[2].as_ref().unwrap().size, 3);

    // The same manager sees the batch at once: no callback comes for one's own change.
    assert_eq!(dfs.read_file("/d/a").await.unwrap(), b"two");
    let e = dfs.stat("/a").await.unwrap_err();
    assert!(matches!(e, CacheError::Fs(FsError::NotFound)), "{e:?}");
    assert_eq!(dfs.stat("/d").await.unwrap().mode, 0o700);
    let names: Vec<Vec<u8>> = dfs
        .list("/")
        .await
        .unwrap()
        .iter()
        .map(|i| i.name.clone())
        .collect();
    assert_eq!(names, vec![b"d".to_vec()]);

    // A failed precondition: nothing changes, and the error names file and versions.
    let now = dfs.stat("/d/a").await.unwrap().version;
    let mut tx = dfs.begin_tx().await.unwrap();
    tx.put_bytes("/d/a", b"three".to_vec()).await.unwrap();
    tx.remove("/d/empty");
    tx.expect_version("/d/a", now + 5);
    match tx.commit().await {
        Err(TxError::Failed(f @ TxFailure::Precondition { .. })) => {
            let TxFailure::Precondition {
                op,
                expected,
                actual,
                ..
            } = &f
            else {
                unreachable!()
            };
            assert_eq!(
                (*op, expected, actual),
                (2, &Expected::Version(now + 5), &Actual::Version(now))
            );
            assert_eq!(
                f.to_string(),
                format!(
                    "expect-version /d/a: expected version {}, actual version {now}",
                    now + 5
                )
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dfs.read_file("/d/a").await.unwrap(), b"two");
    assert!(dfs.stat("/d/empty").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_dropped_transactions_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, addr) = start_server(&tmp.path().join("data"));
    let client = TxClient::new(&addr).unwrap();
    let mut tx = client.begin().await.unwrap();
    tx.put_bytes("/x", b"never".to_vec()).await.unwrap();
    let id = tx.id();
    tx.abort().await.unwrap();
    assert!(matches!(
        client_status(&client, id).await,
        TxStatus::Aborted(dfs_common::tx::AbortReason::Client)
    ));
    let mut tx = client.begin().await.unwrap();
    tx.put_bytes("/y", b"never either".to_vec()).await.unwrap();
    let id = tx.id();
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(client_status(&client, id).await, TxStatus::Aborted(_)) {
        assert!(
            Instant::now() < deadline,
            "a dropped transaction was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.stat("/x").await.unwrap(), None);
    assert_eq!(client.stat("/y").await.unwrap(), None);
}

async fn client_status(client: &TxClient, id: u64) -> TxStatus {
    client.status(id).await.unwrap()
}
