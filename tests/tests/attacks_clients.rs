//! A hostile party on the network tries to act as a mount (issue #21, items 1 and 5). It
//! knows the mount's client id (`dfs status` prints it, lock listings show it) and speaks
//! the wire protocol itself, with no credentials of that mount:
//! - releasing the mount's writers' lock of a file it has open, then storing over it;
//! - taking the mount's callback channel (which replaced the mount's own, and handed the
//!   attacker its breaks, names included);
//! - replaying a request captured on the network, before and after a server restart, or
//!   using a captured proof for another request;
//! - reading the callback channel's frames off the wire.
//!
//! Each is refused, and the mount works on unharmed.

use dfs_common::client_id::HDR_CLIENT_AUTH;
use dfs_common::codec;
use dfs_common::locks::{LockClass, ReleaseRequest, HDR_FENCE};
use dfs_common::proto::HDR_CLIENT;
use dfs_tests::{
    connect, dfs_cli, hex, http, lookup_path, proof_headers, read_response, test_client, Agent,
    HttpResponse, Pair,
};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(20);

/// The client id `dfs status` prints for the mount holding `path`.
fn client_id_of(path: &std::path::Path) -> u64 {
    let out = dfs_cli(&["status".as_ref(), path.as_os_str()], STEP);
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("client id:"))
        .unwrap_or_else(|| panic!("no client id in `dfs status`:\n{text}"));
    u64::from_str_radix(id.trim().trim_start_matches("0x"), 16).expect("hex client id")
}

fn refused(r: &HttpResponse, what: &str) {
    assert_eq!(r.status, 401, "{what} was not refused: {}", r.describe());
}

/// How many times a mount's log says its callback channel was lost.
fn channel_losses(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("callback channel lost")
        .count()
}

#[test]
fn an_attacker_who_knows_a_mounts_id_cannot_act_as_that_mount() {
    let t = Pair::new();
    let addr = t.server.addr();
    let victim = client_id_of(t.a.path());
    let f = t.a.join("held");
    let mut w = Agent::spawn("writer", &t.tmp.path().join("local"));
    w.ok(&format!("open w {}", f.display()), STEP);
    w.ok(&format!("write {}", hex(b"the victim's data\n")), STEP);
    let ino = lookup_path(&addr, "held").expect("held on the server").ino;
    let losses_before = channel_losses(t.a.log_path());

    // Release the victim's writers' lock, renew or list as it, with no proof, a garbage
    // one, and another client's valid proof.
    let release = codec::encode(&vec![ReleaseRequest {
        ino,
        class: LockClass::Open,
        owner: 0,
        range: None,
    }]);
    let id = victim.to_string();
    let other = proof_headers(&addr, 1, "POST", "/v1/locks/release-many");
    let garbage = format!("1.2.{}", "00".repeat(32));
    let attempts: [Vec<(&str, &str)>; 3] = [
        vec![(HDR_CLIENT, &id)],
        vec![(HDR_CLIENT, &id), (HDR_CLIENT_AUTH, &garbage)],
        vec![(HDR_CLIENT, &id), (HDR_CLIENT_AUTH, &other[1].1)],
    ];
    for headers in &attempts {
        let r = http(&addr, "POST", "/v1/locks/release-many", headers, &release).unwrap();
        refused(&r, "a release as the victim");
        for path in ["/v1/locks/renew", "/v1/locks/list"] {
            let r = http(&addr, "POST", path, headers, b"").unwrap();
            refused(&r, path);
        }
    }
    // So a store by the attacker is refused: the victim still holds the writers' lock.
    let r = http(
        &addr,
        "PUT",
        &format!("/v1/files/{ino}"),
        &[],
        b"the attacker's",
    )
    .unwrap();
    assert_eq!(r.status, 423, "{}", r.describe());
    let r = http(
        &addr,
        "PUT",
        &format!("/v1/files/{ino}"),
        &[(HDR_CLIENT, &id), (HDR_FENCE, "1")],
        b"the attacker's",
    )
    .unwrap();
    refused(&r, "a store as the victim");

    // The callback channel: refused, and the victim's own stays up.
    for headers in &attempts {
        let r = http(&addr, "GET", "/v1/callbacks", headers, b"").unwrap();
        refused(&r, "the victim's callback channel");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        channel_losses(t.a.log_path()),
        losses_before,
        "the victim's callback channel flapped"
    );

    // The victim closes: stored, nothing set aside.
    w.ok("close", STEP);
    drop(w);
    assert_eq!(
        std::fs::read(t.b.join("held")).unwrap(),
        b"the victim's data\n"
    );
    let kept = t.a.cache_dir().join("lost+found");
    assert!(std::fs::read_dir(&kept).map(|d| d.count()).unwrap_or(0) == 0);
}

/// Sends the bytes of a raw request and reads the answer.
fn send_raw(addr: &str, raw: &[u8]) -> HttpResponse {
    let mut s = connect(addr, STEP).expect("connect");
    s.write_all(raw).unwrap();
    read_response(&mut s).expect("answer")
}

fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn a_captured_request_is_refused_when_sent_again_or_changed() {
    let mut t = Pair::new();
    let addr = t.server.addr();
    let list = codec::encode(&dfs_common::locks::ListRequest {
        ino: None,
        after: None,
        limit: 10,
    });
    // A request as it crossed the network, answered once.
    let proof = proof_headers(&addr, 7, "POST", "/v1/locks/list");
    let captured = raw_request(&addr, "POST", "/v1/locks/list", &proof, &list);
    assert_eq!(send_raw(&addr, &captured).status, 200);
    refused(&send_raw(&addr, &captured), "the same request again");
    // Its proof on another request.
    let moved = raw_request(&addr, "POST", "/v1/locks/renew", &proof, &list);
    refused(&send_raw(&addr, &moved), "a proof moved to another path");
    // A request captured before a restart, sent after it.
    let proof = proof_headers(&addr, 7, "POST", "/v1/locks/list");
    let before_restart = raw_request(&addr, "POST", "/v1/locks/list", &proof, &list);
    t.server.restart();
    let r = send_raw(&addr, &before_restart);
    assert_eq!(
        (r.status, r.header("x-dfs-error")),
        (401, Some("EEPOCH")),
        "{}",
        r.describe()
    );
    // The client itself goes on after the restart (its registration was kept).
    let r = dfs_tests::http_as(&addr, 7, "POST", "/v1/locks/list", &[], &list).unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    // And so do the mounts.
    std::fs::write(t.a.join("after"), b"restart").unwrap();
    let since = Instant::now();
    while std::fs::read(t.b.join("after")).ok().as_deref() != Some(&b"restart"[..]) {
        assert!(since.elapsed() < STEP, "mount b after the restart");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_callback_channel_shows_no_names_on_the_wire() {
    let t = Pair::new();
    let addr = t.server.addr();
    test_client(&addr, 9);
    // The channel as it crosses the network.
    let mut s = connect(&addr, STEP).expect("connect");
    let proof = proof_headers(&addr, 9, "GET", "/v1/callbacks");
    let mut head = format!("GET /v1/callbacks HTTP/1.1\r\nhost: {addr}\r\n");
    for (k, v) in &proof {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The client looks at the root (a promise on it), then a mount creates a secret name.
    let r = dfs_tests::http_as(
        &addr,
        9,
        "POST",
        "/v1/dir",
        &[],
        &codec::encode(&dfs_common::proto::DirRequest::GetAttr { ino: 1 }),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    std::fs::write(t.a.join("a-secret-name"), b"x").unwrap();
    let mut wire = Vec::new();
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => wire.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(
        wire.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert!(
        !wire.windows(13).any(|w| w == b"a-secret-name"),
        "the name crossed the network in clear"
    );
    // (That the client, which holds the key, reads the break is tested frame by frame in
    // http_server.rs.)
}
