//! Transactions (`dfs tx apply` and the `/v1/tx` resources) against real servers and
//! mounts: a 50-file batch with a directory rename is never seen half done by a reader on
//! another mount; a batch whose last precondition (or operation) fails changes nothing; a
//! server `kill -9` at many moments during a large commit leaves it wholly applied or
//! wholly absent; a client killed between staging and commit leaves nothing visible and
//! its staged blobs are collected; concurrent overlapping batches serialize, and optimistic
//! ones conflict cleanly; a batch waits for (and then names) a writer holding a file open.

use dfs_common::tx::{CommitReply, TxOp, TxStatus};
use dfs_common::BlobId;
use dfs_tests::tx::{
    blob_path, dfs_child, dfs_cmd, output_text, shell_quote, snapshot, tx_begin, tx_commit,
    tx_commit_send, tx_stage, tx_status,
};
use dfs_tests::{
    fetch_path, free_port, list, lookup_path, mkdir, pseudo_random, read, sh, sha256, timed, write,
    Fixture, Mount, Server,
};
use std::fs;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CLIENT: u64 = 0x5151_5151_0000_0001;

fn contents(generation: u32, i: usize) -> Vec<u8> {
    // The same length for every generation, so no size caching can cut a read short.
    format!("generation {generation} of file {i:02}\n").into_bytes()
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Default)]
struct Seen {
    new: bool,
    old_count: usize,
    new_count: usize,
}

#[test]
fn fifty_files_and_a_dir_rename_commit_and_a_reader_never_sees_half() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    mkdir(m.join("data")).unwrap();
    mkdir(m.join("old")).unwrap();
    write(m.join("old/keep.txt"), b"kept\n").unwrap();
    for i in 0..50 {
        write(m.join(format!("data/f{i:02}")), contents(0, i)).unwrap();
    }
    let local = fx.local();
    let mut batch = String::from("# 50 files and a directory rename, all at once\n");
    for i in 0..50 {
        let f = local.join(format!("g1-{i:02}"));
        fs::write(&f, contents(1, i)).unwrap();
        batch.push_str(&format!("put {} /data/f{i:02}\n", f.display()));
    }
    batch.push_str("mv /old /new\n");
    fs::write(local.join("batch"), &batch).unwrap();

    // The reader: another mount of the same server, polling everything.
    let reader = Mount::start(
        &fx.server.addr(),
        &fx.tmp.path().join("mnt-reader"),
        &fx.tmp.path().join("cache-reader"),
        &[],
    );
    let rm = reader.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(Mutex::new(0usize));
    let observer = {
        let (stop, polls, rm) = (stop.clone(), polls.clone(), rm.clone());
        thread::spawn(move || -> Result<(usize, usize), String> {
            // Generations in the order the reader saw them: once it saw the new state
            // anywhere, it must never see the old one again.
            let mut seen = Seen::default();
            let deadline = Instant::now() + Duration::from_secs(120);
            let see = |seen: &mut Seen, g: u32, what: &str| -> Result<(), String> {
                if g == 1 {
                    seen.new = true;
                    seen.new_count += 1;
                } else if seen.new {
                    return Err(format!("{what}: old state seen after the new one"));
                } else {
                    seen.old_count += 1;
                }
                Ok(())
            };
            loop {
                let done = stop.load(Ordering::SeqCst);
                let names: Vec<String> = fs::read_dir(&rm)
                    .map_err(|e| format!("readdir: {e}"))?
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                let (old, new) = (
                    names.iter().any(|n| n == "old"),
                    names.iter().any(|n| n == "new"),
                );
                match (old, new) {
                    (true, false) => see(&mut seen, 0, "directory listing")?,
                    (false, true) => see(&mut seen, 1, "directory listing")?,
                    _ => return Err(format!("root lists {names:?}: half a rename")),
                }
                for i in 0..50 {
                    let got = fs::read(rm.join(format!("data/f{i:02}")))
                        .map_err(|e| format!("read f{i:02}: {e}"))?;
                    if got == contents(0, i) {
                        see(&mut seen, 0, &format!("f{i:02}"))?;
                    } else if got == contents(1, i) {
                        see(&mut seen, 1, &format!("f{i:02}"))?;
                    } else {
                        return Err(format!("f{i:02} holds {:?}", String::from_utf8_lossy(&got)));
                    }
                }
                *polls.lock().unwrap() += 1;
                if done && seen.new {
                    return Ok((seen.old_count, seen.new_count));
                }
                if Instant::now() > deadline {
                    return Err("the reader never saw the new state".into());
                }
            }
        })
    };
    // Let the reader warm its cache (and hold promises) before the commit.
    let warm = Instant::now();
    while *polls.lock().unwrap() < 3 {
        assert!(warm.elapsed() < Duration::from_secs(60), "reader too slow");
        thread::sleep(Duration::from_millis(20));
    }
    // The writer: `dfs tx apply` run inside the first mount (it finds the server there).
    let out = dfs_cmd(&m, &["tx", "apply", &local.join("batch").to_string_lossy()]);
    assert!(out.status.success(), "dfs tx apply: {}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("committed transaction"), "{stdout}");
    assert!(stdout.contains("mv /old /new"), "{stdout}");
    stop.store(true, Ordering::SeqCst);
    let (old, new) = timed("reader", Duration::from_secs(150), move || observer.join())
        .expect("reader thread")
        .unwrap_or_else(|e| panic!("the reader saw a partial state: {e}"));
    eprintln!(
        "reader: {} polls, {old} observations of the old state, {new} of the new",
        polls.lock().unwrap()
    );
    assert!(old > 0 && new > 0);
    // Everything is there, on the server and on both mounts.
    let addr = fx.server.addr();
    for i in 0..50 {
        let p = format!("data/f{i:02}");
        assert_eq!(
            fetch_path(&addr, &p),
            Some(contents(1, i)),
            "{p} on the server"
        );
        assert_eq!(
            read(rm.join(&p)).unwrap(),
            contents(1, i),
            "{p} on the reader"
        );
        assert_eq!(
            read(m.join(&p)).unwrap(),
            contents(1, i),
            "{p} on the writer's mount"
        );
    }
    assert_eq!(list(m.join("new")).unwrap(), ["keep.txt"]);
    assert!(fs::metadata(m.join("old")).is_err());
}

#[test]
fn a_batch_whose_last_precondition_or_operation_fails_changes_nothing() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let addr = fx.server.addr();
    mkdir(m.join("a")).unwrap();
    mkdir(m.join("b")).unwrap();
    write(m.join("a/x.txt"), b"x version 1\n").unwrap();
    write(m.join("a/x.txt"), b"x version 2\n").unwrap();
    write(m.join("b/y.txt"), b"y\n").unwrap();
    let x_version = lookup_path(&addr, "a/x.txt").unwrap().version;
    let local = fx.local();
    for i in 0..5 {
        fs::write(local.join(format!("n{i}")), format!("new {i}\n")).unwrap();
    }
    let before = snapshot(&addr);
    let mut common = String::new();
    for i in 0..5 {
        common.push_str(&format!(
            "put {} /a/n{i}.txt\n",
            local.join(format!("n{i}")).display()
        ));
    }
    common.push_str(&format!("put {} /a/x.txt\n", local.join("n0").display()));
    common.push_str("mkdir /c\nmv /b /b2\nchmod 600 /a/x.txt\nrm /b2/y.txt\n");
    common.push_str(&format!("expect-version /a/x.txt {x_version}\n"));

    let cases = [
        (
            "expect-version /a/x.txt 99\n".to_string(),
            format!("line 12: expect-version /a/x.txt: expected version 99, actual version {x_version}"),
        ),
        (
            "expect-absent /a/x.txt\n".to_string(),
            format!("line 12: expect-absent /a/x.txt: expected no such file, actual version {x_version}"),
        ),
        (
            "mv /missing /z\n".to_string(),
            "line 12: mv /missing /z: no such file or directory".to_string(),
        ),
    ];
    for (last, message) in cases {
        let file = local.join("batch");
        fs::write(&file, format!("{common}{last}")).unwrap();
        let out = dfs_cmd(
            &local,
            &["tx", "apply", "--server", &addr, &file.to_string_lossy()],
        );
        assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
        let err = stderr_of(&out);
        assert!(err.contains("nothing changed"), "{err}");
        assert!(err.contains(&message), "want {message:?} in {err}");
        assert!(out.stdout.is_empty(), "{}", output_text(&out));
        assert_eq!(snapshot(&addr), before, "after a batch ending in {last:?}");
        assert_eq!(read(m.join("a/x.txt")).unwrap(), b"x version 2\n");
        assert!(fs::metadata(m.join("c")).is_err());
        assert_eq!(list(m.join("b")).unwrap(), ["y.txt"]);
    }
    // Without the failing line, the same batch commits.
    fs::write(local.join("batch"), &common).unwrap();
    let out = dfs_cmd(
        &local,
        &[
            "tx",
            "apply",
            "--server",
            &addr,
            &local.join("batch").to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(fetch_path(&addr, "a/x.txt").unwrap(), b"new 0\n");
    assert_eq!(lookup_path(&addr, "a/x.txt").unwrap().mode, 0o600);
    assert!(lookup_path(&addr, "b").is_none());
    assert!(lookup_path(&addr, "b2/y.txt").is_none());
    assert!(lookup_path(&addr, "c").is_some());
    let listing = list(m.join("a")).unwrap();
    assert_eq!(
        listing,
        ["n0.txt", "n1.txt", "n2.txt", "n3.txt", "n4.txt", "x.txt"]
    );
}

const FILES: usize = 2000;

/// The ops of the large batch of run `r`: a tree of FILES files, renamed at the end.
fn large_batch(r: usize, blobs: &[BlobId]) -> Vec<TxOp> {
    let p = |s: String| s.into_bytes();
    let mut ops = vec![
        TxOp::Mkdir {
            path: p(format!("/r{r}")),
            mode: 0o755,
        },
        TxOp::Mkdir {
            path: p(format!("/r{r}/d")),
            mode: 0o755,
        },
    ];
    for j in 0..FILES {
        ops.push(TxOp::Put {
            path: p(format!("/r{r}/d/f{j:04}")),
            blob: Some(blobs[j % blobs.len()]),
            mode: None,
        });
    }
    ops.push(TxOp::Rename {
        from: p(format!("/r{r}/d")),
        to: p(format!("/r{r}/e")),
    });
    ops.push(TxOp::Put {
        path: p(format!("/r{r}/done")),
        blob: Some(blobs[0]),
        mode: None,
    });
    ops.push(TxOp::ExpectAbsent {
        path: p(format!("/r{r}")),
    });
    ops
}

/// Whether run `r` is wholly applied (`Some(true)`), wholly absent (`Some(false)`), or
/// neither (`None`, with what is wrong).
fn applied(addr: &str, r: usize, blobs: &[BlobId]) -> Result<bool, String> {
    let snap = snapshot(addr);
    let prefix = format!("/r{r}");
    let mine: Vec<(&String, &dfs_tests::tx::Node)> = snap
        .iter()
        .filter(|(k, _)| **k == prefix || k.starts_with(&format!("{prefix}/")))
        .collect();
    if mine.is_empty() {
        return Ok(false);
    }
    if mine.len() != FILES + 3 {
        return Err(format!(
            "{} paths under {prefix}, want {}",
            mine.len(),
            FILES + 3
        ));
    }
    for j in 0..FILES {
        let path = format!("{prefix}/e/f{j:04}");
        match snap.get(&path) {
            Some(n) if n.blob == Some(blobs[j % blobs.len()]) => {}
            other => return Err(format!("{path}: {other:?}")),
        }
    }
    if snap.contains_key(&format!("{prefix}/d")) || !snap.contains_key(&format!("{prefix}/done")) {
        return Err(format!("{prefix}: rename or last put missing"));
    }
    Ok(true)
}

#[test]
fn server_kill9_during_a_large_commit_leaves_it_all_or_nothing() {
    let tmp = tempfile::TempDir::new().unwrap();
    let mut server = Server::start(&tmp.path().join("data"), free_port(), &[]);
    let addr = server.addr();
    let datas: Vec<Vec<u8>> = (0..4).map(|i| pseudo_random(64 << 10, 100 + i)).collect();
    let stage_all = |addr: &str, tx| -> Vec<BlobId> {
        datas
            .iter()
            .map(|d| tx_stage(addr, CLIENT, tx, d).unwrap())
            .collect()
    };

    // Calibration: how long a commit of this batch takes here, start to answer.
    let tx = tx_begin(&addr, CLIENT);
    let blobs = stage_all(&addr, tx);
    let t = Instant::now();
    let reply = tx_commit(&addr, CLIENT, tx, large_batch(999, &blobs));
    let took = t.elapsed();
    assert!(matches!(reply, CommitReply::Committed(_)), "{reply:?}");
    assert_eq!(applied(&addr, 999, &blobs), Ok(true));
    eprintln!("a commit of {} operations takes {took:?}", FILES + 5);

    let runs = 20;
    let (mut yes, mut no) = (0, 0);
    let run = |r: usize, delay: Duration, server: &mut Server| {
        let addr = server.addr();
        let tx = tx_begin(&addr, CLIENT);
        let blobs = stage_all(&addr, tx);
        let conn = tx_commit_send(&addr, CLIENT, tx, large_batch(r, &blobs));
        thread::sleep(delay);
        server.kill9();
        drop(conn);
        server.restart();
        let outcome = applied(&addr, r, &blobs)
            .unwrap_or_else(|e| panic!("run {r}, kill after {delay:?}: half applied: {e}"));
        let status = tx_status(&addr, CLIENT, tx).unwrap_or_else(|e| panic!("{}", e.describe()));
        match (&status, outcome) {
            (TxStatus::Committed(_), true) | (TxStatus::Open { .. }, false) => {}
            _ => panic!("run {r}: applied {outcome} but the transaction says {status:?}"),
        }
        // Every blob it staged is still there (held by the open transaction, or by files).
        for b in &blobs {
            assert!(
                blob_path(server.data_dir(), b).is_file(),
                "run {r}: blob {b} lost"
            );
        }
        eprintln!("run {r}: killed {delay:?} after sending: applied {outcome}");
        outcome
    };
    for r in 0..runs {
        // Spread over [0, 1.5 x the commit's duration], with an odd jitter.
        let delay = took.mul_f64(1.5 * r as f64 / (runs - 1) as f64)
            + Duration::from_micros((r as u64 * 7919) % 900);
        if run(r, delay, &mut server) {
            yes += 1;
        } else {
            no += 1;
        }
    }
    // Make sure both outcomes were exercised.
    if no == 0 {
        run(runs, Duration::ZERO, &mut server);
        no += 1;
    }
    if yes == 0 && run(runs + 1, took * 4 + Duration::from_millis(500), &mut server) {
        yes += 1;
    }
    eprintln!("{yes} runs wholly applied, {no} wholly absent, none in between");
    assert!(yes > 0 && no > 0, "applied {yes}, absent {no}");
}

#[test]
fn a_client_killed_between_staging_and_commit_leaves_nothing() {
    let fx = Fixture::with_server_args(&["--tx-lease-secs", "2", "--gc-grace-secs", "1"]);
    let m = fx.mnt().to_path_buf();
    let addr = fx.server.addr();
    let local = fx.local();
    let datas: Vec<Vec<u8>> = (0..3).map(|i| pseudo_random(300 << 10, 7 + i)).collect();
    for (i, d) in datas.iter().enumerate() {
        fs::write(local.join(format!("s{i}")), d).unwrap();
    }
    let batch = "mkdir /k\nput s0 /k/a\nput s1 /k/b\nput s2 /top.bin\n";
    fs::write(local.join("batch"), batch).unwrap();
    let before = snapshot(&addr);
    let mut child = dfs_child(
        &local,
        &["tx", "apply", "--confirm", "--server", &addr, "batch"],
    );
    // Wait until it has staged everything and asks to commit.
    let mut stderr = child.stderr.take().unwrap();
    let asked = timed(
        "dfs tx apply --confirm",
        Duration::from_secs(60),
        move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            while !String::from_utf8_lossy(&seen).contains("Commit? [y/N]") {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            String::from_utf8_lossy(&seen).into_owned()
        },
    );
    assert!(asked.contains("3 files"), "{asked}");
    // kill -9 between staging and commit.
    child.kill().unwrap();
    child.wait().unwrap();
    let ids: Vec<BlobId> = datas
        .iter()
        .map(|d| BlobId::from_hex(&sha256(d)).unwrap())
        .collect();
    for id in &ids {
        assert!(
            blob_path(fx.server.data_dir(), id).is_file(),
            "blob {id} was staged"
        );
    }
    // Nothing is visible, on the server or on the mount.
    assert_eq!(snapshot(&addr), before);
    assert_eq!(list(&m).unwrap(), Vec::<String>::new());
    // Once its lease runs out the transaction is aborted and the blobs are collected.
    let t = Instant::now();
    let gone = dfs_tests::poll(Duration::from_secs(40), Duration::from_millis(200), || {
        ids.iter()
            .all(|id| !blob_path(fx.server.data_dir(), id).exists())
            .then_some(())
    });
    assert!(
        gone.is_some(),
        "staged blobs still on disk 40 s after the client died; server log:\n{}",
        fx.server.log_tail(30)
    );
    eprintln!(
        "staged blobs collected {:?} after the client died",
        t.elapsed()
    );
    assert!(fs::read_to_string(fx.server.log_path())
        .unwrap()
        .contains("stopped renewing"));
    assert_eq!(snapshot(&addr), before);
}

#[test]
fn concurrent_overlapping_batches_serialize_or_conflict() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let addr = fx.server.addr();
    let local = fx.local();
    write(m.join("x"), b"start\n").unwrap();
    write(m.join("y"), b"start\n").unwrap();
    mkdir(m.join("log")).unwrap();
    fs::write(local.join("A"), b"written by batch A\n").unwrap();
    fs::write(local.join("B"), b"written by batch B, longer\n").unwrap();

    // Both write /x and /y (in opposite orders) and a file of their own: both commit, one
    // after the other, and the result is one of the two serial orders.
    let dfs = shell_quote(&dfs_tests::bin("dfs").to_string_lossy());
    for round in 0..6 {
        fs::write(
            local.join("a.batch"),
            format!("put A /x\nput A /y\nput A /log/A{round}\n"),
        )
        .unwrap();
        fs::write(
            local.join("b.batch"),
            format!("put B /y\nput B /x\nput B /log/B{round}\n"),
        )
        .unwrap();
        let script = format!(
            "{dfs} tx apply --server {addr} a.batch > a.out 2>&1 & a=$!\n\
             {dfs} tx apply --server {addr} b.batch > b.out 2>&1 & b=$!\n\
             wait $a; ra=$?; wait $b; rb=$?\necho $ra $rb"
        );
        let out = sh(&local, &script);
        let codes = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            codes,
            "0 0",
            "round {round}: {}\n{}",
            fs::read_to_string(local.join("a.out")).unwrap(),
            fs::read_to_string(local.join("b.out")).unwrap()
        );
        let (x, y) = (
            fetch_path(&addr, "x").unwrap(),
            fetch_path(&addr, "y").unwrap(),
        );
        assert_eq!(x, y, "round {round}: /x and /y from different batches");
        assert!(x == fs::read(local.join("A")).unwrap() || x == fs::read(local.join("B")).unwrap());
    }
    assert_eq!(list(m.join("log")).unwrap().len(), 12);

    // Optimistic batches: each expects the version it read. Exactly one of each round
    // commits; the others fail naming the file and both versions, and change nothing.
    write(m.join("counter"), b"0\n").unwrap();
    for round in 0..4 {
        let v = lookup_path(&addr, "counter").unwrap().version;
        let n: u32 = String::from_utf8(fetch_path(&addr, "counter").unwrap())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut script = String::new();
        for w in 0..3 {
            fs::write(local.join(format!("c{w}")), format!("{}\n", n + 1)).unwrap();
            fs::write(
                local.join(format!("c{w}.batch")),
                format!("expect-version /counter {v}\nput c{w} /counter\nput c{w} /log/counter-{round}-{w}\n"),
            )
            .unwrap();
            script.push_str(&format!(
                "{dfs} tx apply --server {addr} c{w}.batch > c{w}.out 2>&1 & p{w}=$!\n"
            ));
        }
        script.push_str("for w in 0 1 2; do eval wait \\$p$w; echo $?; done");
        let out = sh(&local, &script);
        let codes: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let outs: Vec<String> = (0..3)
            .map(|w| fs::read_to_string(local.join(format!("c{w}.out"))).unwrap())
            .collect();
        assert_eq!(
            codes.iter().filter(|c| *c == "0").count(),
            1,
            "round {round}: exit codes {codes:?}\n{outs:#?}"
        );
        for (c, o) in codes.iter().zip(&outs) {
            if c != "0" {
                assert_eq!(c, "3", "{o}");
                assert!(
                    o.contains(&format!(
                        "line 1: expect-version /counter: expected version {v}, actual version {}",
                        v + 1
                    )),
                    "{o}"
                );
            }
        }
        assert_eq!(
            fetch_path(&addr, "counter").unwrap(),
            format!("{}\n", n + 1).into_bytes()
        );
    }
    // 12 + one counter file per round: the losers wrote nothing.
    assert_eq!(list(m.join("log")).unwrap().len(), 16);
}

#[test]
fn a_batch_waits_for_a_writer_and_names_it_when_the_wait_runs_out() {
    let fx = Fixture::new();
    let m = fx.mnt().to_path_buf();
    let addr = fx.server.addr();
    let local = fx.local();
    write(m.join("doc"), b"old\n").unwrap();
    fs::write(local.join("new"), b"new\n").unwrap();
    fs::write(local.join("batch"), "put new /doc\nmkdir /side\n").unwrap();
    // A process on the mount holds /doc open for writing (the writers' lock) for 6 s.
    let mut hold = std::process::Command::new("bash")
        .arg("-c")
        .arg("exec 3>>doc; sleep 6")
        .current_dir(&m)
        .spawn()
        .unwrap();
    // Wait until the holder really has the writers' lock (not a guess at how long it takes).
    let doc = m.join("doc");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let locks = dfs_cmd(&local, &["locks", doc.to_str().unwrap()]);
        if String::from_utf8_lossy(&locks.stdout).contains("Open") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the holder never got the writers' lock: {}",
            output_text(&locks)
        );
        thread::sleep(Duration::from_millis(20));
    }
    let out = dfs_cmd(
        &local,
        &["tx", "apply", "--wait", "1", "--server", &addr, "batch"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("line 1: put /doc: the file is being written") && err.contains("Open lock"),
        "{err}"
    );
    assert_eq!(fetch_path(&addr, "doc").unwrap(), b"old\n");
    assert!(lookup_path(&addr, "side").is_none());
    // With a longer wait it goes through once the writer closes.
    let out = dfs_cmd(
        &local,
        &["tx", "apply", "--wait", "30", "--server", &addr, "batch"],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    hold.wait().unwrap();
    assert_eq!(fetch_path(&addr, "doc").unwrap(), b"new\n");
    assert_eq!(read(m.join("doc")).unwrap(), b"new\n");
    assert!(lookup_path(&addr, "side").is_some());
}
