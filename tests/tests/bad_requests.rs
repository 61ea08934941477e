//! Raw HTTP against the server: malformed, oversized and impossible requests get the error
//! status of the wire contract (dfs-common `proto`/`error`) with a message, never a crash or
//! a hang; afterwards the server is healthy and valid requests still work.

use dfs_common::codec;
use dfs_common::proto::{DirReply, DirRequest, HDR_ERROR, MAX_DIR_REQUEST};
use dfs_common::types::{FileKind, ROOT_INO};
use dfs_tests::{
    attr_of, connect, dir_call, fetch, free_port, http, read_response, sha256, HttpResponse, Server,
};
use std::io::Write;
use std::time::Duration;

fn server() -> (Server, tempfile::TempDir) {
    let tmp = tempfile::TempDir::new().unwrap();
    let s = Server::start(&tmp.path().join("data"), free_port(), &[]);
    (s, tmp)
}

/// Health answers 200 and a valid directory request works.
fn assert_still_serves(s: &Server) {
    let h = http(&s.addr(), "GET", "/v1/health", &[], b"").expect("health request");
    assert_eq!(h.status, 200, "health after bad requests: {}", h.describe());
    match dir_call(&s.addr(), &DirRequest::GetAttr { ino: ROOT_INO }) {
        Ok(DirReply::Attr(a)) => {
            assert_eq!((a.ino, a.kind), (ROOT_INO, FileKind::Dir));
        }
        other => panic!("GetAttr of the root after bad requests: {other:?}"),
    }
}

fn assert_error(r: &HttpResponse, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.describe());
    assert!(
        !r.body.is_empty(),
        "{what}: error without a message: {}",
        r.describe()
    );
}

#[test]
fn garbage_dir_request_is_400_with_a_message() {
    let (s, _tmp) = server();
    let garbage = [0xffu8; 40];
    let r = http(&s.addr(), "POST", "/v1/dir", &[], &garbage).unwrap();
    assert_error(&r, 400, "garbage body");
    assert_eq!(r.header(HDR_ERROR), Some("EBADMSG"), "{}", r.describe());
    // A valid request followed by trailing bytes is malformed too.
    let mut body = codec::encode(&DirRequest::GetAttr { ino: ROOT_INO });
    body.extend_from_slice(b"junk");
    let r = http(&s.addr(), "POST", "/v1/dir", &[], &body).unwrap();
    assert_error(&r, 400, "trailing bytes");
    let r = http(&s.addr(), "POST", "/v1/dir", &[], b"").unwrap();
    assert_error(&r, 400, "empty body");
    assert_still_serves(&s);
}

#[test]
fn oversized_dir_request_is_413() {
    let (s, _tmp) = server();
    let len = 2 * MAX_DIR_REQUEST;
    assert_eq!(len, 2_097_152);
    let mut conn = connect(&s.addr(), Duration::from_secs(5)).unwrap();
    let head = format!(
        "POST /v1/dir HTTP/1.1\r\nhost: {}\r\n\
         content-length: {len}\r\nconnection: close\r\n\r\n",
        s.addr()
    );
    conn.write_all(head.as_bytes()).unwrap();
    // A server that checks content-length answers now; one that reads up to the limit
    // first gets the body after 5 s of silence.
    let r = match read_response(&mut conn) {
        Ok(r) => r,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            eprintln!("no answer to the head alone; sending the body");
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            conn.set_write_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let _ = conn.write_all(&vec![0u8; len]);
            read_response(&mut conn).expect("response to an oversized /v1/dir request")
        }
        Err(e) => panic!("response to an oversized /v1/dir request: {e}"),
    };
    assert_error(&r, 413, "2 MiB dir request");
    assert_still_serves(&s);
}

#[test]
fn store_to_a_directory_is_rejected() {
    let (s, _tmp) = server();
    let r = http(
        &s.addr(),
        "PUT",
        &format!("/v1/files/{ROOT_INO}"),
        &[],
        b"hello",
    )
    .unwrap();
    assert_error(&r, 422, "PUT to the root directory");
    assert_eq!(r.header(HDR_ERROR), Some("EISDIR"), "{}", r.describe());
    assert_still_serves(&s);
}

#[test]
fn missing_file_and_unknown_path_are_404() {
    let (s, _tmp) = server();
    let r = fetch(&s.addr(), 999_999).unwrap();
    assert_error(&r, 404, "GET /v1/files/999999");
    assert_eq!(r.header(HDR_ERROR), Some("ENOENT"), "{}", r.describe());
    let r = http(&s.addr(), "GET", "/v1/no-such-thing", &[], b"").unwrap();
    assert_eq!(r.status, 404, "unknown /v1 path: {}", r.describe());
    let r = http(&s.addr(), "GET", "/index.html", &[], b"").unwrap();
    assert_eq!(r.status, 404, "unknown path: {}", r.describe());
    let r = http(&s.addr(), "GET", "/v1/files/not-a-number", &[], b"").unwrap();
    assert!(
        r.status == 400 || r.status == 404,
        "non-numeric inode: {}",
        r.describe()
    );
    assert_still_serves(&s);
}

#[test]
fn valid_requests_round_trip_on_the_wire() {
    let (s, _tmp) = server();
    let addr = s.addr();
    let created = match dir_call(
        &addr,
        &DirRequest::Create {
            parent: ROOT_INO,
            name: b"wire.txt".to_vec(),
            mode: 0o644,
            umask: 0,
            uid: 0,
            gid: 0,
            exclusive: true,
        },
    ) {
        Ok(DirReply::Attr(a)) => a,
        other => panic!("Create: {other:?}"),
    };
    assert_eq!((created.kind, created.size), (FileKind::File, 0));

    let body = b"contents stored over raw HTTP\n";
    let r = http(
        &addr,
        "PUT",
        &format!("/v1/files/{}", created.ino),
        &[(dfs_common::proto::HDR_SHA256, &sha256(body))],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "store: {}", r.describe());
    let stored: dfs_common::Attr = codec::decode(&r.body).expect("store answers an Attr");
    assert_eq!(stored.size, body.len() as u64);
    assert!(stored.version > created.version, "store bumps the version");

    // A body whose hash differs from x-dfs-sha256 is rejected and changes nothing.
    let r = http(
        &addr,
        "PUT",
        &format!("/v1/files/{}", created.ino),
        &[(dfs_common::proto::HDR_SHA256, &sha256(b"something else"))],
        b"corrupted in transit",
    )
    .unwrap();
    assert!(
        r.status >= 400,
        "store with a wrong x-dfs-sha256 was accepted: {}",
        r.describe()
    );

    // A mode with set-id or sticky bits is refused: those go through setattr.
    let r = http(
        &addr,
        "PUT",
        &format!("/v1/files/{}", created.ino),
        &[(dfs_common::proto::HDR_MODE, &0o4755.to_string())],
        b"with a set-uid mode",
    )
    .unwrap();
    assert_error(&r, 400, "store with x-dfs-mode 4755");

    let r = fetch(&addr, created.ino).unwrap();
    assert_eq!(r.status, 200, "fetch: {}", r.describe());
    assert_eq!(r.body, body);
    let attr = attr_of(&r).expect("fetch carries x-dfs-attr");
    assert_eq!(attr.version, stored.version);

    // Asking with the version we hold gives 304 and no body.
    let r = http(
        &addr,
        "GET",
        &format!("/v1/files/{}", created.ino),
        &[(
            dfs_common::proto::HDR_HAVE_VERSION,
            &stored.version.to_string(),
        )],
        b"",
    )
    .unwrap();
    assert_eq!(
        r.status,
        304,
        "fetch with the current version: {}",
        r.describe()
    );

    match dir_call(
        &addr,
        &DirRequest::ReadDir {
            dir: ROOT_INO,
            after: None,
            limit: 100,
        },
    ) {
        Ok(DirReply::Entries { entries, more }) => {
            let names: Vec<&[u8]> = entries.iter().map(|(n, _)| n.as_slice()).collect();
            assert_eq!(names, [b"wire.txt"]);
            assert!(!more);
        }
        other => panic!("ReadDir: {other:?}"),
    }
    assert_still_serves(&s);
}
