#!/usr/bin/env bash
# Benchmark: the same workloads on (a) the local disk, (b) a dfs mount of a local server,
# (c) sshfs on loopback, and one table with each workload's figure and the ratios
# dfs/local and dfs/sshfs.
#
#   scripts/bench.sh [--runs N] [--quick] [--no-build]
#
#   --runs N    runs of every workload on every target (default 3); medians are reported
#   --quick     smaller sizes for a fast check (256 MiB, 2,000 files, a 1,000-entry tarball,
#               a one-commit repository)
#   --no-build  use the binaries already in the target dir (or $DFS_BIN_DIR)
#
# Needs root (FUSE mounts, sshd, drop_caches). Installs what is missing from Debian
# packages (sshfs openssh-server openssh-client fuse3 git python3), builds the release
# binaries, and sets everything up in one temp dir (under $BENCH_TMPDIR, default
# /var/tmp, so on the same disk as the local target) that a trap removes on exit, failure
# or Ctrl-C: a dfs-server on a free 127.0.0.1 port (data dir in the temp dir), a dfs-mount
# (cache dir in the temp dir), an sshd of its own on a free 127.0.0.1 port (throwaway host
# and client keys, own sshd_config; the system's sshd is not touched) and sshfs mounting a
# directory of the temp dir through it with sshfs's default options.
#
# Workloads (each N times per target; the targets take turns within a run):
#   seq write     copy a pre-made random file (1 GiB) with dd bs=1M conv=fsync: the time
#                 includes fsync and close (for dfs: stored and durable on the server)
#   first bytes   cold: the first 4 KiB of that file (dd bs=4k count=1): open to first data
#   seq read      dd bs=1M to /dev/null, cold then warm
#   small create  10,000 files of 4 KiB in one directory, one process (open/write/close)
#   small read    read them all back, cold then warm (contents checked)
#   stat          listdir + lstat of all of them, cold then warm
#   untar         tar -x of a tarball of a real source tree (default /usr/include, C and
#                 C++ headers from Debian packages; symlinks left out, see below)
#   git clone     git clone --no-hardlinks file://… of a local repository built from the
#                 Python and Perl libraries installed by Debian packages
#   rm -rf        of the clone, and of the untarred tree
# Cold: local = sync + drop_caches; sshfs = unmount, drop_caches, remount; dfs = kill -9
# the client (so nothing it has not stored yet can reach the server later), detach its
# mount, wipe its cache dir, drop_caches, remount (the server keeps running and keeps its
# data). The cold reads check the contents, so they also prove that every close that
# returned was durable on the server. Warm = read again at once.
#
# Environment: BENCH_TMPDIR (parent of the temp dir, default /var/tmp), BENCH_RESULTS
# (results dir, default <repo>/target/bench), BENCH_TREE (tree for the tarball, default
# /usr/include), BENCH_SEQ_MIB, BENCH_FILES, BENCH_STEP_TIMEOUT (seconds per step),
# DFS_BIN_DIR (binaries), RUST_LOG (daemons, default warn), BENCH_KEEP_TMP=1 (keep the
# temp dir for a look afterwards; the daemons are stopped anyway).
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
    *) echo "bench: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench: --runs wants a positive number" >&2; exit 2; }

if [ "$QUICK" = 1 ]; then
    SEQ_MIB=${BENCH_SEQ_MIB:-256}
    NFILES=${BENCH_FILES:-2000}
    TREE_MAX_FILES=1000
    REPO_DIRS=(/usr/lib/python3.11)
    STEP_TIMEOUT=${BENCH_STEP_TIMEOUT:-300}
else
    SEQ_MIB=${BENCH_SEQ_MIB:-1024}
    NFILES=${BENCH_FILES:-10000}
    TREE_MAX_FILES=0
    REPO_DIRS=(/usr/lib/python3.11 /usr/lib/python3/dist-packages /usr/share/perl)
    STEP_TIMEOUT=${BENCH_STEP_TIMEOUT:-900}
fi
TREE=${BENCH_TREE:-/usr/include}
RESULTS_DIR=${BENCH_RESULTS:-$ROOT/target/bench}
export RUST_LOG=${RUST_LOG:-warn}
# git: no user or system configuration, so every target runs the same git.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1

say() { echo "bench: $*"; }
warn() { echo "bench: $*" >&2; }
die() {
    echo "bench: FAILED: $*" >&2
    exit 1
}
trap 'rc=$?; echo "bench: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, sshd, drop_caches)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"
[ -w /proc/sys/vm/drop_caches ] || die "cannot write /proc/sys/vm/drop_caches (needed for cold runs)"

# ---------------------------------------------------------------------------------------
# State and cleanup

W=""                # the temp dir
DFS_SERVER_PID=""
DFS_MOUNT_PID=""
SSHD_PID=""
SSHFS_PID=""
MADE_RUN_SSHD=0
FAILURES=0
STAMP=$(date +%Y%m%d-%H%M%S)

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
    if [ -n "$W" ]; then
        [ -n "$SSHFS_PID$DFS_MOUNT_PID$SSHD_PID$DFS_SERVER_PID" ] && say "cleaning up"
        if [ -n "$DFS_MOUNT_PID" ]; then stop_pid "$DFS_MOUNT_PID" TERM 60; fi
        force_unmount "$W/dfs-mnt"
        if is_mounted "$W/sshfs-mnt"; then umount "$W/sshfs-mnt" 2>/dev/null || fusermount3 -u "$W/sshfs-mnt" 2>/dev/null; fi
        if [ -n "$SSHFS_PID" ]; then stop_pid "$SSHFS_PID" TERM 10; fi
        force_unmount "$W/sshfs-mnt"
        if [ -n "$SSHD_PID" ]; then
            local kid
            for kid in $(pgrep -P "$SSHD_PID" 2>/dev/null); do stop_pid "$kid" TERM 5; done
            stop_pid "$SSHD_PID" TERM 10
        fi
        if [ -n "$DFS_SERVER_PID" ]; then stop_pid "$DFS_SERVER_PID" TERM 20; fi
        if [ "$rc" -ne 0 ] || [ "$FAILURES" -gt 0 ]; then
            mkdir -p "$RESULTS_DIR/bench-$STAMP-logs" &&
                cp -r "$W/logs/." "$RESULTS_DIR/bench-$STAMP-logs/" 2>/dev/null &&
                warn "logs kept in $RESULTS_DIR/bench-$STAMP-logs"
        fi
        if is_mounted "$W/dfs-mnt" || is_mounted "$W/sshfs-mnt"; then
            warn "a mount under $W is still there; not removing $W"
        elif [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then
            say "kept $W (BENCH_KEEP_TMP=1)"
        else
            rm -rf "$W"
        fi
    fi
    if [ "$MADE_RUN_SSHD" = 1 ]; then rmdir /run/sshd 2>/dev/null; fi
    return $rc
}
trap cleanup EXIT
trap 'warn "interrupted"; exit 130' INT
trap 'warn "terminated"; exit 143' TERM

# ---------------------------------------------------------------------------------------
# Tools

need_pkgs=()
command -v sshfs >/dev/null 2>&1 || need_pkgs+=(sshfs)
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
command -v "$PY" >/dev/null 2>&1 || { need_pkgs+=(python3); PY=/usr/bin/python3; }
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    say "installing from Debian packages (missing: ${need_pkgs[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq sshfs openssh-server openssh-client fuse3 git "${need_pkgs[@]}" >/dev/null
fi
SFTP_SERVER=/usr/lib/openssh/sftp-server
[ -x "$SFTP_SERVER" ] || die "$SFTP_SERVER is missing (package openssh-sftp-server)"

if [ -n "${DFS_BIN_DIR:-}" ]; then
    BIN=$DFS_BIN_DIR
else
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
if [ "$BUILD" = 1 ]; then
    say "building release binaries (cargo build --release --workspace --bins)"
    (cd "$ROOT" && cargo build --release --workspace --bins)
fi
[ -x "$BIN/dfs-server" ] && [ -x "$BIN/dfs-mount" ] || die "no dfs-server/dfs-mount in $BIN"

# ---------------------------------------------------------------------------------------
# The temp dir and the source data (none of it timed)

mkdir -p "${BENCH_TMPDIR:-/var/tmp}" "$RESULTS_DIR"
W=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/dfs-bench.XXXXXX")
SRC=$W/src
mkdir -p "$SRC" "$W/logs" "$W/local" "$W/dfs-data" "$W/dfs-cache" "$W/dfs-mnt" \
    "$W/sshfs-remote" "$W/sshfs-mnt" "$W/ssh"
RAW=$W/raw.txt
: >"$RAW"
say "temp dir $W ($(df -P "$W" | awk 'NR == 2 { print $1 }'))"

HELPER=$W/helper.py
cat >"$HELPER" <<'EOF'
# Small-file workloads in one process each; prints "ELAPSED <seconds>" (interpreter start
# excluded). Contents are checked after the clock stops.
import hashlib, os, sys, time

def names(n):
    return ["f%05d" % i for i in range(n)]

def create(src, d, n):
    data = open(src, "rb").read()
    assert len(data) == n * 4096, "source has the wrong size"
    mv = memoryview(data)
    paths = [d + "/" + x for x in names(n)]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    t0 = time.perf_counter()
    os.mkdir(d)
    for i, p in enumerate(paths):
        fd = os.open(p, flags, 0o644)
        if os.write(fd, mv[i * 4096:(i + 1) * 4096]) != 4096:
            sys.exit("short write on " + p)
        os.close(fd)
    print("ELAPSED %.6f" % (time.perf_counter() - t0))

def read(src, d, n):
    want = hashlib.sha256(open(src, "rb").read()).hexdigest()
    paths = [d + "/" + x for x in names(n)]
    chunks = []
    t0 = time.perf_counter()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        chunks.append(os.read(fd, 8192))
        os.close(fd)
    el = time.perf_counter() - t0
    if hashlib.sha256(b"".join(chunks)).hexdigest() != want:
        bad = sum(1 for c in chunks if len(c) != 4096)
        sys.exit("contents read back differ from what was written (%d files of the wrong size)" % bad)
    print("ELAPSED %.6f" % el)

def stat(d, n):
    t0 = time.perf_counter()
    got = 0
    for x in os.listdir(d):
        st = os.lstat(d + "/" + x)
        if st.st_size == 4096:
            got += 1
    el = time.perf_counter() - t0
    if got != n:
        sys.exit("stat saw %d files of 4096 bytes, expected %d" % (got, n))
    print("ELAPSED %.6f" % el)

cmd = sys.argv[1]
if cmd == "create":
    create(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif cmd == "read":
    read(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif cmd == "stat":
    stat(sys.argv[2], int(sys.argv[3]))
else:
    sys.exit("unknown command " + cmd)
EOF

say "making the source data: ${SEQ_MIB} MiB random file, $NFILES x 4 KiB random contents"
head -c $((SEQ_MIB * 1048576)) /dev/urandom >"$SRC/seq.bin"
head -c $((NFILES * 4096)) /dev/urandom >"$SRC/small.bin"

# The tarball: a real source tree installed by Debian packages, deterministic (sorted,
# fixed owner and mtime). In --quick mode only its first TREE_MAX_FILES entries by name.
[ -d "$TREE" ] || die "BENCH_TREE=$TREE is not a directory"
tree_parent=$(dirname "$TREE")
tree_base=$(basename "$TREE")
# Symlinks are left out (27 of ~8,700 entries in /usr/include): sshfs cannot set the times
# of a symlink (SFTP setstat follows it), so tar fails on sshfs with "Cannot utime" when
# the link is extracted before its target.
(cd "$tree_parent" && find "$tree_base" ! -type l -print0 | sort -z) >"$W/tree.list"
if [ "$TREE_MAX_FILES" -gt 0 ]; then
    head -z -n "$TREE_MAX_FILES" "$W/tree.list" >"$W/tree.list.cut" && mv "$W/tree.list.cut" "$W/tree.list"
fi
tar -C "$tree_parent" --null --no-recursion -T "$W/tree.list" --mtime=@1700000000 --owner=0 \
    --group=0 --numeric-owner --format=gnu -cf "$SRC/tree.tar"
read -r TREE_FILES TREE_DIRS TREE_MB < <(tar -tvf "$SRC/tree.tar" |
    awk '/^d/ { d++; next } { f++; s += $3 } END { printf "%d %d %.0f\n", f, d, s / 1e6 }')
TREE_SHA=$(sha256sum "$SRC/tree.tar" | cut -c1-16)
tree_cut=""
if [ "$TREE_MAX_FILES" -gt 0 ]; then tree_cut=" (first $TREE_MAX_FILES entries)"; fi
TREE_DESC="$TREE$tree_cut, symlinks left out: $TREE_FILES files in $TREE_DIRS directories, $TREE_MB MB (tar sha256 $TREE_SHA…)"
say "tarball: $TREE_DESC"

# The git repository: one commit per tree (Python stdlib, Python and Perl modules from
# Debian packages; no __pycache__, no static libraries), fixed author and dates, packed.
rw=$W/repo-work
mkdir -p "$rw"
git -C "$rw" init -q -b main
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench \
    GIT_COMMITTER_EMAIL=bench@localhost
n=0
for d in "${REPO_DIRS[@]}"; do
    [ -d "$d" ] || continue
    n=$((n + 1))
    tar -C / --exclude=__pycache__ --exclude='config-3*' --exclude='*.a' -cf - "${d#/}" | tar -C "$rw" -xf -
    git -C "$rw" add -A
    GIT_AUTHOR_DATE="2024-01-0${n}T00:00:00Z" GIT_COMMITTER_DATE="2024-01-0${n}T00:00:00Z" \
        git -C "$rw" commit -q -m "import $d"
done
[ "$n" -gt 0 ] || die "none of ${REPO_DIRS[*]} exists: no source for the git repository"
git -C "$rw" gc -q
git clone -q --bare --no-local "$rw" "$SRC/repo.git"
git -C "$SRC/repo.git" gc -q
REPO_FILES=$(git -C "$rw" ls-files | wc -l)
REPO_MB=$(du -sm "$SRC/repo.git" | cut -f1)
REPO_DESC="$n commits of ${REPO_DIRS[*]}: $REPO_FILES files, packed repository $REPO_MB MB"
rm -rf "$rw"
say "git repository: $REPO_DESC"

# ---------------------------------------------------------------------------------------
# Daemons

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
    echo "==== $(date -Is) starting dfs-server" >>"$W/logs/dfs-server.log"
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
    local i mnt=$W/dfs-mnt
    echo "==== $(date -Is) starting dfs-mount" >>"$W/logs/dfs-mount.log"
    setsid "$BIN/dfs-mount" "127.0.0.1:$DFS_PORT" "$mnt" --cache-dir "$W/dfs-cache" \
        </dev/null >>"$W/logs/dfs-mount.log" 2>&1 &
    DFS_MOUNT_PID=$!
    disown "$DFS_MOUNT_PID" # no "Killed" notices: the cold step kills it on purpose
    for ((i = 0; i < 300; i++)); do
        if is_mounted "$mnt" && timeout 5 ls -A "$mnt" >/dev/null 2>&1; then return 0; fi
        alive "$DFS_MOUNT_PID" || break
        sleep 0.1
    done
    tail -n 20 "$W/logs/dfs-mount.log" >&2
    die "dfs-mount did not mount $mnt"
}

# Cold client: kill -9 (nothing unstored may reach the server later), detach the mount,
# wipe the cache, drop the page cache, mount again.
dfs_cold() {
    if [ -n "$DFS_MOUNT_PID" ]; then stop_pid "$DFS_MOUNT_PID" KILL 10; fi
    DFS_MOUNT_PID=""
    force_unmount "$W/dfs-mnt"
    is_mounted "$W/dfs-mnt" && die "cannot unmount $W/dfs-mnt"
    rm -rf "$W/dfs-cache"
    mkdir -p "$W/dfs-cache"
    drop_caches
    start_dfs_mount
}

SSH_PORT=$(free_port)
start_sshd() {
    local i s=$W/ssh
    ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$s/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$s/id_ed25519"
    cp "$s/id_ed25519.pub" "$s/authorized_keys"
    chmod 600 "$s/authorized_keys"
    cat >"$s/sshd_config" <<EOT
# Throwaway sshd of scripts/bench.sh: loopback only, key auth only.
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $s/host_ed25519
PidFile $s/sshd.pid
AuthorizedKeysFile $s/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
Subsystem sftp $SFTP_SERVER
EOT
    if [ ! -d /run/sshd ]; then
        mkdir -p /run/sshd && chmod 755 /run/sshd && MADE_RUN_SSHD=1
    fi
    /usr/sbin/sshd -t -f "$s/sshd_config" || die "sshd rejects $s/sshd_config"
    /usr/sbin/sshd -D -e -f "$s/sshd_config" </dev/null >>"$W/logs/sshd.log" 2>&1 &
    SSHD_PID=$!
    disown "$SSHD_PID"
    for ((i = 0; i < 100; i++)); do
        if timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && IFS= read -r l <&3 && [[ $l == SSH-* ]]' _ "$SSH_PORT" 2>/dev/null; then
            return 0
        fi
        alive "$SSHD_PID" || break
        sleep 0.1
    done
    tail -n 20 "$W/logs/sshd.log" >&2
    die "sshd did not answer on 127.0.0.1:$SSH_PORT"
}

# sshfs with its default options; only how to reach and authenticate to the sshd is set.
start_sshfs() {
    local i mnt=$W/sshfs-mnt
    echo "==== $(date -Is) starting sshfs" >>"$W/logs/sshfs.log"
    sshfs -f "root@127.0.0.1:$W/sshfs-remote" "$mnt" -F /dev/null \
        -o "IdentityFile=$W/ssh/id_ed25519,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,port=$SSH_PORT,BatchMode=yes,LogLevel=ERROR" \
        </dev/null >>"$W/logs/sshfs.log" 2>&1 &
    SSHFS_PID=$!
    disown "$SSHFS_PID"
    for ((i = 0; i < 200; i++)); do
        if is_mounted "$mnt" && timeout 5 ls -A "$mnt" >/dev/null 2>&1; then return 0; fi
        alive "$SSHFS_PID" || break
        sleep 0.1
    done
    tail -n 20 "$W/logs/sshfs.log" >&2
    die "sshfs did not mount $mnt"
}

sshfs_cold() {
    if is_mounted "$W/sshfs-mnt"; then
        umount "$W/sshfs-mnt" 2>/dev/null || fusermount3 -u "$W/sshfs-mnt" 2>/dev/null || true
    fi
    if [ -n "$SSHFS_PID" ]; then stop_pid "$SSHFS_PID" TERM 10; fi
    SSHFS_PID=""
    force_unmount "$W/sshfs-mnt"
    is_mounted "$W/sshfs-mnt" && die "cannot unmount $W/sshfs-mnt"
    drop_caches
    start_sshfs
}

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

go_cold() {
    case $1 in
    local) drop_caches ;;
    dfs) dfs_cold ;;
    sshfs) sshfs_cold ;;
    esac
}

say "starting dfs-server on 127.0.0.1:$DFS_PORT, dfs-mount at $W/dfs-mnt"
start_dfs_server
start_dfs_mount
say "starting sshd on 127.0.0.1:$SSH_PORT, sshfs at $W/sshfs-mnt"
start_sshd
start_sshfs

declare -A DIR_OF=([local]=$W/local [dfs]=$W/dfs-mnt [sshfs]=$W/sshfs-mnt)

# ---------------------------------------------------------------------------------------
# Measuring

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of pid $1, in clock ticks (0 if gone)
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    awk '{ print $12 + $13 }' <<<"$s"
}

# timed TARGET WORKLOAD RUN CMD...: runs CMD under a timeout and appends
# "target workload run seconds dfs-mount-cpu-s dfs-server-cpu-s" to the raw file. The
# seconds are the command's own "ELAPSED s" line if it prints one, else the wall time.
timed() {
    local tgt=$1 wl=$2 run=$3
    shift 3
    local t0 t1 us secs m0=0 s0=0 m1=0 s1=0 rc=0 out el
    if [ "$tgt" = dfs ]; then
        m0=$(cpu_ticks "$DFS_MOUNT_PID")
        s0=$(cpu_ticks "$DFS_SERVER_PID")
    fi
    t0=$EPOCHREALTIME
    out=$(timeout -k 10 "$STEP_TIMEOUT" "$@" 2>"$W/logs/step.err") || rc=$?
    t1=$EPOCHREALTIME
    if [ "$tgt" = dfs ]; then
        m1=$(cpu_ticks "$DFS_MOUNT_PID")
        s1=$(cpu_ticks "$DFS_SERVER_PID")
    fi
    if [ "$rc" -ne 0 ]; then
        FAILURES=$((FAILURES + 1))
        {
            echo "bench: FAILED: $wl on $tgt (run $run), exit $rc$([ "$rc" = 124 ] && echo " (timed out after $STEP_TIMEOUT s)"): $*"
            sed 's/^/    /' "$W/logs/step.err" | tail -n 10
        } | tee -a "$W/logs/failures.log" >&2
        echo "$tgt $wl $run FAIL 0 0" >>"$RAW"
        return 1
    fi
    el=$(sed -n 's/^ELAPSED //p' <<<"$out")
    if [ -n "$el" ]; then
        secs=$el
    else
        us=$((${t1/./} - ${t0/./}))
        secs=$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))
    fi
    echo "$tgt $wl $run $secs $(((m1 - m0) * 1000 / CLK_TCK)) $(((s1 - s0) * 1000 / CLK_TCK))" >>"$RAW"
    printf '  %-6s %-16s %10s s\n' "$tgt" "$wl" "$secs"
}

warm_source() { cat "$@" >/dev/null; }

run_target() {
    local tgt=$1 run=$2 d
    d=${DIR_OF[$tgt]}/r$run
    say "run $run/$RUNS on $tgt"
    mkdir -p "$d"

    warm_source "$SRC/seq.bin"
    timed "$tgt" seq_write "$run" dd if="$SRC/seq.bin" of="$d/seq.bin" bs=1M conv=fsync status=none || true
    go_cold "$tgt"
    timed "$tgt" seq_first_cold "$run" dd if="$d/seq.bin" of=/dev/null bs=4k count=1 status=none || true
    go_cold "$tgt"
    timed "$tgt" seq_read_cold "$run" dd if="$d/seq.bin" of=/dev/null bs=1M status=none || true
    timed "$tgt" seq_read_warm "$run" dd if="$d/seq.bin" of=/dev/null bs=1M status=none || true
    if [ "$run" = 1 ] && ! cmp -s "$SRC/seq.bin" "$d/seq.bin"; then
        FAILURES=$((FAILURES + 1))
        echo "bench: FAILED: $d/seq.bin on $tgt differs from what was written" | tee -a "$W/logs/failures.log" >&2
    fi

    timed "$tgt" small_create "$run" "$PY" "$HELPER" create "$SRC/small.bin" "$d/small" "$NFILES" || true
    go_cold "$tgt"
    timed "$tgt" small_read_cold "$run" "$PY" "$HELPER" read "$SRC/small.bin" "$d/small" "$NFILES" || true
    timed "$tgt" small_read_warm "$run" "$PY" "$HELPER" read "$SRC/small.bin" "$d/small" "$NFILES" || true
    go_cold "$tgt"
    timed "$tgt" stat_cold "$run" "$PY" "$HELPER" stat "$d/small" "$NFILES" || true
    timed "$tgt" stat_warm "$run" "$PY" "$HELPER" stat "$d/small" "$NFILES" || true

    warm_source "$SRC/tree.tar"
    mkdir -p "$d/untar"
    timed "$tgt" untar "$run" tar --no-same-owner -xf "$SRC/tree.tar" -C "$d/untar" || true
    find "$SRC/repo.git" -type f -exec cat {} + >/dev/null
    timed "$tgt" git_clone "$run" git clone -q --no-hardlinks "file://$SRC/repo.git" "$d/clone" || true
    timed "$tgt" rm_clone "$run" rm -rf "$d/clone" || true
    timed "$tgt" rm_untar "$run" rm -rf "$d/untar" || true

    # Not timed: make room for the next run.
    rm -rf "$d" || warn "could not remove $d"
}

TARGETS=(local dfs sshfs)
T_START=$(date +%s)
for ((run = 1; run <= RUNS; run++)); do
    # The targets take turns going first, so slow drifts of a shared machine spread out.
    for ((k = 0; k < 3; k++)); do
        run_target "${TARGETS[$(((run - 1 + k) % 3))]}" "$run"
    done
done
T_SECS=$(($(date +%s) - T_START))

# ---------------------------------------------------------------------------------------
# Report

OUT=$RESULTS_DIR/bench-$STAMP.md
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
    echo "# dfs benchmark $(date -Is)"
    echo
    echo "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), temp dir on $(df -P "$W" | awk 'NR == 2 { print $1 }')"
    echo "- dfs: commit $rev, binaries $BIN; sshfs $(sshfs --version 2>&1 | awk '/SSHFS version/ { print $3 }'), $(ssh -V 2>&1 | cut -d, -f1)"
    echo "- runs: $RUNS$([ "$QUICK" = 1 ] && echo " (--quick)"), measuring took $T_SECS s"
    echo "- seq file: $SEQ_MIB MiB random; small files: $NFILES x 4 KiB random in one directory"
    echo "- untar: $TREE_DESC"
    echo "- git clone: $REPO_DESC"
    echo
} >"$OUT"
SEQ_MIB=$SEQ_MIB NFILES=$NFILES RUNS=$RUNS "$PY" - "$RAW" >>"$OUT" <<'EOF'
import os, statistics, sys
from collections import defaultdict

raw = defaultdict(list)      # (target, workload) -> [seconds]
fails = defaultdict(int)
cpu = defaultdict(list)      # workload -> [(wall, mount cpu, server cpu)] for dfs
for line in open(sys.argv[1]):
    t, w, r, s, mc, sc = line.split()
    if s == "FAIL":
        fails[(t, w)] += 1
        continue
    raw[(t, w)].append(float(s))
    if t == "dfs":
        cpu[w].append((float(s), int(mc) / 1000, int(sc) / 1000))

seq_mb = int(os.environ["SEQ_MIB"]) * 1048576 / 1e6
nf = int(os.environ["NFILES"])
runs = int(os.environ["RUNS"])
seq = "%d MiB" % int(os.environ["SEQ_MIB"])
# key, label, unit, amount per run (None: the figure is the time), target (peer, ratio)
W = [
    ("seq_write", "seq write %s, fsync+close" % seq, "MB/s", seq_mb, ("sshfs", 2.0)),
    ("seq_first_cold", "first 4 KiB of it, cold", "s", None, None),
    ("seq_read_cold", "seq read %s, cold" % seq, "MB/s", seq_mb, ("sshfs", 2.0)),
    ("seq_read_warm", "seq read %s, warm" % seq, "MB/s", seq_mb, ("local", 0.9)),
    ("small_create", "create %d x 4 KiB" % nf, "files/s", nf, ("sshfs", 3.0)),
    ("small_read_cold", "read %d x 4 KiB, cold" % nf, "files/s", nf, None),
    ("small_read_warm", "read %d x 4 KiB, warm" % nf, "files/s", nf, ("local", 0.5)),
    ("stat_cold", "stat %d files, cold" % nf, "files/s", nf, None),
    ("stat_warm", "stat %d files, warm" % nf, "files/s", nf, None),
    ("untar", "untar source tarball", "s", None, ("sshfs", 3.0)),
    ("git_clone", "git clone (local repo)", "s", None, ("sshfs", 3.0)),
    ("rm_clone", "rm -rf the clone", "s", None, None),
    ("rm_untar", "rm -rf the untarred tree", "s", None, None),
]

def fig(amount, secs):
    return amount / secs if amount is not None else secs

def num(x):
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    if x >= 0.1:
        return "%.2f" % x
    return "%.1g" % x if x < 0.001 else "%.4f" % x

def summary(t, key, amount):
    xs = [fig(amount, s) for s in raw.get((t, key), [])]
    if not xs:
        return None, "FAIL" if fails[(t, key)] else "—"
    m = statistics.median(xs)
    half = (max(xs) - min(xs)) / 2 / m * 100 if m else 0
    cell = "%s ±%.0f%%" % (num(m), half)
    if fails[(t, key)]:
        cell += " (%d failed)" % fails[(t, key)]
    return m, cell

def ratio(amount, dfs, peer):
    if dfs is None or peer is None:
        return None
    # > 1 means dfs is better: throughput dfs/peer, time peer/dfs
    return dfs / peer if amount is not None else peer / dfs

print("Figures: median of %d runs ±half the min–max range (relative to the median). "
      "Ratios: > 1 means dfs is better than the peer (throughput dfs/peer; for times, peer/dfs)." % runs)
print()
print("| workload | unit | local | dfs | sshfs | dfs/local | dfs/sshfs | target met? |")
print("|---|---|---:|---:|---:|---:|---:|---|")
met = missed = 0
for key, label, unit, amount, target in W:
    lm, lc = summary("local", key, amount)
    dm, dc = summary("dfs", key, amount)
    sm, sc = summary("sshfs", key, amount)
    rl, rs = ratio(amount, dm, lm), ratio(amount, dm, sm)
    fr = lambda r: "—" if r is None else ("%.2f×" if r >= 0.1 else "%.3f×") % r
    tcell = ""
    if target:
        peer, want = target
        r = rl if peer == "local" else rs
        if r is None:
            tcell = "≥ %g× %s: n/a" % (want, peer)
            missed += 1
        elif r >= want:
            tcell = "≥ %g× %s: **yes**" % (want, peer)
            met += 1
        else:
            tcell = "≥ %g× %s: no (%.0f%% of it)" % (want, peer, r / want * 100)
            missed += 1
    unit_s = unit if amount is not None else "s (time)"
    print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (label, unit_s, lc, dc, sc, fr(rl), fr(rs), tcell))
print()
print("Targets met: %d of %d." % (met, met + missed))
print()
print("Where dfs spends CPU (medians over runs, seconds): wall time of the step, CPU of "
      "dfs-mount and of dfs-server during it (2 cores: 2 s of CPU per wall second is the ceiling).")
print()
print("| workload | wall s | dfs-mount CPU s | dfs-server CPU s |")
print("|---|---:|---:|---:|")
for key, label, unit, amount, target in W:
    xs = cpu.get(key)
    if not xs:
        continue
    med = lambda i: statistics.median(x[i] for x in xs)
    print("| %s | %.2f | %.2f | %.2f |" % (label, med(0), med(1), med(2)))
print()
print("Raw seconds per run (target workload: run1 run2 …):")
print()
print("```")
for key, label, unit, amount, target in W:
    for t in ("local", "dfs", "sshfs"):
        xs = raw.get((t, key), [])
        print("%-6s %-16s %s%s" % (t, key, " ".join("%.3f" % x for x in xs),
                                   "  (%d failed)" % fails[(t, key)] if fails[(t, key)] else ""))
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
cp "$RAW" "$RESULTS_DIR/bench-$STAMP.raw"

echo
cat "$OUT"
echo
say "results saved to $OUT (raw: $RESULTS_DIR/bench-$STAMP.raw)"
if [ "$FAILURES" -gt 0 ]; then
    die "$FAILURES step(s) failed (see above)"
fi
