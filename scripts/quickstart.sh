#!/usr/bin/env bash
# Quickstart: builds dfs, starts one dfs-server and one dfs-mount in the background, and
# tells you where the mount, the data and the logs are.
#
#   scripts/quickstart.sh          start (or reuse what a previous run started)
#   scripts/quickstart.sh status   show what is running
#   scripts/quickstart.sh stop     unmount and stop the server (data is kept)
#
# Settings (environment):
#   DFS_HOME   state directory            (default: $HOME/.dfs-quickstart)
#   DFS_PORT   server port on 127.0.0.1   (default: 7070)
#   DFS_MOUNT  mount point                (default: $DFS_HOME/mnt)
#   RUST_LOG   log level of both daemons  (default: info)
#   DFS_REALM  realm created on first start (default: DFS.LOCAL); DFS_OPEN=1 skips the
#              realm and runs an open cell (no authentication)
#   DFS_PRINCIPAL  your principal in it   (default: $USER)
#
# Running it again is safe: a live server or mount is reused; a dead one (stale pid file,
# "Transport endpoint is not connected") is cleaned up and started again.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DFS_HOME=${DFS_HOME:-$HOME/.dfs-quickstart}
DFS_PORT=${DFS_PORT:-7070}
DFS_MOUNT=${DFS_MOUNT:-$DFS_HOME/mnt}
export RUST_LOG=${RUST_LOG:-info}

DATA=$DFS_HOME/data
CACHE=$DFS_HOME/cache
ADDR=127.0.0.1:$DFS_PORT
SERVER_PID=$DFS_HOME/server.pid
SERVER_LOG=$DFS_HOME/server.log
MOUNT_PID=$DFS_HOME/mount.pid
MOUNT_LOG=$DFS_HOME/mount.log
if [ -n "${DFS_BIN_DIR:-}" ]; then
    BIN=$DFS_BIN_DIR
else
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi

DFS_REALM=${DFS_REALM:-DFS.LOCAL}
DFS_PRINCIPAL=${DFS_PRINCIPAL:-${USER:-admin}}
PASSWORD_FILE=$DFS_HOME/password

say() { echo "quickstart: $*"; }
die() {
    echo "quickstart: $*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $*"
    fi
}

# The pid in pid file $1 if that process is alive and runs binary $2.
live_pid() {
    local file=$1 name=$2 pid exe
    [ -f "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A rebuilt binary shows as "NAME (deleted)" while the old process runs.
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    [ "${exe##*/}" = "$name" ] || return 1
    echo "$pid"
}

healthy() {
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
        IFS= read -r line <&3 || exit 1
        [[ $line == "HTTP/1.1 200"* ]]' _ "$DFS_PORT" 2>/dev/null
}

# Is anything mounted exactly at $DFS_MOUNT? (mountinfo escapes spaces as \040)
mounted() {
    local esc=${DFS_MOUNT// /\\040}
    M=$esc awk '$5 == ENVIRON["M"] { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# The fstype of the (last) mount at $DFS_MOUNT.
mount_fstype() {
    local esc=${DFS_MOUNT// /\\040}
    M=$esc awk '$5 == ENVIRON["M"] { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } }
        END { print t }' /proc/self/mountinfo
}

# Does the mount answer? (stat may answer from cached attributes even when the client is
# gone; reading the directory always asks it.)
mount_works() {
    timeout 5 ls -A -f "$DFS_MOUNT" >/dev/null 2>&1
}

unmount_stale() {
    say "clearing the stale mount at $DFS_MOUNT"
    if [ "$(id -u)" -eq 0 ]; then
        umount -l "$DFS_MOUNT" 2>/dev/null || fusermount3 -uz "$DFS_MOUNT"
    else
        fusermount3 -uz "$DFS_MOUNT"
    fi
}

# Waits up to $2 seconds for command $1 to succeed.
wait_for() {
    local what=$1 secs=$2 i
    for ((i = 0; i < secs * 10; i++)); do
        if $what; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Sends SIGTERM to $1, waits up to $2 s, then SIGKILL.
stop_pid() {
    local pid=$1 secs=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "pid $pid did not exit within $secs s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

install_fuse() {
    if ! command -v fusermount3 >/dev/null 2>&1; then
        say "installing fuse3 (fusermount3)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3
    fi
    [ -e /dev/fuse ] || die "/dev/fuse is missing: this machine cannot mount FUSE file systems"
}

build() {
    say "building release binaries (cargo build --release --workspace --bins)"
    (cd "$ROOT" && cargo build --release --workspace --bins)
    [ -x "$BIN/dfs-server" ] && [ -x "$BIN/dfs-mount" ] ||
        die "no dfs-server/dfs-mount in $BIN after the build"
}

start_server() {
    local pid
    if pid=$(live_pid "$SERVER_PID" dfs-server); then
        if wait_for healthy 20; then
            say "server already running (pid $pid) on $ADDR: reusing it"
            return
        fi
        say "server pid $pid does not answer on $ADDR; restarting it"
        stop_pid "$pid" 10
    elif [ -f "$SERVER_PID" ]; then
        say "removing stale server pid file (process $(cat "$SERVER_PID" 2>/dev/null) is gone)"
    fi
    rm -f "$SERVER_PID"
    if healthy; then
        die "something else already answers on $ADDR; stop it or set DFS_PORT"
    fi
    mkdir -p "$DATA"
    echo "==== $(date -Is) quickstart: starting dfs-server" >>"$SERVER_LOG"
    setsid "$BIN/dfs-server" --data-dir "$DATA" --listen "$ADDR" \
        </dev/null >>"$SERVER_LOG" 2>&1 &
    echo $! >"$SERVER_PID"
    if ! wait_for healthy 20; then
        tail -n 30 "$SERVER_LOG" >&2 || true
        die "dfs-server did not answer GET /v1/health on $ADDR within 20 s (log: $SERVER_LOG)"
    fi
    say "server started (pid $(cat "$SERVER_PID")) on $ADDR"
}

start_mount() {
    local pid
    if pid=$(live_pid "$MOUNT_PID" dfs-mount); then
        if wait_for mounted 20 && mount_works; then
            say "mount already running (pid $pid) at $DFS_MOUNT: reusing it"
            return
        fi
        say "dfs-mount pid $pid has no working mount at $DFS_MOUNT; restarting it"
        stop_pid "$pid" 10
    elif [ -f "$MOUNT_PID" ]; then
        say "removing stale mount pid file (process $(cat "$MOUNT_PID" 2>/dev/null) is gone)"
    fi
    rm -f "$MOUNT_PID"
    if mounted; then
        case "$(mount_fstype)" in
        fuse*) ;;
        *) die "$DFS_MOUNT is the mount point of a $(mount_fstype) file system; set DFS_MOUNT" ;;
        esac
        if mount_works; then
            die "a working FUSE mount that this script did not start is at $DFS_MOUNT; unmount it or set DFS_MOUNT"
        fi
        unmount_stale
    fi
    mkdir -p "$DFS_MOUNT" "$CACHE"
    echo "==== $(date -Is) quickstart: starting dfs-mount" >>"$MOUNT_LOG"
    setsid "$BIN/dfs-mount" "$ADDR" "$DFS_MOUNT" --cache-dir "$CACHE" \
        </dev/null >>"$MOUNT_LOG" 2>&1 &
    echo $! >"$MOUNT_PID"
    if ! wait_for mounted 20; then
        tail -n 30 "$MOUNT_LOG" >&2 || true
        die "dfs-mount did not mount $DFS_MOUNT within 20 s (log: $MOUNT_LOG)"
    fi
    say "mounted $ADDR at $DFS_MOUNT (pid $(cat "$MOUNT_PID"))"
}

# The first start creates a realm whose admin principal is you (acting as your uid), with
# a random password kept in $PASSWORD_FILE (0600).
init_realm() {
    [ "${DFS_OPEN:-0}" = 1 ] && return
    [ -f "$DATA/realm/realm.conf" ] && return
    mkdir -p "$DATA"
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$PASSWORD_FILE" && echo >>"$PASSWORD_FILE")
    "$BIN/dfs-server" init --realm "$DFS_REALM" --data-dir "$DATA" --admin "$DFS_PRINCIPAL" \
        --admin-uid "$(id -u)" --admin-gid "$(id -g)" --password-stdin <"$PASSWORD_FILE" >/dev/null
    say "created realm $DFS_REALM; admin principal $DFS_PRINCIPAL (password in $PASSWORD_FILE)"
}

login() {
    [ -f "$DATA/realm/realm.conf" ] && [ -f "$PASSWORD_FILE" ] || return 0
    DFS_SERVER=$ADDR "$BIN/dfs" login "$DFS_PRINCIPAL" --password-stdin <"$PASSWORD_FILE" >/dev/null &&
        say "logged in as $DFS_PRINCIPAL@$DFS_REALM (dfs whoami; again: dfs login $DFS_PRINCIPAL --server $ADDR)"
}

do_start() {
    install_fuse
    build
    mkdir -p "$DFS_HOME"
    init_realm
    start_server
    start_mount
    login
    cat <<EOT

dfs is running.
  mount:   $DFS_MOUNT        (try: ls $DFS_MOUNT; echo hello > $DFS_MOUNT/hello.txt)
  server:  $ADDR   data in $DATA
  cache:   $CACHE
  logs:    $SERVER_LOG
           $MOUNT_LOG
  stop:    $0 stop     (unmounts, stops the server; data is kept)
EOT
    if [ -f "$DATA/realm/realm.conf" ]; then
        cat <<EOT
  realm:   $(sed -n 's/^realm = //p' "$DATA/realm/realm.conf"); you are $DFS_PRINCIPAL (password in $PASSWORD_FILE)
           log in again: $BIN/dfs login $DFS_PRINCIPAL --server $ADDR
           add a user:   $BIN/dfs user add NAME --uid UID
EOT
    fi
}

do_stop() {
    local pid
    if pid=$(live_pid "$MOUNT_PID" dfs-mount); then
        say "unmounting $DFS_MOUNT (SIGTERM to dfs-mount pid $pid; dirty files are stored first)"
        stop_pid "$pid" 30
    fi
    rm -f "$MOUNT_PID"
    if mounted; then
        unmount_stale
    fi
    if pid=$(live_pid "$SERVER_PID" dfs-server); then
        say "stopping dfs-server (pid $pid)"
        stop_pid "$pid" 20
    fi
    rm -f "$SERVER_PID"
    say "stopped; data kept in $DATA (remove $DFS_HOME to start afresh)"
}

do_status() {
    local pid
    if pid=$(live_pid "$SERVER_PID" dfs-server); then
        if healthy; then s="healthy"; else s="not answering"; fi
        say "server: pid $pid on $ADDR, $s"
    else
        say "server: not running"
    fi
    if pid=$(live_pid "$MOUNT_PID" dfs-mount); then
        if mounted && mount_works; then s="mounted at $DFS_MOUNT"; else s="not answering at $DFS_MOUNT"; fi
        say "mount: pid $pid, $s"
    else
        if mounted; then say "mount: stale mount at $DFS_MOUNT (client gone)"; else say "mount: not running"; fi
    fi
}

case "${1:-start}" in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) die "usage: $0 [start|stop|status]" ;;
esac
