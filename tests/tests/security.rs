//! The security service end to end: a realm created with `dfs-server init`, `dfs login`
//! for two local users (uids switched with setpriv), permissions enforced by the server
//! through the mount and by direct HTTP, and every kind of bad credential refused.

use dfs_common::auth::{self, Authenticator, Credentials, Ticket};
use dfs_common::codec;
use dfs_tests::realm_mount::{run, Realm, ALICE, BOB};
use dfs_tests::*;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Headers of a request signed with `creds` (ticket `ticket`).
fn signed(
    creds: &Credentials,
    ticket: &[u8],
    method: &str,
    path: &str,
    mut headers: Vec<(String, String)>,
    body: &[u8],
) -> Vec<(String, String)> {
    let sha = auth::sha256(body);
    headers.push((auth::HDR_BODY_SHA256.into(), codec::to_hex(&sha)));
    let digest = auth::request_digest(
        method,
        path,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        &sha,
    );
    let now = dfs_common::Timestamp::now();
    let a = Authenticator {
        principal: creds.identity.principal.clone(),
        time: now.secs,
        nanos: now.nanos,
        nonce: auth::random_u64(),
        seq: 1,
        digest,
    };
    headers.push((auth::HDR_TICKET.into(), codec::to_hex(ticket)));
    headers.push((
        auth::HDR_AUTH.into(),
        codec::to_hex(&auth::seal_ap_auth(&creds.session_key, &a)),
    ));
    headers
}

fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> HttpResponse {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    http(addr, method, path, &h, body).unwrap()
}

fn ino_of(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn realm_login_permissions_and_bad_credentials() {
    let r = Realm::new(&[]);
    let addr = r.server.addr();

    // Key files and the credential cache are 0600; a second init refuses.
    for f in ["krbtgt.key", "dfs.key", "realm.conf"] {
        let m = std::fs::metadata(r.tmp.path().join("data/realm").join(f)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    let key_before = std::fs::read(r.tmp.path().join("data/realm/dfs.key")).unwrap();
    let again = Command::new(bin("dfs-server"))
        .args(["init", "--realm", "X", "--password-stdin"])
        .arg("--data-dir")
        .arg(r.tmp.path().join("data"))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"pw\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing"));
    assert_eq!(
        std::fs::read(r.tmp.path().join("data/realm/dfs.key")).unwrap(),
        key_before
    );

    // Wrong password: a clear message and no ticket.
    let err = r.login(ALICE, "alice", "wrong").unwrap_err();
    assert!(err.contains("wrong password"), "{err}");
    assert!(!r.ccache(ALICE).exists());

    // The right one, through a recording proxy: the password never goes on the wire.
    let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let paddr = proxy.local_addr().unwrap().to_string();
    {
        let (sent, target) = (sent.clone(), addr.clone());
        std::thread::spawn(move || {
            for c in proxy.incoming() {
                let Ok(mut c) = c else { return };
                let mut s = std::net::TcpStream::connect(&target).unwrap();
                let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                });
                let sent = sent.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sent.lock().unwrap().extend_from_slice(&buf[..n]);
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
    let dfs = bin("dfs");
    let out = run(
        &[
            dfs.to_str().unwrap(),
            "login",
            "alice",
            "--password-stdin",
            "--server",
            &paddr,
        ],
        ALICE,
        "alice-pw\n",
        &[("DFS_CCACHE", r.ccache(ALICE).display().to_string())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let captured = sent.lock().unwrap().clone();
    assert!(captured.len() > 100, "the proxy saw the login");
    assert!(
        !captured.windows(8).any(|w| w == b"alice-pw"),
        "password on the wire"
    );
    assert_eq!(
        std::fs::metadata(r.ccache(ALICE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let who = r.dfs(ALICE, &["whoami"], "");
    let who = String::from_utf8_lossy(&who.stdout).into_owned();
    assert!(who.contains("alice") && who.contains("TEST.DFS"), "{who}");
    // (Through the proxy the mount, which talks to the server directly, was not given
    // alice's ticket: `dfs login` hands tickets only to mounts of the server it used.)
    r.login(ALICE, "alice", "alice-pw").unwrap();
    r.login(BOB, "bob", "bob-pw").unwrap();

    // Two users on one mount.
    let o = r.sh_as(
        ALICE,
        "echo secret > a.txt && chmod 600 a.txt && ls -ln a.txt",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&ALICE.to_string()));
    let o = r.sh_as(BOB, "cat a.txt");
    assert!(!o.status.success(), "bob read alice's 0600 file");
    let o = r.sh_as(BOB, "echo evil > a.txt");
    assert!(!o.status.success(), "bob wrote alice's 0600 file");
    let o = r.sh_as(BOB, "chmod 666 a.txt");
    assert!(!o.status.success(), "bob chmodded alice's file");

    // Direct HTTP with bob's valid ticket: 403; anonymous: 401 (a realm admits no
    // anonymous callers unless started with --anonymous).
    let file = r.mount.join("a.txt");
    let ino = ino_of(&file);
    let path = format!("/v1/files/{ino}");
    let bob = r.creds(BOB).service;
    let h = signed(&bob, &bob.ticket, "GET", &path, vec![], b"");
    assert_eq!(send(&addr, "GET", &path, &h, b"").status, 403);
    assert_eq!(send(&addr, "GET", &path, &[], b"").status, 401);
    let alice = r.creds(ALICE);
    let h = signed(
        &alice.service,
        &alice.service.ticket,
        "GET",
        &path,
        vec![],
        b"",
    );
    let ok = send(&addr, "GET", &path, &h, b"");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"secret\n");
    assert!(
        ok.header(auth::HDR_AUTH_REPLY).is_some(),
        "mutual authentication"
    );
    // The same request again is a replay.
    assert_eq!(send(&addr, "GET", &path, &h, b"").status, 401);
    // A forged ticket.
    let h = signed(&alice.service, &[7u8; 200], "GET", &path, vec![], b"");
    assert_eq!(send(&addr, "GET", &path, &h, b"").status, 401);
    // A ticket for another service (the TGT).
    let h = signed(&alice.tgt, &alice.tgt.ticket, "GET", &path, vec![], b"");
    assert_eq!(send(&addr, "GET", &path, &h, b"").status, 401);
    // An expired ticket, minted with the service key.
    let now = dfs_common::Timestamp::now().secs;
    let old = Ticket {
        identity: alice.service.identity.clone(),
        service: auth::FILE_SERVICE.into(),
        session_key: alice.service.session_key.clone(),
        issued: now - 20_000,
        expires: now - 10_000,
    };
    let h = signed(
        &alice.service,
        &old.seal(&r.service_key()),
        "GET",
        &path,
        vec![],
        b"",
    );
    let resp = send(&addr, "GET", &path, &h, b"");
    assert_eq!(resp.status, 401);
    assert!(String::from_utf8_lossy(&resp.body).contains("expired"));
    // A tampered header.
    let mut h = signed(
        &alice.service,
        &alice.service.ticket,
        "GET",
        &path,
        vec![("x-dfs-have-version".into(), "1".into())],
        b"",
    );
    h[0].1 = "2".into();
    assert_eq!(send(&addr, "GET", &path, &h, b"").status, 401);
    // A tampered body.
    let body = codec::encode(&dfs_common::proto::DirRequest::GetAttr { ino });
    let h = signed(
        &alice.service,
        &alice.service.ticket,
        "POST",
        "/v1/dir",
        vec![],
        &body,
    );
    let mut bad = body.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(send(&addr, "POST", "/v1/dir", &h, &bad).status, 401);
    // The server keeps serving.
    let h = signed(
        &alice.service,
        &alice.service.ticket,
        "POST",
        "/v1/dir",
        vec![],
        &body,
    );
    assert_eq!(send(&addr, "POST", "/v1/dir", &h, &body).status, 200);

    // chmod 644 lets bob read.
    let o = r.sh_as(ALICE, "chmod 644 a.txt");
    assert!(o.status.success());
    let o = r.sh_as(BOB, "cat a.txt");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"secret\n");
    let o = r.sh_as(BOB, "echo evil > a.txt");
    assert!(!o.status.success(), "bob wrote a 0644 file of alice");
}

#[test]
fn expired_tickets_give_eacces_and_a_log_line_not_a_hang() {
    let r = Realm::new(&["--ticket-lifetime", "3"]);
    r.login(ALICE, "alice", "alice-pw").unwrap();
    let o = r.sh_as(ALICE, "echo mine > e.txt && chmod 600 e.txt && cat e.txt");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(std::time::Duration::from_secs(4));
    let started = std::time::Instant::now();
    let o = r.sh_as(ALICE, "echo more > e2.txt");
    assert!(
        !o.status.success(),
        "a write with an expired ticket succeeded"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        r.mount.log_tail(200).contains("dfs login"),
        "no log line telling to log in again"
    );
    // Logging in again works.
    r.login(ALICE, "alice", "alice-pw").unwrap();
    let o = r.sh_as(ALICE, "echo more > e2.txt");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A TCP proxy to `target` that records every byte in both directions and, in answers
/// (server to client), replaces `tamper.0` with `tamper.1` (same length) where it sees it.
fn wire_proxy(
    target: &str,
    tamper: Option<(&'static [u8], &'static [u8])>,
) -> (String, Arc<Mutex<Vec<u8>>>) {
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (seen2, target) = (seen.clone(), target.to_string());
    let pump = |mut from: std::net::TcpStream,
                mut to: std::net::TcpStream,
                seen: Arc<Mutex<Vec<u8>>>,
                tamper: Option<(&'static [u8], &'static [u8])>| {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let data = &mut buf[..n];
                seen.lock().unwrap().extend_from_slice(data);
                if let Some((from_pat, to_pat)) = tamper {
                    if let Some(i) = data.windows(from_pat.len()).position(|w| w == from_pat) {
                        data[i..i + to_pat.len()].copy_from_slice(to_pat);
                    }
                }
                if to.write_all(data).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    };
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(c) = c else { return };
            let Ok(s) = std::net::TcpStream::connect(&target) else {
                continue;
            };
            pump(
                c.try_clone().unwrap(),
                s.try_clone().unwrap(),
                seen2.clone(),
                None,
            );
            pump(s, c, seen2.clone(), tamper);
        }
    });
    (addr, seen)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn privacy_level_file_contents_do_not_appear_in_clear_on_the_wire() {
    let r = Realm::new(&[]);
    r.login(ALICE, "alice", "alice-pw").unwrap();
    // A file written through the direct mount, to be fetched through the proxied ones.
    let o = r.sh_as(
        ALICE,
        "python3 -c \"open('shared.txt','w').write('SHARED-MARKER-1c4e9\\n'*2000)\"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for level in ["privacy", "integrity"] {
        let (paddr, seen) = wire_proxy(&r.server.addr(), None);
        let m = Mount::start(
            &paddr,
            &r.tmp.path().join(format!("mnt-{level}")),
            &r.tmp.path().join(format!("cache-{level}")),
            &["--protection", level],
        );
        // `dfs login` through the proxy hands the ticket to the mount behind it.
        let out = r.dfs(
            ALICE,
            &["login", "alice", "--password-stdin", "--server", &paddr],
            "alice-pw\n",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = format!(
            "cd {dir} && python3 -c \"open('name-marker-5a1f.txt','w').write('OWN-MARKER-8d2b7\\n'*1000)\" \
             && python3 -c \"open('big.bin','w').write(('BIG-MARKER-93c0e\\n'*200000)[:3000000])\" \
             && cat shared.txt | grep -c SHARED-MARKER-1c4e9 && ls && sha256sum big.bin",
            dir = m.path().display()
        );
        let o = r.sh_as(ALICE, &script);
        assert!(
            o.status.success(),
            "{level}: {} {} {:?}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout),
            o.status
        );
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            stdout.contains("2000") && stdout.contains("name-marker-5a1f"),
            "{stdout}"
        );
        // Read back through the direct mount: what the privacy mount stored is intact.
        let big = std::fs::read(r.mount.join("big.bin")).unwrap();
        assert_eq!(big.len(), 3_000_000);
        assert!(big.starts_with(b"BIG-MARKER-93c0e\n"));
        drop(m);
        let wire = seen.lock().unwrap().clone();
        assert!(wire.len() > 100_000, "{level}: the proxy saw the traffic");
        let markers: [&[u8]; 4] = [
            b"SHARED-MARKER-1c4e9",
            b"OWN-MARKER-8d2b7",
            b"BIG-MARKER-93c0e",
            b"name-marker-5a1f",
        ];
        for marker in markers {
            let found = contains(&wire, marker);
            if level == "privacy" {
                assert!(
                    !found,
                    "{} in clear on the wire at privacy",
                    String::from_utf8_lossy(marker)
                );
            } else {
                assert!(
                    found,
                    "{} not on the wire at integrity",
                    String::from_utf8_lossy(marker)
                );
            }
        }
        std::fs::remove_file(r.mount.join("big.bin")).unwrap();
        std::fs::remove_file(r.mount.join("name-marker-5a1f.txt")).unwrap();
    }
}

#[test]
fn answers_tampered_on_their_way_back_are_refused_by_the_mount() {
    let r = Realm::new(&[]);
    r.login(ALICE, "alice", "alice-pw").unwrap();
    let o = r.sh_as(
        ALICE,
        "python3 -c \"open('t.txt','w').write('TAMPER-ME-4242\\n'*100)\" && echo fine > ok.txt",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (paddr, seen) = wire_proxy(
        &r.server.addr(),
        Some((b"TAMPER-ME-4242", b"TAMPER-ME-4243")),
    );
    let m = Mount::start(
        &paddr,
        &r.tmp.path().join("mnt-tamper"),
        &r.tmp.path().join("cache-tamper"),
        &[],
    );
    let out = r.dfs(
        ALICE,
        &["login", "alice", "--password-stdin", "--server", &paddr],
        "alice-pw\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = r.sh_as(ALICE, &format!("cat {}/t.txt", m.path().display()));
    assert!(
        contains(&seen.lock().unwrap(), b"TAMPER-ME-4242"),
        "the proxy saw the answer: {o:?}"
    );
    assert!(
        !o.status.success() && !contains(&o.stdout, b"TAMPER-ME-4243"),
        "tampered contents were returned: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("Input/output error") || err.contains("Permission denied"),
        "{err}"
    );
    let log = m.log_tail(200);
    assert!(
        log.contains("integrity") || log.contains("signed hash"),
        "no log line about the tampering"
    );
    // The mount keeps working.
    let o = r.sh_as(
        ALICE,
        &format!(
            "cat {}/ok.txt && echo new > {}/n.txt",
            m.path().display(),
            m.path().display()
        ),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "fine\n");
}

/// In a realm, a close that failed while the server was away is stored later by the
/// mount's retry loop *as the user who wrote it*: anonymous, it would be refused (the file
/// is alice's 0644 in her 0700 directory) and the data would never reach the server.
#[test]
fn a_failed_close_is_stored_later_with_the_writers_credentials() {
    let mut r = Realm::new(&[]);
    r.login(ALICE, "alice", "alice-pw").unwrap();
    let o = r.sh_as(ALICE, "mkdir -m 700 ad && echo v1 > ad/f && cat ad/f");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    r.server.kill9();
    // python reports a failed close() (a shell redirection ignores it).
    let o = r.sh_as(
        ALICE,
        "python3 -c \"f = open('ad/f', 'w'); f.write('v2'); f.close()\"",
    );
    assert!(!o.status.success(), "close succeeded with the server down");
    r.server.restart();
    let unstored = |r: &Realm| {
        let out = r.dfs(ALICE, &["status", r.mount.path().to_str().unwrap()], "");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("unstored files:"))
            .map(|l| l.split_whitespace().last().unwrap_or("?").to_string())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while unstored(&r) != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "alice's unstored file was never stored; mount log:\n{}",
            r.mount.log_tail(30)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Locks need the right to use the file: bob cannot lock alice's 0600 file (he could
/// otherwise make her writers wait), alice can, and a uid that never logged in cannot.
#[test]
fn locks_need_permission_on_the_file() {
    let r = Realm::new(&[]);
    r.login(ALICE, "alice", "alice-pw").unwrap();
    r.login(BOB, "bob", "bob-pw").unwrap();
    let o = r.sh_as(ALICE, "echo s > secret && chmod 600 secret");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = r.mount.path().join("secret");
    let path = path.to_str().unwrap();
    let bob = r.dfs(BOB, &["lock", path, "--wait", "1"], "");
    assert!(!bob.status.success(), "bob locked alice's 0600 file");
    let err = String::from_utf8_lossy(&bob.stderr).to_lowercase();
    assert!(err.contains("permission denied"), "bob: {err}");
    let stranger = r.dfs(4242, &["lock", path, "--wait", "1"], "");
    assert!(
        !stranger.status.success(),
        "a uid without credentials took a lock"
    );
    let alice = r.dfs(ALICE, &["lock", path], "");
    assert!(
        alice.status.success(),
        "alice: {}",
        String::from_utf8_lossy(&alice.stderr)
    );
    let listed = r.dfs(ALICE, &["locks", path], "");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("Exclusive"));
}
