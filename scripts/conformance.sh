#!/usr/bin/env bash
# POSIX conformance: runs pjdfstest (the Rust rewrite, pjdfstest 0.2.2 from crates.io,
# https://github.com/saidsay-so/pjdfstest) once in a fresh directory on the local disk and
# once in a fresh directory on a dfs mount, with the same configuration, and prints both
# results side by side, with the tests that fail on dfs but pass on the local disk.
#
#   scripts/conformance.sh [--no-build] [--strict] [--test-timeout SECS] [--naptime SECS]
#                          [--users U1:G1,U2:G2] [--only PATTERN]...
#
#   --no-build           use the dfs binaries already in the target dir (or $DFS_BIN_DIR)
#   --strict             exit 1 if dfs fails a test that passes locally and that is not in
#                        scripts/conformance-known.txt (the allow-list: one test name a
#                        line, `# reason` comments); without it a failing test is reported,
#                        and the exit status is 0 unless the script itself broke
#   --test-timeout SECS  a test that prints nothing for this long is declared hung (default
#                        60): pjdfstest is killed, the test is recorded as TIMEOUT, and the
#                        run resumes after it (at most 3 times per target)
#   --naptime SECS       pjdfstest's "short sleep" between a change and the timestamp
#                        check (default 0.01, as in pjdfstest's own Linux/ext4 CI config)
#   --users U1:G1,U2:G2  the two unprivileged user:group pairs pjdfstest switches to
#                        (default nobody:nogroup,daemon:daemon: existing Debian accounts;
#                        pjdfstest's default second user "tests" does not exist here)
#   --only PATTERN       run only the tests whose name contains PATTERN (repeatable)
#
# Needs root (pjdfstest's permission tests switch users; mknod, chown) and /dev/fuse.
# Installs what is missing: Debian packages fuse3, python3, gcc (via apt-get), and
# pjdfstest itself with `cargo install pjdfstest --version =0.2.2 --locked` into
# target/conformance/tools (only if it is not already there). Builds the release binaries
# (cargo build --release --workspace --bins) unless --no-build.
#
# Everything runs in one temp dir under $CONFORMANCE_TMPDIR (default /var/tmp, the same
# disk as the local target) that a trap removes on exit, failure or Ctrl-C: a dfs-server on
# a free 127.0.0.1 port (data dir in the temp dir), a dfs-mount of it (cache dir in the temp
# dir), the local target directory, and a 1 MiB tmpfs used as pjdfstest's "secondary file
# system" (its EXDEV tests link/rename into it).
#
# Results go to target/conformance/ (or $CONFORMANCE_RESULTS), stamped with the date:
# pjdfstest-STAMP-{local,dfs}.txt (full output), -summary.md (the table printed at the end),
# -pjdfstest.toml (the configuration), -dfs-mount.log and -dfs-server.log (daemon logs).
#
# Environment: CONFORMANCE_TMPDIR, CONFORMANCE_RESULTS, CONFORMANCE_KNOWN (the allow-list),
# DFS_BIN_DIR, RUST_LOG (daemons, default info), CONFORMANCE_KEEP_TMP=1 (keep the temp dir;
# the daemons are stopped anyway).
set -Eeuo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PJD_VERSION=0.2.2
BUILD=1
STRICT=0
TEST_TIMEOUT=60
NAPTIME=0.01
USERS=nobody:nogroup,daemon:daemon
ONLY=()
MAX_HANGS=3

usage() { sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    --no-build) BUILD=0; shift ;;
    --strict) STRICT=1; shift ;;
    --test-timeout) TEST_TIMEOUT=${2:?--test-timeout needs seconds}; shift 2 ;;
    --test-timeout=*) TEST_TIMEOUT=${1#*=}; shift ;;
    --naptime) NAPTIME=${2:?--naptime needs seconds}; shift 2 ;;
    --naptime=*) NAPTIME=${1#*=}; shift ;;
    --users) USERS=${2:?--users needs U1:G1,U2:G2}; shift 2 ;;
    --users=*) USERS=${1#*=}; shift ;;
    --only) ONLY+=("${2:?--only needs a pattern}"); shift 2 ;;
    --only=*) ONLY+=("${1#*=}"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "conformance: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ $TEST_TIMEOUT =~ ^[1-9][0-9]*$ ]] || { echo "conformance: --test-timeout wants a positive number of seconds" >&2; exit 2; }
[[ $NAPTIME =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "conformance: --naptime wants a number of seconds" >&2; exit 2; }

RESULTS_DIR=${CONFORMANCE_RESULTS:-$ROOT/target/conformance}
TOOLS=$ROOT/target/conformance/tools
PJD=$TOOLS/bin/pjdfstest
KNOWN=${CONFORMANCE_KNOWN:-$ROOT/scripts/conformance-known.txt}
STAMP=$(date +%Y%m%d-%H%M%S)
export RUST_LOG=${RUST_LOG:-info}

say() { echo "conformance: $*"; }
warn() { echo "conformance: $*" >&2; }
die() {
    echo "conformance: FAILED: $*" >&2
    exit 1
}
trap 'rc=$?; echo "conformance: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mount; pjdfstest's permission tests switch users)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"

# ---------------------------------------------------------------------------------------
# State and cleanup

W=""               # the temp dir
DFS_SERVER_PID=""
DFS_MOUNT_PID=""
PJD_PID=""         # the pjdfstest run in progress, if any
MOUNT_KILLED=0     # set when a stuck FUSE request made us kill dfs-mount
TMPFS_MOUNTED=0

# shellcheck source=lib/procs.sh
source "$ROOT/scripts/lib/procs.sh"

force_unmount() {
    local mnt=$1
    is_mounted "$mnt" || return 0
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - ERR
    set +e
    if [ -n "$PJD_PID" ]; then
        kill -KILL -- "-$PJD_PID" 2>/dev/null
        stop_pid "$PJD_PID" KILL 5
    fi
    if [ -n "$W" ]; then
        [ -n "$DFS_MOUNT_PID$DFS_SERVER_PID" ] && say "cleaning up"
        force_unmount "$W/mnt"
        if [ -n "$DFS_MOUNT_PID" ]; then stop_pid "$DFS_MOUNT_PID" TERM 30; fi
        force_unmount "$W/mnt"
        if [ -n "$DFS_SERVER_PID" ]; then stop_pid "$DFS_SERVER_PID" TERM 20; fi
        if [ "$TMPFS_MOUNTED" = 1 ]; then umount "$W/secondary" 2>/dev/null || umount -l "$W/secondary" 2>/dev/null; fi
        if [ -d "$W/logs" ]; then
            mkdir -p "$RESULTS_DIR"
            cp "$W/logs/dfs-mount.log" "$RESULTS_DIR/pjdfstest-$STAMP-dfs-mount.log" 2>/dev/null
            cp "$W/logs/dfs-server.log" "$RESULTS_DIR/pjdfstest-$STAMP-dfs-server.log" 2>/dev/null
            if [ -s "$W/logs/stuck.txt" ]; then cp "$W/logs/stuck.txt" "$RESULTS_DIR/pjdfstest-$STAMP-stuck.txt"; fi
        fi
        if is_mounted "$W/mnt" || is_mounted "$W/secondary"; then
            warn "a mount under $W is still there; not removing $W"
        elif [ "${CONFORMANCE_KEEP_TMP:-0}" = 1 ]; then
            say "kept $W (CONFORMANCE_KEEP_TMP=1)"
        else
            rm -rf "$W"
        fi
    fi
    return $rc
}
trap cleanup EXIT
trap 'warn "interrupted"; exit 130' INT
trap 'warn "terminated"; exit 143' TERM

# ---------------------------------------------------------------------------------------
# Users and tools

# The two users pjdfstest switches to: each must exist and have that group as its primary
# group (pjdfstest checks this when it reads the configuration).
auth_entries=""
IFS=, read -r -a user_pairs <<<"$USERS"
[ "${#user_pairs[@]}" -eq 2 ] || die "--users wants exactly two user:group pairs (pjdfstest $PJD_VERSION takes 2)"
for pair in "${user_pairs[@]}"; do
    u=${pair%%:*} g=${pair#*:}
    [[ $pair == *:* && -n $u && -n $g ]] || die "--users: '$pair' is not user:group"
    ugid=$(getent passwd "$u" | cut -d: -f4) || die "--users: no user '$u'"
    ggid=$(getent group "$g" | cut -d: -f3) || die "--users: no group '$g'"
    [ "$ugid" = "$ggid" ] || die "--users: '$g' is not the primary group of '$u'"
    auth_entries+="${auth_entries:+, }[\"$u\", \"$g\"]"
done

need_pkgs=()
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc)
command -v cargo >/dev/null 2>&1 || die "cargo is missing (install a Rust toolchain, e.g. with rustup)"
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    say "installing from Debian packages (missing: ${need_pkgs[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [ -x "$PJD" ] && [ "$("$PJD" --version 2>/dev/null)" = "pjdfstest $PJD_VERSION" ]; then
    say "pjdfstest $PJD_VERSION already built in $TOOLS"
else
    say "installing pjdfstest $PJD_VERSION into $TOOLS (cargo install, ~2 min)"
    cargo install pjdfstest --version "=$PJD_VERSION" --locked --root "$TOOLS" --force
    [ "$("$PJD" --version 2>/dev/null)" = "pjdfstest $PJD_VERSION" ] || die "$PJD is not pjdfstest $PJD_VERSION"
fi
PJD_VERSION_TEXT=$("$PJD" --version)

if [ -n "${DFS_BIN_DIR:-}" ]; then
    BIN=$DFS_BIN_DIR
else
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
if [ "$BUILD" = 1 ]; then
    say "building release binaries (cargo build --release --workspace --bins)"
    (cd "$ROOT" && cargo build --release --workspace --bins)
fi
if [ ! -x "$BIN/dfs-server" ] || [ ! -x "$BIN/dfs-mount" ]; then die "no dfs-server/dfs-mount in $BIN"; fi

# ---------------------------------------------------------------------------------------
# The temp dir, the secondary file system and the daemons

mkdir -p "${CONFORMANCE_TMPDIR:-/var/tmp}" "$RESULTS_DIR"
W=$(mktemp -d "${CONFORMANCE_TMPDIR:-/var/tmp}/dfs-cf.XXXXXX")
chmod 755 "$W" # the unprivileged users of the permission tests must reach both targets
mkdir -p "$W/logs" "$W/local" "$W/dfs-data" "$W/dfs-cache" "$W/mnt" "$W/secondary"
LOCAL_FS=$(df -PT "$W/local" | awk 'NR == 2 { print $2 }')
say "temp dir $W ($(df -P "$W" | awk 'NR == 2 { print $1 }'), $LOCAL_FS)"
# A copy of the binaries: a rebuild in the shared target dir during the run (other work on
# this tree) must not mix a new dfs-mount with an old dfs-server.
mkdir -p "$W/bin"
cp "$BIN/dfs-server" "$BIN/dfs-mount" "$W/bin/"
BIN_SRC=$BIN
BIN=$W/bin
# pjdfstest binds unix sockets at BASE/.tmpXXXXXX/.tmpXXXXXX/<32 chars>/file (60 more
# characters); sun_path holds 107, so a base longer than 47 fails its socket tests with
# ENAMETOOLONG on both targets.
if [ $((${#W} + 9)) -gt 47 ]; then
    warn "$W is long: socket tests will fail with ENAMETOOLONG (set CONFORMANCE_TMPDIR shorter)"
fi

SECONDARY_LINE="# no secondary file system: the EXDEV tests are skipped"
if mount -t tmpfs -o size=1m,mode=0755 conformance-secondary "$W/secondary" 2>"$W/logs/tmpfs.err"; then
    TMPFS_MOUNTED=1
    SECONDARY_LINE="secondary_fs = \"$W/secondary\""
else
    warn "could not mount a tmpfs for the EXDEV tests ($(cat "$W/logs/tmpfs.err")); they will be skipped"
fi

CONFIG=$W/pjdfstest.toml
cat >"$CONFIG" <<EOF
# pjdfstest $PJD_VERSION configuration of scripts/conformance.sh; the same for both targets.
[features]
# Opt-in features that Linux and ext4 have (as in pjdfstest's own rust/ci/linux-ext4.toml,
# plus rename_ctime: ext4 updates ctime on rename). The others (chflags, nfsv4_acls,
# stat_st_birthtime, chflags_sf_snapshot) are FreeBSD only.
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}
# EXDEV tests: link/rename into a file system other than the one under test.
$SECONDARY_LINE

[settings]
# Sleep between a change and the timestamp check: above the timestamp granularity of
# both targets (ext4 stamps from the kernel's coarse clock, a few ms; dfs nanoseconds).
naptime = $NAPTIME
# The EROFS tests remount the file system under test read-only: not the root file system.
allow_remount = false
expected_failures = []

[dummy_auth]
# Two unprivileged users, each with its primary group, for the permission tests.
entries = [$auth_entries]
EOF
cp "$CONFIG" "$RESULTS_DIR/pjdfstest-$STAMP-pjdfstest.toml"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

dfs_healthy() {
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
        IFS= read -r line <&3 || exit 1
        [[ $line == "HTTP/1.1 200"* ]]' _ "$1" 2>/dev/null
}

DFS_PORT=$(free_port)
start_dfs_server() {
    local i
    setsid "$BIN/dfs-server" --data-dir "$W/dfs-data" --listen "127.0.0.1:$DFS_PORT" \
        </dev/null >>"$W/logs/dfs-server.log" 2>&1 &
    DFS_SERVER_PID=$!
    disown "$DFS_SERVER_PID"
    for ((i = 0; i < 200; i++)); do
        dfs_healthy "$DFS_PORT" && return 0
        alive "$DFS_SERVER_PID" || break
        sleep 0.1
    done
    tail -n 20 "$W/logs/dfs-server.log" >&2
    die "dfs-server did not answer on 127.0.0.1:$DFS_PORT"
}

start_dfs_mount() {
    local i mnt=$W/mnt
    setsid "$BIN/dfs-mount" "127.0.0.1:$DFS_PORT" "$mnt" --cache-dir "$W/dfs-cache" \
        </dev/null >>"$W/logs/dfs-mount.log" 2>&1 &
    DFS_MOUNT_PID=$!
    disown "$DFS_MOUNT_PID"
    for ((i = 0; i < 300; i++)); do
        if is_mounted "$mnt" && timeout 5 ls -A "$mnt" >/dev/null 2>&1; then return 0; fi
        alive "$DFS_MOUNT_PID" || break
        sleep 0.1
    done
    tail -n 20 "$W/logs/dfs-mount.log" >&2
    die "dfs-mount did not mount $mnt"
}

say "starting dfs-server on 127.0.0.1:$DFS_PORT, dfs-mount at $W/mnt"
start_dfs_server
start_dfs_mount

# ---------------------------------------------------------------------------------------
# Running pjdfstest

# pjdfstest prints one line per test when it ends: "NAME   ok|FAILED|skipped|...".
RESULT_RE='^([A-Za-z0-9_:]+) +(ok|FAILED|skipped|failed as expected|PASSED UNEXPECTEDLY)$'
last_result() { # the name of the last test with a result line in file $1
    sed -E 's/\x1b\[[0-9;]*m//g' "$1" | grep -E "$RESULT_RE" | tail -n 1 | awk '{ print $1 }' || true
}

# watched OUT DIR [pjdfstest args...]: runs pjdfstest in DIR, its output appended to OUT;
# kills it when it prints nothing for TEST_TIMEOUT s. Returns 0 when it ran to its end
# (whatever its tests did), 124 when killed as hung, 1 when it could not run.
watched() {
    local out=$1 dir=$2 size last=-1 since=$SECONDS rc=0 i
    shift 2
    NO_COLOR=1 RUST_BACKTRACE=0 setsid "$PJD" -c "$CONFIG" -p "$dir" "$@" </dev/null >>"$out" 2>&1 &
    PJD_PID=$!
    while alive "$PJD_PID"; do
        sleep 0.2
        size=$(stat -c %s "$out")
        if [ "$size" != "$last" ]; then
            last=$size
            since=$SECONDS
        elif ((SECONDS - since >= TEST_TIMEOUT)); then
            kill -KILL -- "-$PJD_PID" 2>/dev/null || kill -KILL "$PJD_PID" 2>/dev/null || true
            # A FUSE request already read by the daemon is waited for even by a killed
            # process (D state in request_wait_answer): give it 15 s, then kill dfs-mount,
            # which aborts the connection and its requests.
            for ((i = 0; i < 150; i++)); do
                alive "$PJD_PID" || break
                sleep 0.1
            done
            if alive "$PJD_PID" && [[ $dir == "$W/mnt/"* ]]; then
                warn "pjdfstest (pid $PJD_PID) still waits in $(cat "/proc/$PJD_PID/wchan" 2>/dev/null || echo '?') 15 s after SIGKILL: killing dfs-mount to abort the FUSE connection"
                {
                    echo "==== conformance.sh: pjdfstest stuck after SIGKILL; its kernel stack:"
                    cat "/proc/$PJD_PID/stack" 2>/dev/null
                } >>"$W/logs/stuck.txt"
                if [ -n "$DFS_MOUNT_PID" ]; then stop_pid "$DFS_MOUNT_PID" KILL 10; fi
                MOUNT_KILLED=1
            fi
            wait "$PJD_PID" 2>/dev/null || true
            PJD_PID=""
            return 124
        fi
    done
    wait "$PJD_PID" || rc=$?
    PJD_PID=""
    # pjdfstest exits 1 when a test failed; it always ends with its "Summary:" line.
    if grep -q '^Summary: ' "$out"; then return 0; fi
    warn "pjdfstest exited $rc without a summary; see $out"
    return 1
}

# The order in which pjdfstest runs the tests (fixed for one binary and one filter): the
# local run's, so that a hang on dfs names the test after the last one that reported.
ORDER=$W/order.txt

# run_target NAME DIR OUT: runs the suite in a fresh directory under DIR. A hung test is
# recorded as "NAME TIMEOUT" in OUT and the run resumes with the tests after it.
run_target() {
    local name=$1 base=$2 out=$3 rc hangs=0 part=0 last hung
    local -a args=("${ONLY[@]}")
    : >"$out"
    while :; do
        part=$((part + 1))
        mkdir -p "$base/p$part"
        rc=0
        watched "$out" "$base/p$part" "${args[@]}" || rc=$?
        [ "$rc" = 124 ] || return "$rc"
        hangs=$((hangs + 1))
        last=$(last_result "$out")
        hung=""
        if [ -s "$ORDER" ]; then
            if [ -z "$last" ]; then
                hung=$(head -n 1 "$ORDER")
            else
                hung=$(awk -v l="$last" 'f { print; exit } $0 == l { f = 1 }' "$ORDER")
            fi
        fi
        warn "$name: no output for $TEST_TIMEOUT s after '${last:-the start}': killed pjdfstest (hung test: ${hung:-unknown})"
        printf '\n%-77s TIMEOUT\n\tno output for %s s; pjdfstest killed by scripts/conformance.sh\n\n' "${hung:-unknown-test-after-${last:-the-start}}" "$TEST_TIMEOUT" >>"$out"
        if [ -z "$hung" ] || [ "$hangs" -ge "$MAX_HANGS" ]; then
            warn "$name: not resuming (hangs: $hangs)"
            return 0
        fi
        if [ "$MOUNT_KILLED" = 1 ]; then
            warn "$name: dfs-mount was killed to free pjdfstest; not resuming"
            return 0
        fi
        if ! timeout 10 stat "$base" >/dev/null 2>&1; then
            warn "$name: $base no longer answers; not resuming"
            return 0
        fi
        # --exact compares with the full name (pjdfstest trims "pjdfstest::tests::" only
        # for printing).
        mapfile -t args < <(awk -v h="$hung" 'f { print "pjdfstest::tests::" $0 } $0 == h { f = 1 }' "$ORDER")
        [ "${#args[@]}" -gt 0 ] || return 0
        echo "==== conformance.sh: resuming after $hung with the ${#args[@]} tests after it" >>"$out"
        args=(--exact "${args[@]}")
    done
}

OUT_LOCAL=$RESULTS_DIR/pjdfstest-$STAMP-local.txt
OUT_DFS=$RESULTS_DIR/pjdfstest-$STAMP-dfs.txt
T_START=$SECONDS

say "running $PJD_VERSION_TEXT on the local disk ($W/local, $LOCAL_FS)"
t0=$SECONDS
run_target local "$W/local" "$OUT_LOCAL" || die "pjdfstest could not run on the local disk"
LOCAL_SECS=$((SECONDS - t0))
sed -E 's/\x1b\[[0-9;]*m//g' "$OUT_LOCAL" | grep -E "$RESULT_RE" | awk '{ print $1 }' >"$ORDER" || true

say "running $PJD_VERSION_TEXT on dfs ($W/mnt)"
t0=$SECONDS
run_target dfs "$W/mnt" "$OUT_DFS" || die "pjdfstest could not run on the dfs mount"
DFS_SECS=$((SECONDS - t0))

MOUNT_STATE="answering"
if [ "$MOUNT_KILLED" = 1 ]; then
    MOUNT_STATE="KILLED by this script: a request stayed unanswered 15 s after its caller was killed"
elif ! alive "$DFS_MOUNT_PID"; then
    MOUNT_STATE="dfs-mount process DIED"
elif ! is_mounted "$W/mnt"; then
    MOUNT_STATE="NOT MOUNTED any more"
elif ! timeout 10 ls -A "$W/mnt" >/dev/null 2>&1; then
    MOUNT_STATE="HUNG (ls did not answer in 10 s)"
fi
if ! alive "$DFS_SERVER_PID"; then MOUNT_STATE+="; dfs-server DIED"; fi

# ---------------------------------------------------------------------------------------
# Report

SUMMARY=$RESULTS_DIR/pjdfstest-$STAMP-summary.md
STRICT_FILE=$W/strict-unexpected
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
    echo "# pjdfstest on dfs vs the local disk, $(date -Is)"
    echo
    echo "- suite: $PJD_VERSION_TEXT (crates.io), config $RESULTS_DIR/pjdfstest-$STAMP-pjdfstest.toml"
    echo "- dfs: commit $rev, binaries $BIN_SRC; mount after the run: $MOUNT_STATE"
    echo "- local: $W/local ($LOCAL_FS); took $LOCAL_SECS s; dfs took $DFS_SECS s"
    echo "- filter: ${ONLY[*]:-(all tests)}; per-test timeout $TEST_TIMEOUT s; naptime $NAPTIME s"
    echo
} >"$SUMMARY"
python3 - "$OUT_LOCAL" "$OUT_DFS" "$KNOWN" "$STRICT_FILE" >>"$SUMMARY" <<'EOF'
import re, sys

RESULT = re.compile(r"^([A-Za-z0-9_:]+) +(ok|FAILED|skipped|failed as expected|PASSED UNEXPECTEDLY)$|^(\S+) +(TIMEOUT)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

def parse(path):
    """name -> (status, first line of its message) in the order run."""
    res, cur = {}, None
    for raw in open(path, errors="replace"):
        line = ANSI.sub("", raw.rstrip("\n"))
        m = RESULT.match(line)
        if m:
            cur = m.group(1) or m.group(3)
            res[cur] = [m.group(2) or m.group(4), ""]
            continue
        if line.startswith(("Summary:", "====", "Error:")) or not line.strip():
            cur = None
            continue
        if cur and res[cur][0] in ("FAILED", "TIMEOUT", "skipped"):
            # the panic message (assert_eq! spreads it over 3 lines), joined
            res[cur][1] = (res[cur][1] + " / " if res[cur][1] else "") + line.strip()
    for v in res.values():
        if len(v[1]) > 160:
            v[1] = v[1][:157] + "..."
    return res

def counts(res):
    c = {"ok": 0, "FAILED": 0, "skipped": 0, "TIMEOUT": 0, "other": 0}
    for st, _ in res.values():
        c[st if st in c else "other"] += 1
    return c

local, dfs = parse(sys.argv[1]), parse(sys.argv[2])
known = {}
try:
    for line in open(sys.argv[3]):
        name, _, why = line.partition("#")
        name = name.strip()
        if name:
            known[name] = why.strip()
except FileNotFoundError:
    pass

cl, cd = counts(local), counts(dfs)
bad = ("FAILED", "TIMEOUT")
print("| | local | dfs |")
print("|---|---:|---:|")
rows = [
    ("tests in the suite", len(local), len(dfs)),
    ("run", cl["ok"] + cl["FAILED"] + cl["TIMEOUT"], cd["ok"] + cd["FAILED"] + cd["TIMEOUT"]),
    ("passed", cl["ok"], cd["ok"]),
    ("failed", cl["FAILED"], cd["FAILED"]),
    ("hung (TIMEOUT)", cl["TIMEOUT"], cd["TIMEOUT"]),
    ("skipped", cl["skipped"], cd["skipped"]),
]
for label, a, b in rows:
    print("| %s | %d | %d |" % (label, a, b))
print()

dfs_only = [n for n, (st, _) in dfs.items() if st in bad and local.get(n, ["?"])[0] == "ok"]
print("Fail on dfs, pass on local: %d (%d in the known list, %s)"
      % (len(dfs_only), sum(1 for n in dfs_only if n in known), sys.argv[3].rsplit("/", 2)[-2] + "/" + sys.argv[3].rsplit("/", 1)[-1]))
print()
if dfs_only:
    print("```")
    w = max(len(n) for n in dfs_only)
    for n in dfs_only:
        st, msg = dfs[n]
        print("%-*s %s%s%s" % (w, n, "TIMEOUT " if st == "TIMEOUT" else "", msg,
                                "" if n in known else "   [NOT IN KNOWN LIST]"))
    print("```")
    print()
both = [n for n, (st, _) in dfs.items() if st in bad and local.get(n, ["?"])[0] in bad]
if both:
    print("Fail on both: " + ", ".join(both))
    print()
skip_dfs = [n for n, (st, _) in dfs.items() if st == "skipped" and local.get(n, ["?"])[0] != "skipped"]
if skip_dfs:
    print("Skipped on dfs only: " + "; ".join("%s (%s)" % (n, dfs[n][1]) for n in skip_dfs))
    print()
local_only = [n for n, (st, _) in local.items() if st in bad and dfs.get(n, ["?"])[0] == "ok"]
if local_only:
    print("Fail on local, pass on dfs: " + ", ".join(local_only))
    print()
missing = [n for n in local if n not in dfs]
if missing:
    print("Not run on dfs (run stopped): %d, e.g. %s" % (len(missing), ", ".join(missing[:5])))
    print()
stale = [n for n in known if dfs.get(n, ["?"])[0] == "ok"]
if stale:
    print("In the known list but passing on dfs now (remove them): " + ", ".join(stale))
    print()
unexpected = [n for n in dfs_only if n not in known] + missing
with open(sys.argv[4], "w") as f:
    f.write("%d\n" % len(unexpected))
EOF

echo
cat "$SUMMARY"
say "full outputs: $OUT_LOCAL, $OUT_DFS; daemon logs: $RESULTS_DIR/pjdfstest-$STAMP-dfs-{mount,server}.log; summary $SUMMARY"
say "measured in $((SECONDS - T_START)) s"
if [ "$STRICT" = 1 ]; then
    n=$(cat "$STRICT_FILE")
    if [ "$n" -gt 0 ]; then
        warn "--strict: $n test(s) fail (or did not run) on dfs, pass on local, and are not in $KNOWN"
        exit 1
    fi
    say "--strict: every dfs-only failure is in $KNOWN"
fi
