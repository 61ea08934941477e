//! Starts the real `dfs-server` binary on a free port and talks raw HTTP/1.1 to it: bad
//! requests are refused with messages and the server keeps serving, directory requests
//! work, an 8 MiB store reads back, a store survives `kill -9`, SIGTERM exits 0; another
//! client's change breaks a client's promises on its (sealed) callback channel, read frame
//! by frame, and a restart is a new epoch.

use dfs_common::proto::{CallbackFrame, DirRequest, HDR_ATTR, HDR_HAVE_VERSION, HDR_SHA256};
use dfs_common::{codec, Attr, FileKind, ROOT_INO};
use dfs_tests::caller::{attr, As};
use dfs_tests::{
    free_port, http, http_as, pseudo_random, server_epoch, sha256, CallbackChannel, HttpResponse,
    Server,
};

/// An anonymous request with `headers`, answered whole.
fn request(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    http(&s.addr(), method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A request as registered test client `n`, sent once more if the server restarted since.
fn request_as(s: &Server, n: u64, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    http_as(&s.addr(), n, method, path, &[], body)
        .unwrap_or_else(|e| panic!("{method} {path} as client {n}: {e}"))
}

/// The server's epoch, as every answer names it.
fn epoch_of(s: &Server) -> u64 {
    server_epoch(&s.addr()).expect("the server's epoch")
}

#[test]
fn real_server_over_raw_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let mut server = Server::start(&data, free_port(), &[]);

    // Garbage is a 400 with a message, and the server goes on.
    let r = request(&server, "POST", "/v1/dir", &[], &[0xff; 40]);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-dfs-error"), Some("EBADMSG"));
    assert!(String::from_utf8_lossy(&r.body).contains("malformed request"));

    // A declared 2 MiB directory request is refused without being read.
    let declared = (2u64 << 20).to_string();
    let r = request(
        &server,
        "POST",
        "/v1/dir",
        &[("content-length", &declared)],
        b"",
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-dfs-error"), Some("EFBIG"));

    // Unknown paths and wrong methods.
    assert_eq!(request(&server, "GET", "/v2/nothing", &[], b"").status, 404);
    assert_eq!(request(&server, "GET", "/v1/dir", &[], b"").status, 405);

    // Mkdir then Lookup.
    let d = attr(As::open(17).dir(
        &server,
        &DirRequest::Mkdir {
            parent: ROOT_INO,
            name: b"d".to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 1000,
            gid: 1000,
        },
    ));
    assert_eq!(d.kind, FileKind::Dir);
    let found = attr(As::open(17).dir(
        &server,
        &DirRequest::Lookup {
            parent: ROOT_INO,
            name: b"d".to_vec(),
        },
    ));
    assert_eq!(found, d);
    let r = request(
        &server,
        "POST",
        "/v1/dir",
        &[],
        &codec::encode(&DirRequest::Mkdir {
            parent: ROOT_INO,
            name: b"d".to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 0,
            gid: 0,
        }),
    );
    assert_eq!((r.status, r.header("x-dfs-error")), (409, Some("EEXIST")));

    // An 8 MiB store reads back byte for byte.
    let f = attr(As::open(17).dir(
        &server,
        &DirRequest::Create {
            parent: d.ino,
            name: b"big".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 1000,
            gid: 1000,
            exclusive: true,
        },
    ));
    let contents = pseudo_random(8 << 20, 1);
    let path = format!("/v1/files/{}", f.ino);
    let sha = sha256(&contents);
    let r = request(&server, "PUT", &path, &[(HDR_SHA256, &sha)], &contents);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let stored: Attr = codec::decode(&r.body).unwrap();
    assert_eq!((stored.size, stored.version), (contents.len() as u64, 2));
    let r = request(&server, "GET", &path, &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body == contents, "fetched bytes differ");
    let fetched: Attr = codec::from_header(r.header(HDR_ATTR).unwrap()).unwrap();
    assert_eq!(fetched, stored);
    let r = request(&server, "GET", &path, &[(HDR_HAVE_VERSION, "2")], b"");
    assert_eq!(r.status, 304);
    assert!(r.header(HDR_ATTR).is_some());

    // A wrong hash stores nothing.
    let r = request(
        &server,
        "PUT",
        &path,
        &[(HDR_SHA256, &"00".repeat(32))],
        b"other",
    );
    assert_eq!((r.status, r.header("x-dfs-error")), (422, Some("ECORRUPT")));

    // Durability: a store acknowledged before kill -9 is there after a restart.
    let small = b"durable bytes".to_vec();
    let r = request(&server, "PUT", &path, &[], &small);
    assert_eq!(r.status, 200);
    server.kill9();
    server.restart();
    let r = request(&server, "GET", &path, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, small);

    // SIGTERM: clean exit with status 0 (`stop` fails the test if it takes over 20 s).
    let status = server.stop();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn callbacks_break_other_clients_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let mut server = Server::start(&data, free_port(), &[]);
    let (a, b) = (100u64, 200u64);
    let d = attr(As::open(b).dir(
        &server,
        &DirRequest::Mkdir {
            parent: ROOT_INO,
            name: b"d".to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 0,
            gid: 0,
        },
    ));
    let f = attr(As::open(b).dir(
        &server,
        &DirRequest::Create {
            parent: d.ino,
            name: b"f".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 0,
            gid: 0,
            exclusive: true,
        },
    ));
    let mut cb = CallbackChannel::open(&server.addr(), a);
    let epoch = epoch_of(&server);
    // A looks at d and f: promises on both.
    attr(As::open(a).dir(
        &server,
        &DirRequest::Lookup {
            parent: d.ino,
            name: b"f".to_vec(),
        },
    ));
    // B stores f: A hears Break{f}.
    let path = format!("/v1/files/{}", f.ino);
    let r = request_as(&server, b, "PUT", &path, b"new bytes");
    assert_eq!(r.status, 200);
    assert_eq!(cb.next_change(), CallbackFrame::Break { ino: f.ino });
    // B adds a name in d: A hears EntryBreak{d, name} and Break{d}.
    attr(As::open(b).dir(
        &server,
        &DirRequest::Create {
            parent: d.ino,
            name: b"g".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 0,
            gid: 0,
            exclusive: true,
        },
    ));
    assert_eq!(
        cb.next_change(),
        CallbackFrame::EntryBreak {
            dir: d.ino,
            name: b"g".to_vec()
        }
    );
    assert_eq!(cb.next_change(), CallbackFrame::Break { ino: d.ino });
    // A's own changes send A nothing: the next frame A hears is about B's change.
    attr(As::open(a).dir(
        &server,
        &DirRequest::Lookup {
            parent: d.ino,
            name: b"f".to_vec(),
        },
    ));
    let r = request_as(&server, a, "PUT", &path, b"mine");
    assert_eq!(r.status, 200);
    attr(As::open(b).dir(
        &server,
        &DirRequest::Mkdir {
            parent: d.ino,
            name: b"h".to_vec(),
            mode: 0o755,
            umask: 0,
            uid: 0,
            gid: 0,
        },
    ));
    assert_eq!(
        cb.next_change(),
        CallbackFrame::EntryBreak {
            dir: d.ino,
            name: b"h".to_vec()
        }
    );
    assert_eq!(cb.next_change(), CallbackFrame::Break { ino: d.ino });
    let r = request_as(&server, b, "PUT", &path, b"theirs");
    assert_eq!(r.status, 200);
    assert_eq!(cb.next_change(), CallbackFrame::Break { ino: f.ino });
    drop(cb);
    // A restart is a new epoch.
    server.restart();
    assert_ne!(epoch, epoch_of(&server));
    // The client's registration survived the restart: its channel opens again.
    let _cb = CallbackChannel::open(&server.addr(), a);
}
