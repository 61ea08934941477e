//! The `dfs` command's output (#26): `--json` on every command that shows state (status,
//! lock and locks, tx apply and stat, whoami) parses as JSON and states the same facts as
//! the text output; the text shows sizes in binary units and times as local dates with
//! how far away they are, not unix seconds.

use dfs_tests::realm_mount::{Realm, ALICE};
use dfs_tests::*;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// `dfs ARGS`, which must succeed: its stdout.
fn dfs_ok(args: &[&str]) -> String {
    let out = dfs_cli(args, LIMIT);
    assert!(out.status.success(), "dfs {args:?}: {}", shown(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shown(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The value after `key:` on its line of a text output.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} line in {text}"))
}

#[test]
fn status_locks_and_tx_as_json_state_what_the_text_states() {
    let fx = Fixture::new();
    let mnt = fx.mnt().to_str().unwrap().to_string();
    let f = fx.mnt().join("f");
    fs::write(&f, vec![7u8; 3 * 1024]).unwrap();
    let f = f.to_str().unwrap();

    // status
    let text = dfs_ok(&["status", &mnt]);
    let json = json_of(&dfs_ok(&["status", &mnt, "--json"]));
    let id = json["client_id"].as_u64().expect("client_id");
    assert_eq!(field(&text, "client id:"), format!("{id:#x}"));
    assert_eq!(field(&text, "server:"), json["server"].as_str().unwrap());
    assert_eq!(
        field(&text, "unstored files:"),
        json["unstored_files"].to_string()
    );
    let cached = field(&text, "cached files:");
    assert!(
        cached.starts_with(&format!("{} (", json["cached_files"])),
        "cached files {cached:?} vs {json}"
    );
    assert!(
        cached.ends_with("iB)") || cached.ends_with(" B)"),
        "cache use in binary units: {cached:?}"
    );
    assert!(json["cluster"].is_object(), "{json}");

    // lock and locks
    let locked = json_of(&dfs_ok(&["--json", "lock", f]));
    assert_eq!(locked["locked"], true, "{locked}");
    let token = locked["token"].as_u64().expect("token");
    let text = dfs_ok(&["locks", f]);
    let json = json_of(&dfs_ok(&["locks", f, "--json"]));
    let list = json.as_array().expect("a list of locks");
    assert_eq!(list.len(), 1, "{json}");
    let line = text.lines().nth(1).expect("one lock line");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], list[0]["ino"].to_string(), "{line} vs {json}");
    assert_eq!(words[1], list[0]["class"].as_str().unwrap());
    assert_eq!(words[2], list[0]["mode"].as_str().unwrap());
    assert!(
        line.contains(&format!(" {token} ")) && list[0]["token"] == token,
        "{line} vs {json}"
    );
    assert!(line.contains(list[0]["label"].as_str().unwrap()));
    let unlocked = json_of(&dfs_ok(&["unlock", f, "--json"]));
    assert_eq!(unlocked["locked"], false, "{unlocked}");

    // tx apply and stat
    let local = fx.local();
    fs::write(local.join("x"), vec![1u8; 5 * 1024]).unwrap();
    let batch = local.join("batch");
    fs::write(
        &batch,
        format!("put {} /x\nmkdir /d\n", local.join("x").display()),
    )
    .unwrap();
    let addr = fx.server.addr();
    let batch_path = batch.to_str().unwrap();
    let applied = json_of(&dfs_ok(&[
        "tx", "apply", "--json", "--server", &addr, batch_path,
    ]));
    assert_eq!(applied["committed"], true, "{applied}");
    let ops = applied["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 2, "{applied}");
    assert_eq!(ops[0]["line"], 1);
    assert_eq!(ops[0]["size"], 5 * 1024);
    assert!(
        ops[1]["op"].as_str().unwrap().starts_with("mkdir /d "),
        "{applied}"
    );
    let stat = json_of(&dfs_ok(&["tx", "stat", "--json", "--server", &addr, "/x"]));
    let x = &stat[0];
    assert_eq!(x["path"], "/x");
    assert_eq!(x["inode"], ops[0]["inode"], "{stat} vs {applied}");
    assert_eq!(x["version"], ops[0]["version"], "{stat} vs {applied}");
    let text = dfs_ok(&["tx", "stat", "--server", &addr, "/x"]);
    assert_eq!(
        text.trim(),
        format!(
            "/x: {}, version {}, 5 KiB, inode {}, mode {}",
            x["kind"].as_str().unwrap(),
            x["version"],
            x["inode"],
            x["mode"].as_str().unwrap()
        ),
        "{stat}"
    );
    // The same batch shape as text: the committed line names its transaction.
    fs::write(&batch, "mkdir /d2\n").unwrap();
    let text = dfs_ok(&["tx", "apply", "--server", &addr, batch_path]);
    assert!(
        text.starts_with("committed transaction ") && text.contains("mkdir /d2"),
        "{text}"
    );
    // A path that does not exist: exit 1, and the JSON says so.
    let out = dfs_cli(&["tx", "stat", "--json", "--server", &addr, "/nope"], LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let stat = json_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(stat[0]["exists"], false, "{stat}");
    assert!(Path::new(&mnt).join("d").is_dir());
}

#[test]
fn whoami_shows_a_local_expiry_date_and_the_same_as_json() {
    let r = Realm::new(&[]);
    r.login(ALICE, "alice", "alice-pw").unwrap();
    let out = r.dfs(ALICE, &["whoami"], "");
    assert!(out.status.success(), "{}", shown(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let out = r.dfs(ALICE, &["whoami", "--json"], "");
    assert!(out.status.success(), "{}", shown(&out));
    let json = json_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        field(&text, "principal:"),
        json["principal"].as_str().unwrap()
    );
    assert_eq!(field(&text, "realm:"), "TEST.DFS");
    assert_eq!(json["realm"], "TEST.DFS");
    assert_eq!(json["uid"], ALICE);
    assert_eq!(json["expired"], false);
    let expires = field(&text, "expires:");
    assert!(
        !expires.contains("unix time"),
        "expiry in unix seconds: {expires:?}"
    );
    assert!(
        expires.starts_with(json["expires_local"].as_str().unwrap()) && expires.contains("(in "),
        "expiry {expires:?} vs {json}"
    );
    let login = r.login(ALICE, "alice", "alice-pw").unwrap();
    assert!(
        login.contains(json["expires_local"].as_str().unwrap()) || login.contains("(in "),
        "dfs login names when the ticket expires in local time: {login}"
    );
}
