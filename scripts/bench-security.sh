#!/usr/bin/env bash
# The cost of the security service, side by side in one run. Run as root; noisy on a
# shared machine: compare within one run, and run it twice.
#
#   scripts/bench-security.sh                 # the protection levels (below), this build
#   scripts/bench-security.sh --before REV    # what a change cost: REV's build against
#                                             # this one, in a realm at integrity
#   scripts/bench-security.sh --rounds N      # rounds of the --before comparison (3)
#
# Levels: an open cell (no protection) against a realm at integrity and at privacy. Per
# column a fresh server and two mounts; `cp` of 1 GiB of random data into one mount, `cat`
# of it cold on the other, 1000 x 4 KiB files written on one and read cold on the other.
#
# --before REV: REV is checked out into a temporary worktree and built there (its own
# target dir, target/bench-before/, kept between runs); then, in alternating rounds, each
# build runs a realm at integrity with a mount logged in as admin, and measures a create
# loop (2,000 files of 4 KiB, one process, each closed: stored and durable) and a stat
# loop (the 2,000 files stat'ed by a fresh mount, so every lookup reaches the server:
# client proof, ticket check, permission checks on the way) in operations per second.
# Issue #21's fixes were measured against 6e2d5e1 (the commit before them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
before=""
rounds=3
while [ $# -gt 0 ]; do
    case "$1" in
        --before) before=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "bench-security.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
missing=()
command -v bc >/dev/null || missing+=(bc)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
cargo build --release --workspace --bins
B=$PWD/target/release
T=$(mktemp -d /var/tmp/seccost.XXXX)
cleanup() {
    for m in "$T"/*/mnt*; do umount -l "$m" 2>/dev/null || true; done
    pkill -f "$T" 2>/dev/null || true
    [ -n "$before" ] && git worktree remove --force "$T/src" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
port=$(( 20000 + RANDOM % 20000 ))

# Starts a server of binaries $1 in dir $2 (a realm if $3 = yes); sets $port.
start_server() {
    local bin=$1 d=$2 realm=$3
    port=$((port+1))
    mkdir -p "$d"
    if [ "$realm" = yes ]; then
        echo pw | "$bin/dfs-server" init --realm COST.DFS --data-dir "$d/data" --password-stdin --iterations 1000 >/dev/null 2>&1
    fi
    "$bin/dfs-server" --data-dir "$d/data" --listen 127.0.0.1:$port > "$d/server.log" 2>&1 &
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "server did not start: $d/server.log" >&2; exit 1
}

# Mounts the server with binaries $1 at $2 with cache $3 and options $4...
mount_at() {
    local bin=$1 mnt=$2 cache=$3; shift 3
    mkdir -p "$mnt" "$cache"
    "$bin/dfs-mount" 127.0.0.1:$port "$mnt" --cache-dir "$cache" "$@" > "$mnt.log" 2>&1 &
    # Up when the kernel lists it: in a realm an anonymous caller may not even stat the root
    # (--anonymous none), and the login comes after the mount.
    for _ in $(seq 1 100); do grep -qs " $mnt fuse" /proc/self/mounts && return; sleep 0.1; done
    echo "mount did not come up: $mnt.log" >&2; exit 1
}

levels() {
    head -c 1G /dev/urandom > "$T/src"
    python3 -c "import os; [open('$T/s%d'%i,'wb').write(os.urandom(4096)) for i in range(1000)]"
    run() { # name realm? protection
        local name=$1 realm=$2 prot=$3; local d=$T/$name
        start_server "$B" "$d" "$realm"
        local extra=(); [ "$realm" = yes ] && extra=(--protection "$prot")
        mount_at "$B" "$d/mnt" "$d/cache" "${extra[@]}"
        mount_at "$B" "$d/mnt2" "$d/cache2" "${extra[@]}"
        if [ "$realm" = yes ]; then export DFS_CCACHE=$d/cc; echo pw | "$B/dfs" login admin --password-stdin --server 127.0.0.1:$port >/dev/null; fi
        local t0 t1 t2 t3 t4 t5
        t0=$(date +%s.%N); cp "$T/src" "$d/mnt/big"; t1=$(date +%s.%N)
        cat "$d/mnt2/big" > /dev/null; t2=$(date +%s.%N)
        mkdir "$d/mnt/small"; t3=$(date +%s.%N)
        python3 -c "
import shutil
for i in range(1000): shutil.copyfile('$T/s%d'%i, '$d/mnt/small/s%d'%i)"
        t4=$(date +%s.%N)
        python3 -c "
for i in range(1000): open('$d/mnt2/small/s%d'%i,'rb').read()"
        t5=$(date +%s.%N)
        printf "%-22s store 1GiB %6.2fs  cold fetch %6.2fs  1000 small write %6.2fs  cold read %6.2fs\n" "$name" \
            "$(echo "$t1-$t0" | bc)" "$(echo "$t2-$t1" | bc)" "$(echo "$t4-$t3" | bc)" "$(echo "$t5-$t4" | bc)"
        umount -l "$d/mnt" "$d/mnt2"; pkill -f "$d/" || true; sleep 0.5
    }
    run open-cell no -
    run realm-integrity yes integrity
    run realm-privacy yes privacy
}

# One round of the --before comparison with the binaries in $1, named $2.
round() {
    local bin=$1 name=$2 r=$3; local d=$T/$name-$r
    start_server "$bin" "$d" yes
    mount_at "$bin" "$d/mnt" "$d/cache"
    export DFS_CCACHE=$d/cc
    echo pw | "$bin/dfs" login admin --password-stdin --server 127.0.0.1:$port >/dev/null
    mkdir "$d/mnt/loop"
    local t0 t1 t2
    t0=$(date +%s.%N)
    python3 -c "
import os
buf = os.urandom(4096)
for i in range(2000):
    with open('$d/mnt/loop/f%d' % i, 'wb') as f: f.write(buf)"
    t1=$(date +%s.%N)
    local creates
    creates=$(echo "2000/($t1-$t0)" | bc -l)
    umount -l "$d/mnt"; sleep 0.3
    mount_at "$bin" "$d/mnt2" "$d/cache2"
    echo pw | "$bin/dfs" login admin --password-stdin --server 127.0.0.1:$port >/dev/null
    t1=$(date +%s.%N)
    python3 -c "
import os
for i in range(2000): os.stat('$d/mnt2/loop/f%d' % i)"
    t2=$(date +%s.%N)
    printf "%-7s round %d: create %7.0f files/s   cold stat %7.0f files/s\n" "$name" "$r" \
        "$creates" "$(echo "2000/($t2-$t1)" | bc -l)"
    umount -l "$d/mnt2"; pkill -f "$d/" || true; sleep 0.5
}

if [ -z "$before" ]; then
    levels
    exit 0
fi
git worktree add --detach "$T/src" "$before" >/dev/null 2>&1
CARGO_TARGET_DIR=$PWD/target/bench-before cargo build --release --workspace --bins --manifest-path "$T/src/Cargo.toml"
OLD=$PWD/target/bench-before/release
echo "before: $before ($(git log -1 --format=%h "$before")); after: $(git log -1 --format=%h HEAD)$(git diff --quiet || echo ' + uncommitted changes')"
for r in $(seq 1 "$rounds"); do
    round "$OLD" before "$r"
    round "$B" after "$r"
done
