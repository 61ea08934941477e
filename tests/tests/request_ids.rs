//! One request followed across both logs (#26 item 3): the mount logs each request it
//! sends with its id (`x-dfs-request-id`) under a span naming the FUSE request it serves,
//! and the server logs the same id for the same method and path. Both daemons log JSON
//! lines at debug level here (their own test binary: RUST_LOG is set for this process's
//! children only). The server's answer carries the id back.

use dfs_tests::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

/// The JSON lines of a log that carry a request id: (id, message, span of the line).
fn requests_in(log: &Path) -> Vec<(String, String, Value)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let fields = v.get("fields")?;
            let id = fields.get("request_id")?.as_str()?.to_string();
            let msg = fields.get("message")?.as_str()?.to_string();
            Some((id, msg, v.get("span").cloned().unwrap_or(Value::Null)))
        })
        .collect()
}

#[test]
fn a_request_id_logged_by_the_mount_is_in_the_servers_log() {
    // SAFETY of the test: this binary has this one test, so no other thread reads the
    // environment while it changes; the daemons inherit it.
    std::env::set_var(
        "RUST_LOG",
        "info,dfs_fuse=debug,dfs_client=debug,dfs_server=debug",
    );
    let tmp = tempfile::TempDir::new().unwrap();
    let json = ["--log-format", "json"];
    let server = Server::start(&tmp.path().join("data"), free_port(), &json);
    let writer = Mount::start(
        &server.addr(),
        &tmp.path().join("w"),
        &tmp.path().join("wc"),
        &json,
    );
    fs::write(writer.join("file"), b"followed").unwrap();
    let reader = Mount::start(
        &server.addr(),
        &tmp.path().join("r"),
        &tmp.path().join("rc"),
        &json,
    );
    assert_eq!(fs::read(reader.join("file")).unwrap(), b"followed");

    // The reader's open fetched the file: one GET /v1/files/N, logged under `open`.
    let mount_side = requests_in(reader.log_path());
    let (id, msg, span) = mount_side
        .iter()
        .find(|(_, msg, span)| {
            msg.starts_with("GET /v1/files/")
                && span.get("op").and_then(Value::as_str) == Some("open")
        })
        .unwrap_or_else(|| {
            panic!(
                "no fetch logged under a FUSE open in the mount's log:\n{}",
                reader.log_tail(40)
            )
        });
    assert_eq!(id.len(), 16, "request ids are 16 hex digits: {id}");
    let path = msg.split_whitespace().nth(1).unwrap();
    let server_side = requests_in(server.log_path());
    let served = server_side
        .iter()
        .find(|(sid, _, _)| sid == id)
        .unwrap_or_else(|| panic!("request {id} ({msg}, {span}) is not in the server's log"));
    assert!(
        served.1.starts_with(&format!("GET {path} -> 200")),
        "the server logged request {id} as {:?}, the mount as {msg:?}",
        served.1
    );
    // Ids are unique per request: the writer's create and store are other ids.
    let writer_ids: Vec<String> = requests_in(writer.log_path())
        .into_iter()
        .map(|(i, _, _)| i)
        .collect();
    assert!(!writer_ids.contains(id), "two mounts used the id {id}");

    // And the answer carries the id back to whoever sent it.
    let answer = http(
        &server.addr(),
        "GET",
        "/v1/health",
        &[("x-dfs-request-id", "00000000feedf00d")],
        b"",
    )
    .expect("GET /v1/health");
    assert_eq!(
        answer.header("x-dfs-request-id"),
        Some("00000000feedf00d"),
        "{}",
        answer.describe()
    );
}
