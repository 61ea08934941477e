#!/usr/bin/env bash
# Quickstart: builds dfs, starts a local cluster of dfs-server nodes and one dfs-mount in
# the background, and tells you where the mount, the data and the logs are.
#
#   scripts/quickstart.sh          start (or reuse what a previous run started)
#   scripts/quickstart.sh status   show each node and the mount, then `dfs status` of it
#   scripts/quickstart.sh stop     unmount and stop every node (data is kept)
#
# The cluster (DFS_NODES=3): node 0 runs the directory (namespace, locks, callbacks, the
# realm) and stores blobs, on 127.0.0.1:$DFS_PORT; node N (N >= 1) only stores blobs, on
# 127.0.0.(N+1):$DFS_PORT (same port, another loopback address; gossip is UDP on that
# port). Every blob is kept on 3 nodes (2 must have it before a close returns), so the
# mount goes on working with one node down. The nodes share the key in
# $DFS_HOME/cluster.key (0600, made on the first start). The mount talks to node 0.
#
#   node 0: data $DFS_HOME/data    log $DFS_HOME/server.log    pid $DFS_HOME/server.pid
#   node N: data $DFS_HOME/nodeN   log $DFS_HOME/server-N.log  pid $DFS_HOME/server-N.pid
#
# Settings (environment):
#   DFS_HOME   state directory            (default: $HOME/.dfs-quickstart)
#   DFS_PORT   server port                (default: 7070)
#   DFS_MOUNT  mount point                (default: $DFS_HOME/mnt)
#   DFS_NODES  number of server nodes     (default: 3; 1 = one server, no replication,
#              as before clusters existed: the same data dir, log and pid file as node 0)
#   RUST_LOG   log level of the daemons   (default: info)
#   DFS_REALM  realm created on first start (default: DFS.LOCAL); DFS_OPEN=1 skips the
#              realm and runs an open cell (no authentication)
#   DFS_PRINCIPAL  your principal in it   (default: $USER)
#   DFS_ANONYMOUS  what users who have not logged in may do in the realm: none (the
#              server's default), read, or write (as the modes allow); node 0 is
#              started with --anonymous $DFS_ANONYMOUS when it is set
#
# Running it again is safe: a live node or mount is reused; a dead one (stale pid file,
# "Transport endpoint is not connected") is cleaned up and started again. A node running
# with other options than this run wants (e.g. after DFS_NODES changed) is restarted, and
# nodes beyond DFS_NODES are stopped (their data is kept).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DFS_HOME=${DFS_HOME:-$HOME/.dfs-quickstart}
DFS_PORT=${DFS_PORT:-7070}
DFS_MOUNT=${DFS_MOUNT:-$DFS_HOME/mnt}
DFS_NODES=${DFS_NODES:-3}
# Absolute paths: they go into pid files' processes and are compared with /proc.
[[ $DFS_HOME == /* ]] || DFS_HOME=$PWD/$DFS_HOME
[[ $DFS_MOUNT == /* ]] || DFS_MOUNT=$PWD/$DFS_MOUNT
export RUST_LOG=${RUST_LOG:-info}

# Node 0 keeps the paths a single-server quickstart used, so an existing $DFS_HOME (its
# namespace, blobs and realm) becomes node 0 of the cluster.
DATA=$DFS_HOME/data
CACHE=$DFS_HOME/cache
ADDR=127.0.0.1:$DFS_PORT
CLUSTER_KEY=$DFS_HOME/cluster.key
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

[[ $DFS_PORT =~ ^[1-9][0-9]*$ ]] && [ "$DFS_PORT" -le 65535 ] ||
    die "DFS_PORT must be a port number (1-65535), not '$DFS_PORT'"
[[ $DFS_NODES =~ ^[1-9][0-9]*$ ]] && [ "$DFS_NODES" -le 254 ] ||
    die "DFS_NODES must be a number of nodes (1-254), not '$DFS_NODES'"

# Node $1: its address, data dir, log and pid file.
node_host() { echo "127.0.0.$(($1 + 1))"; }
node_addr() { echo "$(node_host "$1"):$DFS_PORT"; }
node_data() { if [ "$1" -eq 0 ]; then echo "$DATA"; else echo "$DFS_HOME/node$1"; fi; }
node_log() { if [ "$1" -eq 0 ]; then echo "$DFS_HOME/server.log"; else echo "$DFS_HOME/server-$1.log"; fi; }
node_pidfile() { if [ "$1" -eq 0 ]; then echo "$DFS_HOME/server.pid"; else echo "$DFS_HOME/server-$1.pid"; fi; }
node_roles() {
    if [ "$DFS_NODES" -eq 1 ] && [ "$1" -eq 0 ]; then
        echo "single server"
    elif [ "$1" -eq 0 ]; then
        echo "directory,data"
    else
        echo "data"
    fi
}

# The dfs-server arguments of node $1 (after the program name), one per line.
node_args() {
    local i=$1 j peers=()
    printf '%s\n' --data-dir "$(node_data "$i")" --listen "$(node_addr "$i")"
    if [ "$i" -eq 0 ] && [ -n "${DFS_ANONYMOUS:-}" ]; then
        printf '%s\n' --anonymous "$DFS_ANONYMOUS"
    fi
    [ "$DFS_NODES" -gt 1 ] || return 0
    for ((j = 0; j < DFS_NODES; j++)); do
        [ "$j" -eq "$i" ] || peers+=("$(node_addr "$j")")
    done
    printf '%s\n' --cluster-key-file "$CLUSTER_KEY" --peers "$(IFS=,; echo "${peers[*]}")" \
        --roles "$(if [ "$i" -eq 0 ]; then echo directory,data; else echo data; fi)"
}

# The arguments process $1 runs with (after the program name), one per line.
proc_args() {
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | tail -n +2
}

# The roles of the running node process $1, as node_roles names them.
proc_roles() {
    local roles
    roles=$(proc_args "$1" | sed -n '/^--roles$/{n;p;q}')
    if [ -n "$roles" ]; then
        echo "$roles"
    elif proc_args "$1" | grep -qx -- --cluster-key-file; then
        echo "directory,data"
    else
        echo "single server"
    fi
}

# Indexes of the nodes this run wants and of any other node with a pid file, ascending.
known_nodes() {
    local i f
    {
        for ((i = 0; i < DFS_NODES; i++)); do echo "$i"; done
        for f in "$DFS_HOME"/server-*.pid; do
            [ -e "$f" ] || continue
            i=${f##*/server-}
            i=${i%.pid}
            if [[ $i =~ ^[0-9]+$ ]]; then echo "$i"; fi
        done
    } | sort -n -u
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

# Does HOST $1 PORT $2 answer GET /v1/health with 200? (default: node 0)
healthy() {
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "GET /v1/health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$1" >&3
        IFS= read -r line <&3 || exit 1
        [[ $line == "HTTP/1.1 200"* ]]' _ "${1:-127.0.0.1}" "${2:-$DFS_PORT}" 2>/dev/null
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
# gone; reading the directory always asks it.) "Permission denied" is an answer too: a
# realm gives users who have not logged in nothing by default.
mount_works() {
    local out
    out=$(timeout 5 ls -A -f "$DFS_MOUNT" 2>&1 >/dev/null) && return 0
    [[ $out == *"Permission denied"* ]]
}

unmount_stale() {
    say "clearing the stale mount at $DFS_MOUNT"
    if [ "$(id -u)" -eq 0 ]; then
        umount -l "$DFS_MOUNT" 2>/dev/null || fusermount3 -uz "$DFS_MOUNT"
    else
        fusermount3 -uz "$DFS_MOUNT"
    fi
}

# Waits up to $2 seconds for command $1 (words split: "healthy 127.0.0.2 7070") to succeed.
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

# The cluster key all nodes share: 32 random bytes, 0600, made once.
make_cluster_key() {
    [ "$DFS_NODES" -gt 1 ] || return 0
    [ -s "$CLUSTER_KEY" ] && return
    (umask 077 && head -c 32 /dev/urandom >"$CLUSTER_KEY.tmp" && mv "$CLUSTER_KEY.tmp" "$CLUSTER_KEY")
    say "created the cluster key $CLUSTER_KEY"
}

# Starts node $1, or reuses it if it runs with the options this run wants and answers.
start_node() {
    local i=$1 pid addr host pidfile log args
    addr=$(node_addr "$i")
    host=$(node_host "$i")
    pidfile=$(node_pidfile "$i")
    log=$(node_log "$i")
    args=$(node_args "$i")
    if pid=$(live_pid "$pidfile" dfs-server); then
        if [ "$(proc_args "$pid")" != "$args" ]; then
            say "node $i (pid $pid) runs with other options than DFS_NODES=$DFS_NODES wants; restarting it"
            stop_pid "$pid" 20
        elif wait_for "healthy $host $DFS_PORT" 20; then
            say "node $i already running (pid $pid) on $addr: reusing it"
            return
        else
            say "node $i (pid $pid) does not answer on $addr; restarting it"
            stop_pid "$pid" 10
        fi
    elif [ -f "$pidfile" ]; then
        say "removing stale pid file of node $i (process $(cat "$pidfile" 2>/dev/null) is gone)"
    fi
    rm -f "$pidfile"
    if healthy "$host" "$DFS_PORT"; then
        die "something else already answers on $addr; stop it or set DFS_PORT"
    fi
    mkdir -p "$(node_data "$i")"
    echo "==== $(date -Is) quickstart: starting dfs-server node $i ($(node_roles "$i"))" >>"$log"
    local argv=()
    mapfile -t argv <<<"$args"
    setsid "$BIN/dfs-server" "${argv[@]}" </dev/null >>"$log" 2>&1 &
    echo $! >"$pidfile"
    STARTED+=("$i")
}

# Waits for node $1, just started, to answer.
wait_node() {
    local i=$1 pidfile log
    pidfile=$(node_pidfile "$i")
    log=$(node_log "$i")
    if ! wait_for "healthy $(node_host "$i") $DFS_PORT" 20; then
        tail -n 30 "$log" >&2 || true
        die "dfs-server node $i did not answer GET /v1/health on $(node_addr "$i") within 20 s (log: $log)"
    fi
    say "node $i ($(node_roles "$i")) started (pid $(cat "$pidfile")) on $(node_addr "$i")"
}

# Stops node $1 if it runs; removes its pid file.
stop_node() {
    local i=$1 pid pidfile
    pidfile=$(node_pidfile "$i")
    if pid=$(live_pid "$pidfile" dfs-server); then
        say "stopping dfs-server node $i (pid $pid)"
        stop_pid "$pid" 20
    fi
    rm -f "$pidfile"
}

# Starts (or reuses) nodes 0 .. DFS_NODES-1, then waits for the ones it started.
start_servers() {
    local i STARTED=()
    make_cluster_key
    # Nodes beyond DFS_NODES (from a run with more of them) are not part of this cluster.
    for i in $(known_nodes); do
        if [ "$i" -ge "$DFS_NODES" ] && [ -f "$(node_pidfile "$i")" ]; then
            say "node $i is not part of a $DFS_NODES-node cluster; stopping it (data kept in $(node_data "$i"))"
            stop_node "$i"
        fi
    done
    for ((i = 0; i < DFS_NODES; i++)); do start_node "$i"; done
    for i in "${STARTED[@]}"; do wait_node "$i"; done
}

# How many members the directory node sees alive (through `dfs status` of the mount).
alive_members() {
    "$BIN/dfs" status "$DFS_MOUNT" 2>/dev/null |
        grep -cE '^  [^ ]+ +(directory,data|data) +alive ' || true
}

# Gossip needs a moment after a start; waits up to 20 s for every node to be seen alive.
wait_members() {
    local n=0 deadline=$((SECONDS + 20))
    [ "$DFS_NODES" -gt 1 ] || return 0
    while :; do
        n=$(alive_members)
        [ "$n" -lt "$DFS_NODES" ] && [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.2
    done
    if [ "$n" -ge "$DFS_NODES" ]; then
        say "cluster: node 0 sees all $DFS_NODES nodes alive"
    else
        say "warning: node 0 sees $n of $DFS_NODES nodes alive after 20 s (see: $0 status; the server logs)"
    fi
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
    local i
    install_fuse
    build
    mkdir -p "$DFS_HOME"
    init_realm
    start_servers
    start_mount
    login
    wait_members
    echo
    echo "dfs is running ($DFS_NODES node$([ "$DFS_NODES" -eq 1 ] || echo s))."
    cat <<EOT
  mount:   $DFS_MOUNT        (try: ls $DFS_MOUNT; echo hello > $DFS_MOUNT/hello.txt)
           cache $CACHE, log $MOUNT_LOG
EOT
    for ((i = 0; i < DFS_NODES; i++)); do
        printf '  node %s:  %s (%s)\n           data %s, log %s\n' "$i" "$(node_addr "$i")" \
            "$(node_roles "$i")" "$(node_data "$i")" "$(node_log "$i")"
    done
    [ "$DFS_NODES" -eq 1 ] || echo "  key:     $CLUSTER_KEY (shared by the nodes)"
    cat <<EOT
  status:  $0 status
  stop:    $0 stop     (unmounts, stops the server$([ "$DFS_NODES" -eq 1 ] || echo s); data is kept)
EOT
    if [ -f "$DATA/realm/realm.conf" ]; then
        cat <<EOT
  realm:   $(sed -n 's/^realm = //p' "$DATA/realm/realm.conf"); you are $DFS_PRINCIPAL (password in $PASSWORD_FILE)
           log in again: $BIN/dfs login $DFS_PRINCIPAL --server $ADDR
           add a user:   $BIN/dfs user add NAME --uid UID
           users who have not logged in get $(
            case "${DFS_ANONYMOUS:-none}" in
            read) echo "read access (DFS_ANONYMOUS=read)" ;;
            write) echo "what the modes allow (DFS_ANONYMOUS=write)" ;;
            *) echo "nothing" ;;
            esac); to change it: DFS_ANONYMOUS=read $0
           (or write; restarts node 0 with dfs-server --anonymous read|write)
EOT
    fi
}

do_stop() {
    local pid i
    if pid=$(live_pid "$MOUNT_PID" dfs-mount); then
        say "unmounting $DFS_MOUNT (SIGTERM to dfs-mount pid $pid; dirty files are stored first)"
        stop_pid "$pid" 30
    fi
    rm -f "$MOUNT_PID"
    if mounted; then
        unmount_stale
    fi
    # Node 0 (the directory) first, while the data nodes can still take its last copies.
    for i in $(known_nodes); do stop_node "$i"; done
    say "stopped; data kept in $DFS_HOME (remove it to start afresh)"
}

do_status() {
    local pid i s
    for i in $(known_nodes); do
        if pid=$(live_pid "$(node_pidfile "$i")" dfs-server); then
            if healthy "$(node_host "$i")" "$DFS_PORT"; then s="healthy"; else s="not answering"; fi
            say "node $i ($(proc_roles "$pid")): pid $pid on $(node_addr "$i"), $s"
        else
            say "node $i ($(node_roles "$i")): not running"
        fi
    done
    if pid=$(live_pid "$MOUNT_PID" dfs-mount); then
        if mounted && mount_works; then s="mounted at $DFS_MOUNT"; else s="not answering at $DFS_MOUNT"; fi
        say "mount: pid $pid, $s"
        if [ "$s" = "mounted at $DFS_MOUNT" ] && [ -x "$BIN/dfs" ]; then
            echo
            "$BIN/dfs" status "$DFS_MOUNT" || true
        fi
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
