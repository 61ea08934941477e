#!/usr/bin/env bash
# Benchmark of the dfs lock service against a real dfs-server (release build):
#   1. lock+unlock pairs per second with 1, 8 and 64 concurrent clients (distinct client
#      ids, PAIR_SECS seconds each);
#   2. server resident memory (VmRSS) and size of locks.redb while holding 10 thousand,
#      1 million and 10 million distinct locked file ids (loaded with acquire-many in
#      batches of 1000). Memory should stay flat while the database grows.
# Loading stops at LOAD_MAX_SECS in total; the table then says how far it got.
#
# Usage: scripts/bench-locks.sh            (env: PAIR_SECS=10 LOAD_MAX_SECS=900
#                                           LEVELS="10000 1000000 10000000" POOL=1024)
set -euo pipefail

PAIR_SECS=${PAIR_SECS:-10}
LOAD_MAX_SECS=${LOAD_MAX_SECS:-900}
LEVELS=${LEVELS:-"10000 1000000 10000000"}
POOL=${POOL:-1024}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

work=$(mktemp -d "${TMPDIR:-/tmp}/dfs-bench-locks.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "building (release)..." >&2
cargo build --release -q -p dfs-server --bin dfs-server --bin dfs-lock-bench
target=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="${target:-$root/target}/release"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
# A long lease: the loaded locks must stay held while the benchmark runs, unrenewed.
RUST_LOG=warn "$bin/dfs-server" --data-dir "$work/data" --listen "$addr" \
    --lock-pool-size "$POOL" --lock-lease-secs 86400 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
    curl -fsS "http://$addr/v1/health" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.05
done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
# The lock table's file and its write-ahead log (recent commits live in the log until a
# checkpoint writes them into the file).
db_mib() { du -ck "$work/data/locks.redb" "$work/data/locks.redb.wal" 2>/dev/null | awk '/total$/ {printf "%.1f", $1/1024}'; }

echo "lock+unlock throughput ($PAIR_SECS s each, pool $POOL, $(nproc) cores):"
printf '  %-8s %12s\n' clients pairs/s
for c in 1 8 64; do
    out=$(timeout $((PAIR_SECS + 60)) "$bin/dfs-lock-bench" --addr "$addr" pairs --clients "$c" --secs "$PAIR_SECS")
    printf '  %-8s %12s\n' "$c" "$(sed -n 's/.*pairs_per_sec \([0-9]*\).*/\1/p' <<<"$out")"
done

echo
echo "memory while holding many locks (loading stops after $LOAD_MAX_SECS s in total):"
printf '  %-12s %-12s %12s %14s %10s\n' target held "VmRSS MiB" "locks.redb MiB" "load s"
printf '  %-12s %-12s %12s %14s %10s\n' "(idle)" 0 "$(awk "BEGIN{printf \"%.1f\", $(rss_kib)/1024}")" "$(db_mib)" -
held=0
started=$(date +%s)
for level in $LEVELS; do
    left=$((LOAD_MAX_SECS - ($(date +%s) - started)))
    if ((left <= 0)); then
        printf '  %-12s %s\n' "$level" "not reached: out of time"
        continue
    fi
    t0=$(date +%s.%N)
    out=$(timeout $((left + 60)) "$bin/dfs-lock-bench" --addr "$addr" load \
        --from $((1000000000 + held)) --count $((level - held)) --batch 1000 --conns 4 \
        --max-secs "$left")
    t1=$(date +%s.%N)
    got=$(sed -n 's/^loaded \([0-9]*\) .*/\1/p' <<<"$out")
    held=$((held + got))
    note=""
    ((held < level)) && note="  (stopped: time limit)"
    printf '  %-12s %-12s %12s %14s %10s%s\n' "$level" "$held" \
        "$(awk "BEGIN{printf \"%.1f\", $(rss_kib)/1024}")" "$(db_mib)" \
        "$(awk "BEGIN{printf \"%.0f\", $t1 - $t0}")" "$note"
done

# Sanity: the server still answers and lists the held locks.
curl -fsS "http://$addr/v1/health" >/dev/null
