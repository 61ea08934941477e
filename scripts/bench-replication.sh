#!/usr/bin/env bash
# Benchmark of replication: what copies cost a writer, and how fast a cluster heals. All
# columns side by side in one run, on one host (nodes on distinct loopback addresses
# 127.77.B.x, B random per run), and one markdown table.
#
#   scripts/bench-replication.sh [--runs N] [--quick] [--no-build]
#
#   --runs N    runs of everything (default 3); medians ± half the min–max range
#   --quick     smaller sizes for a fast check (256 MiB instead of 1 GiB, 64 MiB instead of
#               256 MiB for the partition)
#   --no-build  use the binaries already in the target dir (or $DFS_BIN_DIR)
#
# Takes about 12.5 min with the defaults on 2 cores (3.5 min with --quick --runs 1).
# Needs root (FUSE mounts, iptables, sync). Installs what is missing from Debian packages
# (fuse3 iptables python3), builds the release binaries, copies dfs-server, dfs-mount and
# dfs into one temp dir (under $BENCH_TMPDIR, default /var/tmp, so on the same disk as the
# local column) and sets everything up there; a trap removes it on exit, failure or
# Ctrl-C, after stopping every daemon it started, unmounting, and deleting exactly the
# iptables rules it inserted. Ports are free ones; every node's data dir, the mount's
# cache and the logs are in the temp dir.
#
# Every cluster: node 0 `--roles directory,data` (the only one a client mounts and the
# one running repair rounds), the others `--roles data`, one shared cluster key, and
# `--repair-interval-secs 1` (default 10) so that repair latency is not the round period.
#
# Measured (each N times; the columns of 1 and 2 take turns going first):
#   1. seq store   dd bs=1M conv=fsync of a pre-made random file (1 GiB) into the mount,
#                  incl. close (for dfs: the store returned, i.e. W of R nodes hold it
#                  fsynced). Also the time until all R copies are on disk (blob files).
#   2. small files 2,000 files of 4 KiB created by one python process (open/write/close).
#      Columns: local disk (the temp dir; dd with conv=fsync, the physical limit), one
#      standalone dfs-server (no cluster flags), a 3-node cluster with --replicas 1, and
#      a 3-node cluster with --replicas 3 (W = 2, the default majority).
#   3. node loss   4 nodes, --replicas 3, --dead-grace-secs 2: 1 GiB written as 16 files of
#                  64 MiB, wait until fully replicated, kill -9 the data node holding the
#                  most blobs; time from the kill until node 0 shows it dead, departed, and
#                  0 under-replicated (in a round after the departure). Afterwards every
#                  blob file on the 3 live nodes is re-hashed (sha256).
#   4. partition   3 nodes, --replicas 3, --dead-grace-secs 600 (the cut-off node stays in
#                  placement): node 2 cut off with iptables (INPUT DROP both ways between
#                  its address and each other node's), wait until node 0 sees it dead,
#                  write 256 MiB as 64 files of 4 MiB plus 500 files of 4 KiB, heal; time
#                  until node 2 is alive again and until 0 under-replicated; MiB copied to
#                  node 2 (blob bytes on its disk). Every blob on every node re-hashed.
#
# Environment: BENCH_TMPDIR (parent of the temp dir, default /var/tmp), BENCH_RESULTS
# (results dir, default <repo>/target/bench), BENCH_SEQ_MIB, BENCH_PART_MIB, BENCH_FILES,
# BENCH_STEP_TIMEOUT (seconds per timed step), BENCH_CONVERGE_TIMEOUT (seconds to wait for
# detection or convergence), DFS_BIN_DIR (binaries), RUST_LOG (servers; default
# warn,dfs_server::cluster=info), BENCH_KEEP_TMP=1 (keep the temp dir with the logs; daemons
# are stopped and the nodes' data dirs deleted anyway).
set -Eeuo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
QUICK=0
BUILD=1

usage() { sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
    --runs=*) RUNS=${1#--runs=}; shift ;;
    --quick) QUICK=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-replication: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench-replication: --runs wants a positive number" >&2; exit 2; }

if [ "$QUICK" = 1 ]; then
    SEQ_MIB=${BENCH_SEQ_MIB:-256}
    PART_MIB=${BENCH_PART_MIB:-64}
else
    SEQ_MIB=${BENCH_SEQ_MIB:-1024}
    PART_MIB=${BENCH_PART_MIB:-256}
fi
NFILES=${BENCH_FILES:-2000}
STEP_TIMEOUT=${BENCH_STEP_TIMEOUT:-300}
CONVERGE_TIMEOUT=${BENCH_CONVERGE_TIMEOUT:-240}
LOSS_FILES=16
PART_FILES=64
PART_SMALL=500
((SEQ_MIB % LOSS_FILES == 0)) || { echo "bench-replication: BENCH_SEQ_MIB must be a multiple of $LOSS_FILES" >&2; exit 2; }
((PART_MIB % PART_FILES == 0)) || { echo "bench-replication: BENCH_PART_MIB must be a multiple of $PART_FILES" >&2; exit 2; }
((NFILES >= PART_SMALL)) || { echo "bench-replication: BENCH_FILES must be at least $PART_SMALL" >&2; exit 2; }
RESULTS_DIR=${BENCH_RESULTS:-$ROOT/target/bench}
export RUST_LOG=${RUST_LOG:-warn,dfs_server::cluster=info}
MOUNT_LOG=warn

T0=$SECONDS
say() { echo "bench-replication: [$((SECONDS - T0))s] $*"; }
warn() { echo "bench-replication: $*" >&2; }
die() {
    echo "bench-replication: FAILED: $*" >&2
    exit 1
}
trap 'rc=$?; echo "bench-replication: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, iptables)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"

# ---------------------------------------------------------------------------------------
# State and cleanup

W=""             # the temp dir
MNT=""           # the current mount point
MOUNT_PID=""
SRV_PIDS=()      # servers of the current setup, by node index
IPT_RULES=()     # "SRC DST" of every INPUT DROP rule inserted and not yet removed
FAILURES=0
STAMP=$(date +%Y%m%d-%H%M%S)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# shellcheck source=lib/procs.sh
source "$ROOT/scripts/lib/procs.sh"

force_unmount() {
    local mnt=$1
    is_mounted "$mnt" || return 0
    fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null ||
        fusermount3 -uz "$mnt" 2>/dev/null || true
}

# Removes exactly the iptables rules this script inserted.
heal_all() {
    local r rc=0
    for r in "${IPT_RULES[@]}"; do
        iptables -w 10 -D INPUT -s "${r% *}" -d "${r#* }" -j DROP || {
            warn "could not remove iptables rule INPUT -s ${r% *} -d ${r#* } -j DROP"
            rc=1
        }
    done
    IPT_RULES=()
    return $rc
}

stop_mount() {
    if [ -n "$MOUNT_PID" ]; then stop_pid "$MOUNT_PID" TERM 60; fi
    MOUNT_PID=""
    if [ -n "$MNT" ]; then force_unmount "$MNT"; fi
}

stop_servers() {
    local pid
    for pid in "${SRV_PIDS[@]}"; do
        if [ -n "$pid" ]; then stop_pid "$pid" TERM 20; fi
    done
    SRV_PIDS=()
}

cleanup() {
    local rc=$?
    trap - ERR
    set +e
    if [ -n "$W" ]; then
        [ -n "$MOUNT_PID${SRV_PIDS[*]}${IPT_RULES[*]}" ] && say "cleaning up"
        stop_mount
        heal_all
        stop_servers
        if [ "$rc" -ne 0 ] || [ "$FAILURES" -gt 0 ]; then
            mkdir -p "$RESULTS_DIR/bench-replication-$STAMP-logs" &&
                cp -r "$W/logs/." "$RESULTS_DIR/bench-replication-$STAMP-logs/" 2>/dev/null &&
                warn "logs kept in $RESULTS_DIR/bench-replication-$STAMP-logs"
        fi
        if grep -qF " $W/" /proc/self/mountinfo; then
            warn "a mount under $W is still there; not removing $W"
        elif [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then
            say "kept $W (BENCH_KEEP_TMP=1)"
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
# Tools

need_pkgs=()
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
command -v iptables >/dev/null 2>&1 || need_pkgs+=(iptables)
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
command -v "$PY" >/dev/null 2>&1 || { need_pkgs+=(python3); PY=/usr/bin/python3; }
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    say "installing from Debian packages (missing: ${need_pkgs[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
iptables -w 10 -S INPUT >/dev/null || die "iptables does not work here (needed for the partition)"

if [ -n "${DFS_BIN_DIR:-}" ]; then
    SRC_BIN=$DFS_BIN_DIR
else
    SRC_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
if [ "$BUILD" = 1 ]; then
    say "building release binaries (cargo build --release --workspace --bins)"
    (cd "$ROOT" && cargo build --release --workspace --bins)
fi
for b in dfs-server dfs-mount dfs; do
    [ -x "$SRC_BIN/$b" ] || die "no $b in $SRC_BIN"
done

# ---------------------------------------------------------------------------------------
# The temp dir, the binaries and the source data (none of it timed)

mkdir -p "${BENCH_TMPDIR:-/var/tmp}" "$RESULTS_DIR"
W=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/dfs-bench-repl.XXXXXX")
mkdir -p "$W/bin" "$W/src" "$W/logs" "$W/local"
# A copy of the binaries: a rebuild in the work tree during the run changes nothing here.
cp "$SRC_BIN/dfs-server" "$SRC_BIN/dfs-mount" "$SRC_BIN/dfs" "$W/bin/"
BIN_DATE=$(stat -c %y "$SRC_BIN/dfs-server" | cut -d. -f1)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
BIN=$W/bin
SRC=$W/src
RAW=$W/raw.txt
: >"$RAW"
NET=127.77.$((RANDOM % 250 + 1))
say "temp dir $W ($(df -P "$W" | awk 'NR == 2 { print $1 }')); node addresses $NET.x"
say "load average at start: $LOAD_START"

HELPER=$W/helper.py
cat >"$HELPER" <<'EOF'
# Workloads and checks in one process each. Timed ones print "ELAPSED <seconds>"
# (interpreter start excluded).
import hashlib, os, sys, time

def write_files(src, d, prefix, count, size, offset):
    """count files of size bytes, file k = src[offset + k*size : ...], one at a time."""
    f = open(src, "rb")
    f.seek(offset)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    os.makedirs(d, exist_ok=True)
    chunk = 1 << 20
    bufs = []
    # Small files: all contents in memory before the clock starts.
    if size * count <= 64 << 20:
        bufs = [f.read(size) for _ in range(count)]
    t0 = time.perf_counter()
    for k in range(count):
        data = bufs[k] if bufs else f.read(size)
        if len(data) != size:
            sys.exit("source too short")
        fd = os.open("%s/%s%05d" % (d, prefix, k), flags, 0o644)
        mv = memoryview(data)
        for o in range(0, size, chunk):
            part = mv[o:o + chunk]
            if os.write(fd, part) != len(part):
                sys.exit("short write")
        os.close(fd)
    print("ELAPSED %.6f" % (time.perf_counter() - t0))

def shas(src, count, size, offset):
    """The sha256 (blob id) of each slice write_files writes."""
    with open(src, "rb") as f:
        f.seek(offset)
        for _ in range(count):
            print(hashlib.sha256(f.read(size)).hexdigest())

def verify(ids_file, *node_dirs):
    """Every id in ids_file is a blob file on every node dir and hashes to its name."""
    ids = sorted(set(l.strip() for l in open(ids_file) if l.strip()))
    bad = 0
    for d in node_dirs:
        absent = wrong = 0
        for i in ids:
            p = "%s/blobs/%s/%s" % (d, i[:2], i)
            try:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        h.update(b)
                if h.hexdigest() != i:
                    wrong += 1
            except FileNotFoundError:
                absent += 1
        print("%s: %d of %d blobs present and hashing right, %d absent, %d wrong"
              % (os.path.basename(d), len(ids) - absent - wrong, len(ids), absent, wrong))
        bad += absent + wrong
    sys.exit(1 if bad else 0)

def blob_bytes(d):
    """Bytes and count of blob files under d/blobs."""
    n = s = 0
    for root, _, files in os.walk(os.path.join(d, "blobs")):
        for x in files:
            if len(x) == 64:
                try:
                    s += os.stat(os.path.join(root, x)).st_size
                    n += 1
                except FileNotFoundError:
                    pass
    print(s, n)

def free_port(ip, taken):
    """A port free on ip for both TCP and UDP (gossip shares the HTTP port)."""
    import socket
    taken = set(int(x) for x in taken.split(",") if x)
    for _ in range(200):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind((ip, 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((ip, port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        if port not in taken:
            print(port)
            return
    sys.exit("no free port")

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "write":
    write_files(args[0], args[1], args[2], int(args[3]), int(args[4]), int(args[5]))
elif cmd == "shas":
    shas(args[0], int(args[1]), int(args[2]), int(args[3]))
elif cmd == "verify":
    verify(*args)
elif cmd == "blob-bytes":
    blob_bytes(args[0])
elif cmd == "free-port":
    free_port(args[0], args[1] if len(args) > 1 else "")
else:
    sys.exit("unknown command " + cmd)
EOF

MIB=1048576
LOSS_SIZE=$((SEQ_MIB / LOSS_FILES * MIB))
PART_SIZE=$((PART_MIB / PART_FILES * MIB))
say "making the source data: $SEQ_MIB MiB random file, $NFILES x 4 KiB random contents"
head -c $((SEQ_MIB * MIB)) /dev/urandom >"$SRC/seq.bin"
head -c $((NFILES * 4096)) /dev/urandom >"$SRC/small.bin"
SEQ_SHA=$(sha256sum "$SRC/seq.bin" | cut -d' ' -f1)
"$PY" "$HELPER" shas "$SRC/seq.bin" "$LOSS_FILES" "$LOSS_SIZE" 0 >"$SRC/loss.ids"
{
    "$PY" "$HELPER" shas "$SRC/seq.bin" "$PART_FILES" "$PART_SIZE" 0
    "$PY" "$HELPER" shas "$SRC/small.bin" "$PART_SMALL" 4096 0
} >"$SRC/part.ids"
PART_BLOBS=$(sort -u "$SRC/part.ids" | wc -l)

# ---------------------------------------------------------------------------------------
# Servers, clusters, the mount

SETUP=""         # name of the current setup (its dir is $W/$SETUP)
NODE_IPS=()
NODE_PORTS=()

node_addr() { echo "${NODE_IPS[$1]}:${NODE_PORTS[$1]}"; }
node_dir() { echo "$W/$SETUP/d$1"; }

dfs_healthy() {
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "GET /v1/health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$1" >&3
        IFS= read -r line <&3 || exit 1
        [[ $line == "HTTP/1.1 200"* ]]' _ "$1" "$2" 2>/dev/null
}

# start_setup NAME N [SERVER ARGS...]: N = 0 is one standalone server (no cluster flags);
# N >= 1 is a cluster of N nodes with the given args. Mounts node 0 at $MNT; for a
# cluster, waits until node 0 sees every node alive.
start_setup() {
    local name=$1 n=$2 i j peers roles taken="" port pid
    shift 2
    SETUP=$name
    local cd=$W/$SETUP
    mkdir -p "$cd/mnt" "$cd/cache" "$W/logs/$SETUP"
    MNT=$cd/mnt
    local nodes=$n
    [ "$n" = 0 ] && nodes=1
    NODE_IPS=()
    NODE_PORTS=()
    for ((i = 0; i < nodes; i++)); do
        NODE_IPS[i]=$NET.$((i + 1))
        port=$("$PY" "$HELPER" free-port "${NODE_IPS[i]}" "$taken")
        NODE_PORTS[i]=$port
        taken="$taken,$port"
    done
    if [ "$n" -gt 0 ]; then
        head -c 32 /dev/urandom >"$cd/cluster.key"
        chmod 600 "$cd/cluster.key"
    fi
    for ((i = 0; i < nodes; i++)); do
        local args=(--data-dir "$cd/d$i" --listen "$(node_addr "$i")")
        if [ "$n" -gt 0 ]; then
            peers=""
            for ((j = 0; j < nodes; j++)); do
                [ "$j" = "$i" ] || peers="$peers${peers:+,}$(node_addr "$j")"
            done
            roles=data
            [ "$i" = 0 ] && roles=directory,data
            args+=(--cluster-key-file "$cd/cluster.key" --peers "$peers" --roles "$roles" "$@")
        fi
        echo "==== $(date -Is) dfs-server ${args[*]}" >>"$W/logs/$SETUP/node$i.log"
        setsid "$BIN/dfs-server" "${args[@]}" </dev/null >>"$W/logs/$SETUP/node$i.log" 2>&1 &
        pid=$!
        disown "$pid"
        SRV_PIDS[i]=$pid
    done
    for ((i = 0; i < nodes; i++)); do
        for ((j = 0; j < 200; j++)); do
            dfs_healthy "${NODE_IPS[i]}" "${NODE_PORTS[i]}" && break
            alive "${SRV_PIDS[i]}" || break
            sleep 0.1
        done
        if ! dfs_healthy "${NODE_IPS[i]}" "${NODE_PORTS[i]}"; then
            tail -n 20 "$W/logs/$SETUP/node$i.log" >&2
            die "$SETUP: node $i did not answer on $(node_addr "$i")"
        fi
    done
    echo "==== $(date -Is) dfs-mount $(node_addr 0)" >>"$W/logs/$SETUP/mount.log"
    RUST_LOG=$MOUNT_LOG setsid "$BIN/dfs-mount" "$(node_addr 0)" "$MNT" --cache-dir "$cd/cache" \
        </dev/null >>"$W/logs/$SETUP/mount.log" 2>&1 &
    MOUNT_PID=$!
    disown "$MOUNT_PID"
    for ((j = 0; j < 300; j++)); do
        if is_mounted "$MNT" && timeout 5 ls -A "$MNT" >/dev/null 2>&1; then break; fi
        alive "$MOUNT_PID" || break
        sleep 0.1
    done
    if ! is_mounted "$MNT"; then
        tail -n 20 "$W/logs/$SETUP/mount.log" >&2
        die "$SETUP: dfs-mount did not mount $MNT"
    fi
    if [ "$n" -gt 0 ]; then
        local t0=$EPOCHREALTIME
        wait_until 60 all_alive "$n" || die "$SETUP: node 0 does not see $n nodes alive: $(tr '\n' '|' <<<"$ST_TEXT")"
        echo "$SETUP all_alive_after $(elapsed "$t0")" >>"$W/logs/$SETUP/setup.txt"
    fi
}

# Stops the current setup's mount and servers, keeps its logs, deletes its data.
stop_setup() {
    stop_mount
    heal_all || FAILURES=$((FAILURES + 1))
    stop_servers
    if [ -n "$SETUP" ]; then
        if grep -qF " $W/$SETUP/" /proc/self/mountinfo; then
            warn "$MNT is still mounted; keeping $W/$SETUP"
        else
            rm -rf "${W:?}/$SETUP"
        fi
    fi
    SETUP=""
    MNT=""
}

# ---------------------------------------------------------------------------------------
# Node 0's view (`dfs status` on the mount)

ST_TEXT=""
ST_REF=0 ST_UNDER=0 ST_MISSING=0 ST_ROUNDS=0 ST_EFF=0 ST_ALIVE=0
declare -A ST_STATE=()

read_status() {
    local line addr state
    ST_TEXT=$(timeout 10 "$BIN/dfs" status "$MNT" 2>&1) || return 1
    ST_STATE=()
    ST_ALIVE=0
    while read -r addr _ state _; do
        ST_STATE[$addr]=$state
        [ "$state" = alive ] && ST_ALIVE=$((ST_ALIVE + 1))
    done < <(awk '/^members:/ { m = 1; next } m && /^  / { print; next } { m = 0 }' <<<"$ST_TEXT")
    line=$(awk '
        /^replication:/ { e = $4; gsub(/[^0-9]/, "", e) }
        /^blobs:/ { r = $2; u = $4; m = $6 }
        /^repair:/ { for (i = 1; i <= NF; i++) if ($i ~ /^rounds/) n = $(i - 1) }
        END { print r + 0, u + 0, m + 0, n + 0, e + 0 }' <<<"$ST_TEXT")
    read -r ST_REF ST_UNDER ST_MISSING ST_ROUNDS ST_EFF <<<"$line"
}

state_of() { echo "${ST_STATE[$1]:-absent}"; }

# Conditions for wait_until (called after read_status).
all_alive() { [ "$ST_ALIVE" = "$1" ] && [ "${#ST_STATE[@]}" = "$1" ] && [ "$ST_EFF" -ge 1 ]; }
replicated() { [ "$ST_REF" = "$1" ] && [ "$ST_UNDER" = 0 ] && [ "$ST_MISSING" = 0 ] && [ "$ST_ROUNDS" -gt "$2" ]; }
is_state() { local s; s=$(state_of "$1"); [[ " ${*:2} " == *" $s "* ]]; }
under_some() { [ "$ST_UNDER" -gt 0 ]; }

# wait_until TIMEOUT COND ARGS...: polls node 0's status every 0.1 s.
wait_until() {
    local limit=$1 t0=$EPOCHREALTIME
    shift
    while :; do
        if read_status && "$@"; then return 0; fi
        if [ "$(elapsed "$t0" | cut -d. -f1)" -ge "$limit" ]; then return 1; fi
        sleep 0.1
    done
}

# Seconds since $1 (an EPOCHREALTIME), with 3 decimals.
elapsed() {
    local now=$EPOCHREALTIME
    local us=$((${now/./} - ${1/./}))
    printf '%d.%03d' $((us / 1000000)) $((us % 1000000 / 1000))
}

status_line() { grep -E '^(replication|  [0-9]|blobs|repair)' <<<"$ST_TEXT" | sed 's/  */ /g' | tr '\n' '|'; }

# ---------------------------------------------------------------------------------------
# Measuring

record() { echo "$*" >>"$RAW"; }

fail() { # fail COLUMN METRIC RUN MESSAGE
    FAILURES=$((FAILURES + 1))
    echo "bench-replication: FAILED: $2 on $1 (run $3): $4" | tee -a "$W/logs/failures.log" >&2
    record "$1 $2 $3 FAIL"
}

# timed COLUMN METRIC RUN CMD...: runs CMD under a timeout, records its seconds (its own
# "ELAPSED s" line if it prints one, else the wall time).
timed() {
    local col=$1 metric=$2 run=$3
    shift 3
    local t0 rc=0 out el secs
    t0=$EPOCHREALTIME
    out=$(timeout -k 10 "$STEP_TIMEOUT" "$@" 2>"$W/logs/step.err") || rc=$?
    secs=$(elapsed "$t0")
    if [ "$rc" -ne 0 ]; then
        fail "$col" "$metric" "$run" "exit $rc$([ "$rc" = 124 ] && echo " (timed out after $STEP_TIMEOUT s)"): $* | $(tail -n 5 "$W/logs/step.err" | tr '\n' ' ')"
        return 1
    fi
    el=$(sed -n 's/^ELAPSED //p' <<<"$out")
    [ -n "$el" ] && secs=$el
    record "$col $metric $run $secs"
    printf '  %-10s %-22s %10s s\n' "$col" "$metric" "$secs"
}

# Blob files (count) of id $1 on nodes 0..$2-1 of the current setup.
copies_of() {
    local id=$1 n=$2 i c=0
    for ((i = 0; i < n; i++)); do
        [ -f "$(node_dir "$i")/blobs/${id:0:2}/$id" ] && c=$((c + 1))
    done
    echo "$c"
}

# Columns 1 and 2 on one setup: local | standalone | r1 | r3.
run_column() {
    local col=$1 run=$2 dir t0 r nodes i holder
    say "run $run/$RUNS: $col"
    case $col in
    local) dir=$W/local ;;
    standalone) start_setup standalone 0; dir=$MNT; nodes=1; r=1 ;;
    r1) start_setup r1 3 --replicas 1 --repair-interval-secs 1; dir=$MNT; nodes=3; r=1 ;;
    r3) start_setup r3 3 --replicas 3 --repair-interval-secs 1; dir=$MNT; nodes=3; r=3 ;;
    esac
    cat "$SRC/seq.bin" "$SRC/small.bin" >/dev/null
    sync
    t0=$EPOCHREALTIME
    if timed "$col" seq_store "$run" dd if="$SRC/seq.bin" of="$dir/seq.bin" bs=1M conv=fsync status=none; then
        if [ "$col" != local ]; then
            # Until all R copies are blob files on the nodes' disks (installed by rename).
            while [ "$(copies_of "$SEQ_SHA" "$nodes")" -lt "$r" ]; do
                if [ "$(elapsed "$t0" | cut -d. -f1)" -ge "$STEP_TIMEOUT" ]; then
                    fail "$col" seq_all_copies "$run" "$r copies of the blob not on disk after $STEP_TIMEOUT s"
                    break
                fi
                sleep 0.02
            done
            if [ "$(copies_of "$SEQ_SHA" "$nodes")" -ge "$r" ]; then
                record "$col seq_all_copies $run $(elapsed "$t0")"
                holder=""
                for ((i = 0; i < nodes; i++)); do
                    [ -f "$(node_dir "$i")/blobs/${SEQ_SHA:0:2}/$SEQ_SHA" ] && holder="$holder${holder:+,}node$i"
                done
                record "$col seq_holders $run $holder"
            fi
        fi
    fi
    sync
    timed "$col" small_create "$run" "$PY" "$HELPER" write "$SRC/small.bin" "$dir/small" f "$NFILES" 4096 0 || true
    if [ "$col" = local ]; then
        rm -rf "${W:?}/local/"*
    else
        stop_setup
    fi
}

# 3. A node is lost: 4 nodes, R=3, grace 2 s.
run_loss() {
    local run=$1 i v=0 best=-1 cnt t0 t_kill b before=0 after=0 r0
    say "run $run/$RUNS: node loss (4 nodes, R=3, --dead-grace-secs 2)"
    start_setup loss 4 --replicas 3 --dead-grace-secs 2 --repair-interval-secs 1
    cat "$SRC/seq.bin" >/dev/null
    sync
    timed loss write "$run" "$PY" "$HELPER" write "$SRC/seq.bin" "$MNT/big" g "$LOSS_FILES" "$LOSS_SIZE" 0 || { stop_setup; return; }
    read_status || true
    r0=$ST_ROUNDS
    if ! wait_until "$CONVERGE_TIMEOUT" replicated "$LOSS_FILES" "$r0"; then
        fail loss replicated_before "$run" "not fully replicated after the write: $(status_line)"
        stop_setup
        return
    fi
    # The victim: the data node holding the most blob files.
    for ((i = 1; i < 4; i++)); do
        read -r _ cnt < <("$PY" "$HELPER" blob-bytes "$(node_dir "$i")")
        if [ "$cnt" -gt "$best" ]; then best=$cnt; v=$i; fi
    done
    for ((i = 0; i < 4; i++)); do
        [ "$i" = "$v" ] && continue
        read -r b _ < <("$PY" "$HELPER" blob-bytes "$(node_dir "$i")")
        before=$((before + b))
    done
    local va
    va=$(node_addr "$v")
    say "  killing node $v ($va, $best blobs) with SIGKILL"
    t_kill=$EPOCHREALTIME
    kill -KILL "${SRV_PIDS[v]}"
    local t_dead="" t_departed="" t_conv="" r_dep=0 ok=1
    while :; do
        if read_status; then
            if [ -z "$t_dead" ] && is_state "$va" dead departed; then t_dead=$(elapsed "$t_kill"); fi
            if [ -z "$t_departed" ] && is_state "$va" departed; then
                t_departed=$(elapsed "$t_kill")
                r_dep=$ST_ROUNDS
            fi
            if [ -n "$t_departed" ] && replicated "$LOSS_FILES" "$r_dep"; then
                t_conv=$(elapsed "$t_kill")
                break
            fi
        fi
        if [ "$(elapsed "$t_kill" | cut -d. -f1)" -ge "$CONVERGE_TIMEOUT" ]; then
            ok=0
            break
        fi
        sleep 0.1
    done
    if [ -n "$t_dead" ]; then record "loss detect_dead $run $t_dead"; else fail loss detect_dead "$run" "not seen dead: $(status_line)"; fi
    if [ -n "$t_departed" ]; then record "loss departed $run $t_departed"; else fail loss departed "$run" "not seen departed: $(status_line)"; fi
    if [ "$ok" = 1 ]; then
        record "loss converged $run $t_conv"
        record "loss copying $run $(awk -v a="$t_conv" -v b="$t_departed" 'BEGIN { printf "%.3f", a - b }')"
        for ((i = 0; i < 4; i++)); do
            [ "$i" = "$v" ] && continue
            read -r b _ < <("$PY" "$HELPER" blob-bytes "$(node_dir "$i")")
            after=$((after + b))
        done
        record "loss copied_mib $run $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f", (a - b) / 1048576 }')"
        record "loss copy_rate $run $(awk -v a="$after" -v b="$before" -v t="$t_conv" -v d="$t_departed" 'BEGIN { printf "%.1f", (a - b) / 1048576 / (t - d) }')"
        printf '  %-10s dead %s s, departed %s s, 0 under-replicated %s s after the kill\n' loss "$t_dead" "$t_departed" "$t_conv"
        local dirs=()
        for ((i = 0; i < 4; i++)); do [ "$i" = "$v" ] || dirs+=("$(node_dir "$i")"); done
        if "$PY" "$HELPER" verify "$SRC/loss.ids" "${dirs[@]}" >"$W/logs/loss/verify-$run.txt" 2>&1; then
            record "loss verified $run 1"
        else
            fail loss verified "$run" "$(tr '\n' ' ' <"$W/logs/loss/verify-$run.txt")"
        fi
        sed 's/^/  /' "$W/logs/loss/verify-$run.txt"
    else
        fail loss converged "$run" "not back to 0 under-replicated within $CONVERGE_TIMEOUT s: $(status_line)"
    fi
    echo "run $run: killed node $v ($va) at $(date -d "@${t_kill%.*}" -Is); last status: $(status_line)" >>"$W/logs/loss/summary.txt"
    stop_setup
}

# 4. A partition heals: 3 nodes, R=3, node 2 cut off.
run_partition() {
    local run=$1 i t_cut t_heal r_heal b2_before b2_after a2 ok=1
    say "run $run/$RUNS: partition (3 nodes, R=3, node 2 cut off)"
    start_setup part 3 --replicas 3 --dead-grace-secs 600 --repair-interval-secs 1
    a2=$(node_addr 2)
    local ip2=${NODE_IPS[2]}
    t_cut=$EPOCHREALTIME
    for ((i = 0; i < 2; i++)); do
        local ipj=${NODE_IPS[i]} src dst
        for pair in "$ip2 $ipj" "$ipj $ip2"; do
            src=${pair% *}
            dst=${pair#* }
            iptables -w 10 -I INPUT -s "$src" -d "$dst" -j DROP || die "iptables -I INPUT -s $src -d $dst -j DROP failed"
            IPT_RULES+=("$src $dst")
        done
    done
    if wait_until "$CONVERGE_TIMEOUT" is_state "$a2" dead departed; then
        record "part detect_dead $run $(elapsed "$t_cut")"
    else
        fail part detect_dead "$run" "node 2 not seen dead: $(status_line)"
        stop_setup
        return
    fi
    cat "$SRC/seq.bin" >/dev/null
    sync
    local t_w=$EPOCHREALTIME
    if ! timeout -k 10 "$STEP_TIMEOUT" "$PY" "$HELPER" write "$SRC/seq.bin" "$MNT/big" p "$PART_FILES" "$PART_SIZE" 0 >/dev/null 2>"$W/logs/step.err" ||
        ! timeout -k 10 "$STEP_TIMEOUT" "$PY" "$HELPER" write "$SRC/small.bin" "$MNT/small" s "$PART_SMALL" 4096 0 >/dev/null 2>>"$W/logs/step.err"; then
        fail part write "$run" "writing while node 2 is cut off: $(tail -n 5 "$W/logs/step.err" | tr '\n' ' ')"
        stop_setup
        return
    fi
    record "part write $run $(elapsed "$t_w")"
    if ! wait_until 30 under_some; then
        warn "node 0 never reported under-replicated blobs while node 2 was cut off: $(status_line)"
    fi
    read -r b2_before _ < <("$PY" "$HELPER" blob-bytes "$(node_dir 2)")
    read_status || true
    r_heal=$ST_ROUNDS
    heal_all || die "could not remove the iptables rules"
    t_heal=$EPOCHREALTIME
    local t_alive="" t_conv=""
    while :; do
        if read_status; then
            if [ -z "$t_alive" ] && is_state "$a2" alive; then t_alive=$(elapsed "$t_heal"); fi
            if [ -n "$t_alive" ] && replicated "$PART_BLOBS" "$r_heal"; then
                t_conv=$(elapsed "$t_heal")
                break
            fi
        fi
        if [ "$(elapsed "$t_heal" | cut -d. -f1)" -ge "$CONVERGE_TIMEOUT" ]; then
            ok=0
            break
        fi
        sleep 0.1
    done
    if [ -n "$t_alive" ]; then record "part rejoin $run $t_alive"; else fail part rejoin "$run" "node 2 not alive again: $(status_line)"; fi
    if [ "$ok" = 1 ]; then
        record "part converged $run $t_conv"
        read -r b2_after _ < <("$PY" "$HELPER" blob-bytes "$(node_dir 2)")
        record "part copied_mib $run $(awk -v a="$b2_after" -v b="$b2_before" 'BEGIN { printf "%.1f", (a - b) / 1048576 }')"
        printf '  %-10s node 2 alive %s s, 0 under-replicated %s s after healing\n' part "$t_alive" "$t_conv"
        if "$PY" "$HELPER" verify "$SRC/part.ids" "$(node_dir 0)" "$(node_dir 1)" "$(node_dir 2)" >"$W/logs/part/verify-$run.txt" 2>&1; then
            record "part verified $run 1"
        else
            fail part verified "$run" "$(tr '\n' ' ' <"$W/logs/part/verify-$run.txt")"
        fi
        sed 's/^/  /' "$W/logs/part/verify-$run.txt"
    else
        fail part converged "$run" "not back to 0 under-replicated within $CONVERGE_TIMEOUT s of healing: $(status_line)"
    fi
    echo "run $run: healed at $(date -d "@${t_heal%.*}" -Is); last status: $(status_line)" >>"$W/logs/part/summary.txt"
    stop_setup
}

COLUMNS_=(local standalone r1 r3)
T_START=$(date +%s)
for ((run = 1; run <= RUNS; run++)); do
    for ((k = 0; k < 4; k++)); do
        run_column "${COLUMNS_[$(((run - 1 + k) % 4))]}" "$run"
    done
    run_loss "$run"
    run_partition "$run"
done
T_SECS=$(($(date +%s) - T_START))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at end: $LOAD_END"

# ---------------------------------------------------------------------------------------
# Report

OUT=$RESULTS_DIR/bench-replication-$STAMP.md
{
    echo "# dfs replication benchmark $(date -Is)"
    echo
    echo "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), temp dir on $(df -P "$W" | awk 'NR == 2 { print $1 }')"
    echo "- dfs: commit $rev, binaries from $SRC_BIN (dfs-server built $BIN_DATE), copied at the start"
    echo "- runs: $RUNS$([ "$QUICK" = 1 ] && echo " (--quick)"), measuring took $T_SECS s; load average (1/5/15 min) at start $LOAD_START, at end $LOAD_END"
    echo "- every cluster: node 0 directory,data (mounted, runs repair), others data, all on 127.77.x loopback addresses of one host, \`--repair-interval-secs 1\`; W = majority of R (R=3: W=2; R=1: W=1)"
    echo "- seq store: $SEQ_MIB MiB random, \`dd bs=1M conv=fsync\` incl. close; small files: $NFILES x 4 KiB, one python process (open/write/close, no fsync)"
    echo "- node loss: 4 nodes R=3 \`--dead-grace-secs 2\`, $LOSS_FILES files of $((LOSS_SIZE / MIB)) MiB, SIGKILL of the data node holding most blobs"
    echo "- partition: 3 nodes R=3 \`--dead-grace-secs 600\`, node 2 cut off by iptables INPUT DROP (both ways), $PART_FILES files of $((PART_SIZE / MIB)) MiB + $PART_SMALL of 4 KiB written while cut off"
    echo
} >"$OUT"
SEQ_MIB=$SEQ_MIB NFILES=$NFILES RUNS=$RUNS "$PY" - "$RAW" >>"$OUT" <<'EOF'
import os, statistics, sys
from collections import defaultdict

raw = defaultdict(list)
fails = defaultdict(int)
text = defaultdict(list)
for line in open(sys.argv[1]):
    col, metric, run, val = line.split()[:4]
    if val == "FAIL":
        fails[(col, metric)] += 1
        continue
    try:
        raw[(col, metric)].append(float(val))
    except ValueError:
        text[(col, metric)].append(val)

seq_mib = int(os.environ["SEQ_MIB"])
nf = int(os.environ["NFILES"])
runs = int(os.environ["RUNS"])

def num(x):
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    return "%.2f" % x

def figs(col, metric, amount):
    xs = raw.get((col, metric), [])
    return [amount / x if amount is not None else x for x in xs if (amount is None or x > 0)]

def cell(col, metric, amount=None):
    xs = figs(col, metric, amount)
    if not xs:
        return None, ("FAIL" if fails.get((col, metric)) else "—")
    m = statistics.median(xs)
    c = "%s ±%s" % (num(m), num((max(xs) - min(xs)) / 2))
    if fails.get((col, metric)):
        c += " (%d failed)" % fails[(col, metric)]
    return m, c

def ratio(a, b):
    return "—" if a is None or b is None or b == 0 else "%.2f×" % (a / b)

print("Figures: median of %d runs ± half the min–max range, in the row's unit. "
      "Ratios are of throughputs (> 1: the first is faster)." % runs)
print()
print("| workload | unit | local disk | standalone | 3 nodes R=1 | 3 nodes R=3 | R=3/R=1 | R=3/standalone | standalone/local | R=1/local | R=3/local |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
rows = [
    ("seq store %d MiB, dd conv=fsync incl. close" % seq_mib, "MiB/s", "seq_store", seq_mib),
    ("seq store until all R copies on disk", "MiB/s", "seq_all_copies", seq_mib),
    ("create %d x 4 KiB, one process" % nf, "files/s", "small_create", nf),
]
for label, unit, metric, amount in rows:
    ms, cs = {}, {}
    for col in ("local", "standalone", "r1", "r3"):
        ms[col], cs[col] = cell(col, metric, amount)
    if metric == "seq_all_copies":
        ms["local"], cs["local"] = None, "—"
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        label, unit, cs["local"], cs["standalone"], cs["r1"], cs["r3"],
        ratio(ms["r3"], ms["r1"]), ratio(ms["r3"], ms["standalone"]),
        ratio(ms["standalone"], ms["local"]), ratio(ms["r1"], ms["local"]), ratio(ms["r3"], ms["local"])))
print()
holders = text.get(("r1", "seq_holders"), [])
if holders:
    print("R=1: the %d MiB blob landed on node(s) %s (node 0 = the one the client talks to; "
          "placement is by rendezvous hash of fresh addresses, so it varies per run)." % (seq_mib, ", ".join(holders)))
    print()

print("| recovery | unit | median ± half range | runs (each) |")
print("|---|---|---:|---|")
rec = [
    ("loss", "detect_dead", "node loss: kill -9 → node 0 shows it dead", "s"),
    ("loss", "departed", "node loss: kill -9 → departed (dead + 2 s grace)", "s"),
    ("loss", "copying", "node loss: departed → 0 under-replicated (copying)", "s"),
    ("loss", "converged", "node loss: kill -9 → 0 under-replicated (total)", "s"),
    ("loss", "copied_mib", "node loss: copied onto the 3 live nodes", "MiB"),
    ("loss", "copy_rate", "node loss: copy rate (copied / copying time)", "MiB/s"),
    ("loss", "write", "node loss: writing the files (before the kill)", "s"),
    ("part", "detect_dead", "partition: cut → node 0 shows node 2 dead", "s"),
    ("part", "write", "partition: writing while node 2 is cut off", "s"),
    ("part", "rejoin", "partition: heal → node 2 alive again", "s"),
    ("part", "converged", "partition: heal → 0 under-replicated", "s"),
    ("part", "copied_mib", "partition: copied to node 2", "MiB"),
]
for col, metric, label, unit in rec:
    m, c = cell(col, metric)
    xs = raw.get((col, metric), [])
    each = " ".join(num(x) for x in xs)
    if fails.get((col, metric)):
        each += " (%d failed)" % fails[(col, metric)]
    print("| %s | %s | %s | %s |" % (label, unit, c, each))
ver = []
for col, name in (("loss", "node loss: every blob on the 3 live nodes"), ("part", "partition: every blob on all 3 nodes")):
    ok = len(raw.get((col, "verified"), []))
    ver.append("%s, re-hashed: %d of %d runs OK" % (name, ok, runs))
print()
print("Verified: " + "; ".join(ver) + ".")
print()
print("Raw values per run (column metric: run1 run2 …; seconds unless named):")
print()
print("```")
for key in sorted(set(raw) | set(fails) | set(text)):
    xs = raw.get(key, []) + text.get(key, [])
    print("%-10s %-16s %s%s" % (key[0], key[1], " ".join(("%.3f" % x) if isinstance(x, float) else x for x in xs),
                                "  (%d failed)" % fails[key] if fails.get(key) else ""))
print("```")
EOF
if [ -s "$W/logs/failures.log" ]; then
    {
        echo
        echo "Failures:"
        echo
        echo '```'
        cat "$W/logs/failures.log"
        echo '```'
    } >>"$OUT"
fi
cp "$RAW" "$RESULTS_DIR/bench-replication-$STAMP.raw"

echo
cat "$OUT"
echo
say "results saved to $OUT (raw: $RESULTS_DIR/bench-replication-$STAMP.raw)"
if [ "$FAILURES" -gt 0 ]; then
    die "$FAILURES step(s) failed (see above)"
fi
