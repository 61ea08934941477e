//! dfs-lock-bench: a tiny load generator for the lock service of a running dfs-server
//! (used by scripts/bench-locks.sh). Talks HTTP/1.1 keep-alive, one connection per client.
//!
//! - `pairs`: N clients (distinct client ids) each lock and unlock their own file ids in a
//!   loop for a fixed time; prints the lock+unlock pairs per second.
//! - `load`: takes exclusive locks on file ids `from..from+count` with acquire-many in
//!   batches, over a few connections, until done or out of time; prints how far it got.
//!
//! Owns nothing of the server; must not link server internals.

use bytes::Bytes;
use clap::{Parser, Subcommand};
use dfs_common::client_id::Prover;
use dfs_common::codec;
use dfs_common::locks::{LockClass, LockMode, LockRange, LockReply, LockRequest, ReleaseRequest};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load generator for the dfs lock service.
#[derive(Parser)]
struct Args {
    /// Server address (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:7070")]
    addr: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lock+unlock pairs per second with N concurrent clients.
    Pairs {
        #[arg(long)]
        clients: u64,
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// Holds exclusive locks on `count` distinct file ids starting at `from`.
    Load {
        #[arg(long, default_value_t = 1_000_000_000)]
        from: u64,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        #[arg(long, default_value_t = 4)]
        conns: u64,
        #[arg(long, default_value_t = 900)]
        max_secs: u64,
    },
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> Result<Conn, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

/// A new client of the server (`dfs_common::client_id`), registered over `conn`.
async fn register(conn: &mut Conn) -> Result<Prover, String> {
    let exchange = dfs_common::client_id::Exchange::start().map_err(|e| e.to_string())?;
    let req = hyper::Request::post(dfs_common::client_id::REGISTER_PATH)
        .header("host", "bench")
        .body(Full::new(Bytes::from(codec::encode(&exchange.request()))))
        .map_err(|e| e.to_string())?;
    let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let answer = codec::decode(&bytes).map_err(|e| format!("registration: {e}"))?;
    Prover::new(exchange, &answer).map_err(|e| e.to_string())
}

async fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    conn: &mut Conn,
    client: &Prover,
    op: &str,
    body: &T,
) -> Result<R, String> {
    let path = format!("/v1/locks/{op}");
    let mut req = hyper::Request::post(&path).header("host", "bench");
    for (name, value) in client.headers("POST", &path) {
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(Bytes::from(codec::encode(body))))
        .map_err(|e| e.to_string())?;
    let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{op}: {status} {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    codec::decode(&bytes).map_err(|e| e.to_string())
}

fn exclusive(ino: u64) -> LockRequest {
    LockRequest {
        ino,
        class: LockClass::Advisory,
        mode: LockMode::Exclusive,
        range: LockRange::WHOLE,
        owner: 1,
        pid: std::process::id(),
        label: "bench".into(),
        wait_ms: 0,
    }
}

async fn pairs(addr: String, clients: u64, secs: u64) -> Result<(), String> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (addr, done) = (addr.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&addr).await?;
            let client = register(&mut conn).await?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let ino = (i << 32) | (n % 1024);
                match post(&mut conn, &client, "acquire", &exclusive(ino)).await? {
                    LockReply::Granted { .. } => {}
                    LockReply::Conflict { holder } => return Err(format!("conflict: {holder:?}")),
                }
                let rel = ReleaseRequest {
                    ino,
                    class: LockClass::Advisory,
                    owner: 1,
                    range: None,
                };
                let _: dfs_common::locks::ReleaseReply =
                    post(&mut conn, &client, "release", &rel).await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    let start = Instant::now();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "clients {clients} pairs {n} secs {secs:.1} pairs_per_sec {:.0}",
        n as f64 / secs
    );
    Ok(())
}

async fn load(
    addr: String,
    from: u64,
    count: u64,
    batch: u64,
    conns: u64,
    max_secs: u64,
) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(max_secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (addr, next, done) = (addr.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&addr).await?;
            let client = register(&mut conn).await?;
            while Instant::now() < deadline {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= count {
                    break;
                }
                let reqs: Vec<_> = (first..(first + batch).min(count))
                    .map(|i| exclusive(from + i))
                    .collect();
                let replies: Vec<LockReply> =
                    post(&mut conn, &client, "acquire-many", &reqs).await?;
                if let Some(LockReply::Conflict { holder }) = replies.first() {
                    return Err(format!("conflict: {holder:?}"));
                }
                done.fetch_add(reqs.len() as u64, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    println!(
        "loaded {} of {count} secs {:.1}",
        done.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.cmd {
        Cmd::Pairs { clients, secs } => pairs(args.addr, clients, secs).await,
        Cmd::Load {
            from,
            count,
            batch,
            conns,
            max_secs,
        } => load(args.addr, from, count, batch, conns, max_secs).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfs-lock-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
