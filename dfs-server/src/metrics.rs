//! The server's metrics and their exposition: requests by route and status with their
//! latency, directory requests by kind, namespace commits, fsyncs and group-commit sizes,
//! blob bytes in and out, callback breaks queued, delivered and dropped, connections,
//! locks granted, refused and waited for, transactions, and replication (members by
//! state, under-replicated blobs, repair and scrub progress). Every update on a request's
//! path is a relaxed atomic add (`dfs_common::metrics`); counts other structures keep
//! already (open connections, queued breaks) are read when scraped.
//!
//! Who may read them: `GET /metrics` on the node's own port needs an admin's ticket in a
//! realm, unless `--metrics-anonymous`; `--metrics-listen ADDR` serves them to anyone on
//! a second address (for a scraper that cannot hold tickets: bind it to localhost or a
//! management network). An open cell serves them to anyone, like everything else.
//!
//! Owns: the statics, the registry, the `/metrics` answer and the second listener. Must
//! not decide anything.

use dfs_common::cluster::ClusterStatus;
use dfs_common::metrics::{self as m, Counter, Counters, Grid, Histogram, Latencies};
use std::sync::{Arc, LazyLock};

/// Routes of the HTTP edge, in `Route` order.
pub const ROUTES: &[&str] = &[
    "dir",
    "fetch",
    "store",
    "callbacks",
    "locks",
    "tx",
    "kdc",
    "clients",
    "health",
    "metrics",
    "cluster",
    "other",
];

/// Index of a route in `ROUTES`, from a request's method and path.
pub fn route_of(method: &hyper::Method, path: &str) -> usize {
    let rest = path.strip_prefix("/v1/").unwrap_or("");
    match rest.split('/').next().unwrap_or("") {
        "dir" => 0,
        "files" if method == hyper::Method::PUT => 2,
        "files" => 1,
        "callbacks" => 3,
        "locks" => 4,
        "tx" => 5,
        "kdc" => 6,
        "clients" => 7,
        "health" => 8,
        "cluster" => 10,
        _ if path == "/metrics" => 9,
        _ => 11,
    }
}

/// Statuses counted by name; any other is `other`.
pub const STATUSES: &[&str] = &[
    "200", "201", "204", "206", "303", "304", "400", "401", "403", "404", "405", "409", "412",
    "413", "416", "423", "429", "500", "503", "507", "other",
];

pub fn status_index(status: u16) -> usize {
    let text = status.to_string();
    STATUSES
        .iter()
        .position(|s| *s == text)
        .unwrap_or(STATUSES.len() - 1)
}

pub static REQUESTS: LazyLock<Grid> =
    LazyLock::new(|| Grid::new(("route", "status"), ROUTES, STATUSES));
pub static REQUEST_LATENCY: LazyLock<Latencies> = LazyLock::new(|| Latencies::new("route", ROUTES));
pub static DIR_REQUESTS: LazyLock<Counters> =
    LazyLock::new(|| Counters::new("op", dfs_common::proto::DIR_REQUEST_KINDS));
/// Namespace commits (each without an fsync), durable commits (one fsync each), and how
/// many commits each durable one covered.
pub static COMMITS: Counter = Counter::new();
pub static FSYNCS: Counter = Counter::new();
pub static GROUP_COMMIT_SIZE: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::sizes(&m::SIZE_BUCKETS));
pub static FSYNC_LATENCY: LazyLock<Histogram> = LazyLock::new(Histogram::latency);
pub static BLOB_BYTES_IN: Counter = Counter::new();
pub static BLOB_BYTES_OUT: Counter = Counter::new();
/// Callback frames queued for clients, written to their channels, and dropped from an
/// overflowing queue (that client is told to revalidate everything instead).
pub static BREAKS_QUEUED: Counter = Counter::new();
pub static BREAKS_DELIVERED: Counter = Counter::new();
pub static BREAKS_DROPPED: Counter = Counter::new();
pub static LOCKS_GRANTED: Counter = Counter::new();
pub static LOCK_CONFLICTS: Counter = Counter::new();
pub static LOCKS_RELEASED: Counter = Counter::new();
pub static LOCK_WAITERS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
pub static TX_BEGUN: Counter = Counter::new();
pub static TX_COMMITTED: Counter = Counter::new();
pub static TX_ABORTED: Counter = Counter::new();

/// Counts a lock request as waiting while it lives.
pub struct Waiting(());

impl Waiting {
    pub fn new() -> Waiting {
        LOCK_WAITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(())
    }
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting::new()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        LOCK_WAITERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How the cluster looks to this node now (`cluster::Cluster::status`).
pub type ClusterStatusFn = Arc<dyn Fn() -> ClusterStatus + Send + Sync>;

/// The node's registry. Read at scrape time for the gauges: `undelivered_breaks` (the
/// callback registry's queues), `cluster_status`, and the HTTP edge's counts
/// `open_connections` and `refused_connections`.
pub fn registry(
    undelivered_breaks: impl Fn() -> i64 + Send + Sync + 'static,
    cluster_status: ClusterStatusFn,
    open_connections: impl Fn() -> i64 + Send + Sync + 'static,
    refused_connections: impl Fn() -> i64 + Send + Sync + 'static,
) -> prometheus_client::registry::Registry {
    let mut r = prometheus_client::registry::Registry::with_prefix("dfs_server");
    m::register(
        &mut r,
        "requests",
        "HTTP requests by route and status",
        &*REQUESTS,
    );
    m::register(
        &mut r,
        "request_seconds",
        "HTTP requests: time to the answer's head, by route",
        &*REQUEST_LATENCY,
    );
    m::register(
        &mut r,
        "dir_requests",
        "Directory requests by kind",
        &*DIR_REQUESTS,
    );
    m::register(&mut r, "commits", "Namespace commits", &COMMITS);
    m::register(
        &mut r,
        "fsyncs",
        "Durable namespace commits (one fsync of the log each)",
        &FSYNCS,
    );
    m::register(
        &mut r,
        "group_commit_size",
        "Namespace commits made durable by one fsync",
        &*GROUP_COMMIT_SIZE,
    );
    m::register(
        &mut r,
        "fsync_seconds",
        "Time of one durable namespace commit",
        &*FSYNC_LATENCY,
    );
    m::register(
        &mut r,
        "blob_in_bytes",
        "File contents stored",
        &BLOB_BYTES_IN,
    );
    m::register(
        &mut r,
        "blob_out_bytes",
        "File contents fetched",
        &BLOB_BYTES_OUT,
    );
    m::register(
        &mut r,
        "callback_breaks_queued",
        "Callback frames queued for clients",
        &BREAKS_QUEUED,
    );
    m::register(
        &mut r,
        "callback_breaks_delivered",
        "Callback frames written to clients' channels",
        &BREAKS_DELIVERED,
    );
    m::register(
        &mut r,
        "callback_breaks_dropped",
        "Callback frames dropped from an overflowing queue (the client revalidates all)",
        &BREAKS_DROPPED,
    );
    m::register_gauge(
        &mut r,
        "callback_breaks_undelivered",
        "Callback frames waiting in clients' queues",
        undelivered_breaks,
    );
    m::register_gauge(
        &mut r,
        "connections",
        "HTTP connections open",
        open_connections,
    );
    m::register_gauge(
        &mut r,
        "connections_refused",
        "HTTP connections refused over a cap since start",
        refused_connections,
    );
    m::register(
        &mut r,
        "locks_granted",
        "Lock requests granted",
        &LOCKS_GRANTED,
    );
    m::register(
        &mut r,
        "lock_conflicts",
        "Lock requests answered with a conflict",
        &LOCK_CONFLICTS,
    );
    m::register(&mut r, "locks_released", "Lock releases", &LOCKS_RELEASED);
    m::register_gauge(
        &mut r,
        "lock_waiters",
        "Lock requests waiting for a conflicting holder",
        || LOCK_WAITERS.load(std::sync::atomic::Ordering::Relaxed),
    );
    m::register(&mut r, "tx_begun", "Transactions begun", &TX_BEGUN);
    m::register(
        &mut r,
        "tx_committed",
        "Transactions committed",
        &TX_COMMITTED,
    );
    m::register(&mut r, "tx_aborted", "Transactions aborted", &TX_ABORTED);
    register_replication(&mut r, &cluster_status);
    r
}

/// Replication as this node sees it, read from the cluster's status when scraped: members
/// by state; and, on the directory node (zero elsewhere), blobs under-replicated and
/// without a live copy and the repair copies made, failed and pending; this node's scrub.
fn register_replication(r: &mut prometheus_client::registry::Registry, status: &ClusterStatusFn) {
    use dfs_common::cluster::MemberState;
    type Read = fn(&ClusterStatus) -> u64;
    let states = [
        ("alive", MemberState::Alive),
        ("suspect", MemberState::Suspect),
        ("dead", MemberState::Dead),
        ("departed", MemberState::Departed),
    ];
    for (name, state) in states {
        let status = status.clone();
        m::register_gauge(
            r,
            &format!("cluster_members_{name}"),
            &format!("Cluster members this node sees as {name}"),
            move || {
                let st = status();
                st.members.iter().filter(|m| m.state == state).count() as i64
            },
        );
    }
    let figures: [(&str, &str, Read); 8] = [
        (
            "cluster_replicas_effective",
            "Copies kept of each blob (R, capped at the members)",
            |st| st.effective_replicas as u64,
        ),
        (
            "cluster_blobs_under_replicated",
            "Referenced blobs with fewer copies than R on live nodes",
            |st| st.under_replicated,
        ),
        (
            "cluster_blobs_missing",
            "Referenced blobs with no copy on any live node",
            |st| st.missing,
        ),
        (
            "cluster_repairs_done",
            "Repair copies made since start",
            |st| st.repairs_done,
        ),
        (
            "cluster_repairs_failed",
            "Repair copies that failed since start",
            |st| st.repairs_failed,
        ),
        (
            "cluster_repairs_pending",
            "Repair copies waiting in the members' queues",
            |st| st.repairs_pending,
        ),
        (
            "scrub_checked",
            "Blobs this node's scrubber checked since start",
            |st| st.scrubbed,
        ),
        (
            "scrub_bad",
            "Bad copies this node's scrubber found since start",
            |st| st.scrub_bad,
        ),
    ];
    for (name, help, read) in figures {
        let status = status.clone();
        m::register_gauge(r, name, help, move || read(&status()) as i64);
    }
}

/// Serves `GET /metrics` to anyone on `listener` until `stop`.
pub async fn serve_plain(
    listener: tokio::net::TcpListener,
    registry: Arc<prometheus_client::registry::Registry>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Response, StatusCode};
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = crate::net::raised(&mut stop) => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header(hyper::header::CONTENT_TYPE, m::CONTENT_TYPE)
                            .body(Full::new(Bytes::from(m::render(&registry))))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"try /metrics\n")))
                    };
                    Ok::<_, std::convert::Infallible>(resp.expect("valid response"))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The node's registry, once `install`ed (before serving).
static REGISTRY: std::sync::OnceLock<Arc<prometheus_client::registry::Registry>> =
    std::sync::OnceLock::new();
/// `--metrics-anonymous`: `/metrics` on the node's port needs no ticket.
static ANONYMOUS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes `registry` the one `/metrics` answers from; `anonymous`: without a ticket.
pub fn install(registry: Arc<prometheus_client::registry::Registry>, anonymous: bool) {
    let _ = REGISTRY.set(registry);
    ANONYMOUS.store(anonymous, std::sync::atomic::Ordering::Relaxed);
}

/// May callers without a ticket read `/metrics` on the node's port?
pub fn anonymous_allowed() -> bool {
    ANONYMOUS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The exposition, if a registry is installed.
pub fn exposition() -> Option<String> {
    REGISTRY.get().map(|r| m::render(r))
}
