//! Transactions in a realm through the `dfs` command and a mount: a user's batch runs
//! with that user's rights (`dfs login`), and one that touches what the user may not
//! change fails whole.

use dfs_tests::realm_mount::{Realm, ALICE, BOB};

/// Transactions are every user's (#21): bob's `dfs tx apply` runs with his rights, so what
/// it makes is his; a batch that writes alice's 0644 file fails whole, naming the
/// operation, and leaves nothing behind.
#[test]
fn a_user_runs_a_transaction_with_his_own_rights() {
    let r = Realm::new(&[]);
    r.login(ALICE, "alice", "alice-pw").unwrap();
    r.login(BOB, "bob", "bob-pw").unwrap();
    let o = r.sh_as(ALICE, "echo alice > hers && chmod 644 hers");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let work = r.tmp.path().join("bob-work");
    std::fs::create_dir(&work).unwrap();
    let local = work.join("mine.txt");
    std::fs::write(&local, "bob's\n").unwrap();
    let batch = |name: &str, text: String| {
        let p = work.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let addr = r.server.addr();
    let ok = batch(
        "ok.batch",
        format!("mkdir /bobdir\nput {} /bobdir/mine\n", local.display()),
    );
    let out = r.dfs(BOB, &["tx", "apply", "--server", &addr, &ok], "");
    assert!(
        out.status.success(),
        "bob's batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = r.sh_as(BOB, "stat -c '%u %g' bobdir bobdir/mine && cat bobdir/mine");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mine = format!("{BOB} {BOB}\n");
    assert_eq!(text, format!("{mine}{mine}bob's\n"), "made bob's");

    let bad = batch(
        "bad.batch",
        format!("mkdir /bobdir2\nput {} /hers\n", local.display()),
    );
    let out = r.dfs(BOB, &["tx", "apply", "--server", &addr, &bad], "");
    assert_eq!(out.status.code(), Some(3), "a failed batch exits 3");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("put /hers") && err.contains("permission denied"),
        "{err}"
    );
    let o = r.sh_as(ALICE, "test ! -e bobdir2 && cat hers");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "alice\n",
        "nothing changed"
    );
}
