#!/usr/bin/env bash
# Benchmark of the replicated directory (#23): what consensus costs a writer, and how long
# a failover takes. One run, side by side, on one host (nodes on 127.x loopback
# addresses), through real FUSE mounts:
#
#   scripts/bench-directory.sh [--runs N] [--files N] [--big-mib N] [--kills N] [--no-build]
#
#   --runs N     rounds of the three setups, their order rotating (default 3)
#   --files N    files of 4 KiB created per setup (default 2000)
#   --big-mib N  size of the one big file written per setup, in MiB (default 1024)
#   --kills N    kill -9 of the leader for the failover figure (default 5)
#   --no-build   use the release binaries already built
#
# Setups: one standalone node; three nodes with the directory on one (as before #23:
# `--roles directory,data` + two `data`); three nodes that all hold a replica of the
# directory's Raft log (`--directory-voters`). Every three-node setup keeps R=3 copies of
# each blob (W=2). Failover: a three-replica directory, the leader killed with SIGKILL
# N times (it restarts and catches up between kills); the time from the kill until some
# node acknowledges a mutation (polled every 20 ms).
#
# The figures come from ignored tests of the harness (`tests/tests/bench_directory.rs`,
# `tests/tests/directory_raft.rs::measure_failover`), which start and clean up their own
# servers and mounts in temp dirs. Needs root (FUSE). Results: target/bench/.
set -Eeuo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3 FILES=2000 BIG=1024 KILLS=5 BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --big-mib) BIG=$2; shift 2 ;;
    --kills) KILLS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-directory: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "bench-directory: needs root (FUSE mounts)" >&2; exit 1; }
cd "$ROOT"
[ "$BUILD" = 1 ] && cargo build --release --workspace --bins
mkdir -p target/bench
OUT=target/bench/bench-directory-$(date +%Y%m%d-%H%M%S).md
{
    echo "# dfs replicated-directory benchmark $(date -Is)"
    echo
    echo "- machine: $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)"
    echo "- $RUNS runs of $FILES x 4 KiB creates and one $BIG MiB write (close included) per setup"
    echo
} >"$OUT"
BENCH_RUNS=$RUNS BENCH_FILES=$FILES BENCH_BIG_MIB=$BIG \
    cargo test --release -q -p dfs-tests --test bench_directory -- --ignored --nocapture --test-threads 1 \
    2>&1 | grep -E '^(\||run |one-directory|raft-directory)' | tee -a "$OUT"
echo | tee -a "$OUT"
FAILOVER_ROUNDS=$KILLS \
    cargo test --release -q -p dfs-tests --test directory_raft measure_failover -- --ignored --nocapture \
    2>&1 | grep -E '^(round|failover over)' | tee -a "$OUT"
echo "bench-directory: results in $OUT"
