#!/usr/bin/env bash
# The floor of FUSE on this machine: warm open+read+close of small files through
# dfs-fuse-floor, a FUSE file system that answers every request at once (passthrough, and
# plain with the kernel's page cache), against the same files on the local disk, in turns.
# What no FUSE daemon here can beat, so what bounds dfs's warm small-file read.
#
#   scripts/bench-fuse-floor.sh [--rounds N] [--files N] [--no-build]
#
# Needs root (FUSE passthrough needs CAP_SYS_ADMIN) and python3. Everything lives in one
# temp dir under $BENCH_TMPDIR (default /var/tmp) that a trap removes, after unmounting.
# Prints each pass (files/s, open/read/close µs) and the medians with the ratio to local.
set -Eeuo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3
FILES=3000
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --files) FILES=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench-fuse-floor: run as root" >&2; exit 1; }
BIN=${DFS_BIN_DIR:-$ROOT/target/release}
if [ "$BUILD" = 1 ]; then
    cargo build --release --manifest-path "$ROOT/Cargo.toml" -p dfs-fuse --bin dfs-fuse-floor
fi

W=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/dfs-fuse-floor.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    PID=
    if mountpoint -q "$W/mnt" 2>/dev/null; then umount -l "$W/mnt" || true; fi
}
trap 'cleanup; rm -rf "$W"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$W/mnt" "$W/local"

cat >"$W/rd.py" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
to = tr = tc = 0.0
t0 = time.perf_counter()
for i in range(n):
    a = time.perf_counter(); fd = os.open(f"{d}/f{i}", os.O_RDONLY)
    b = time.perf_counter(); os.read(fd, 8192)
    c = time.perf_counter(); os.close(fd); e = time.perf_counter()
    to += b - a; tr += c - b; tc += e - c
T = time.perf_counter() - t0
print(f"{n / T:.0f} {to / n * 1e6:.1f} {tr / n * 1e6:.1f} {tc / n * 1e6:.1f}")
PY
for ((i = 0; i < FILES; i++)); do head -c 4096 /dev/urandom >"$W/local/f$i"; done
cat "$W"/local/* >/dev/null

RESULTS=$W/results
pass() { # target dir
    read -r rate o r c < <(python3 "$W/rd.py" "$2" "$FILES")
    printf '  %-12s %7s files/s  open %5s  read %5s  close %5s us\n' "$1" "$rate" "$o" "$r" "$c"
    echo "$1 $rate" >>"$RESULTS"
}
floor() { # mode
    "$BIN/dfs-fuse-floor" "$W/mnt" --backing "$W/backing" --files "$FILES" --mode "$1" \
        >"$W/floor-$1.log" 2>&1 &
    PID=$!
    for ((i = 0; i < 200; i++)); do mountpoint -q "$W/mnt" && break; sleep 0.05; done
    mountpoint -q "$W/mnt" || { cat "$W/floor-$1.log" >&2; exit 1; }
    python3 "$W/rd.py" "$W/mnt" "$FILES" >/dev/null # the first, cold pass
    for _ in 1 2 3 4; do pass "$1" "$W/mnt"; done
    cleanup
    grep '^requests:' "$W/floor-$1.log" | sed "s/^/  $1 /"
}
for ((round = 1; round <= ROUNDS; round++)); do
    echo "round $round/$ROUNDS"
    pass local "$W/local"; pass local "$W/local"
    floor passthrough
    pass local "$W/local"; pass local "$W/local"
    floor plain
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    t, r = line.split()
    by.setdefault(t, []).append(float(r))
local = statistics.median(by["local"])
print(f"\nmedians over {len(by['local'])} local passes and {len(by['plain'])} of each FUSE mode:")
for t in ("local", "passthrough", "plain"):
    m = statistics.median(by[t])
    print(f"  {t:12s} {m:8.0f} files/s  {m / local:5.2f}x local")
PY
