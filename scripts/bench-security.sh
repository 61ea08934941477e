#!/usr/bin/env bash
# The cost of the security service, side by side in one run: an open cell (no protection)
# against a realm at integrity and at privacy. Per column: a fresh server and two mounts;
# `cp` of 1 GiB of random data into one mount, `cat` of it cold on the other, 1000 x 4 KiB
# files written on one and read cold on the other. Run as root; prints one line per column.
# Noisy on a shared machine: run it twice and compare within a run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq bc; }
cargo build --release --workspace --bins
B=$PWD/target/release
T=$(mktemp -d /var/tmp/seccost.XXXX)
cleanup() { for m in $T/*/mnt; do umount -l "$m" 2>/dev/null || true; done; pkill -f "$T" 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
head -c 1G /dev/urandom > $T/src
python3 -c "import os; [open('$T/s%d'%i,'wb').write(os.urandom(4096)) for i in range(1000)]"
port=$(( 20000 + RANDOM % 20000 ))
run() { # name realm? protection
  local name=$1 realm=$2 prot=$3; local d=$T/$name; mkdir -p $d/mnt $d/mnt2 $d/cache $d/cache2
  port=$((port+1))
  if [ "$realm" = yes ]; then echo pw | $B/dfs-server init --realm COST.DFS --data-dir $d/data --password-stdin --iterations 1000 >/dev/null 2>&1; fi
  $B/dfs-server --data-dir $d/data --listen 127.0.0.1:$port > $d/server.log 2>&1 &
  sleep 0.7
  local extra=(); [ "$realm" = yes ] && extra=(--protection $prot)
  $B/dfs-mount 127.0.0.1:$port $d/mnt --cache-dir $d/cache "${extra[@]}" > $d/mount.log 2>&1 &
  $B/dfs-mount 127.0.0.1:$port $d/mnt2 --cache-dir $d/cache2 "${extra[@]}" > $d/mount2.log 2>&1 &
  sleep 1.5
  if [ "$realm" = yes ]; then export DFS_CCACHE=$d/cc; echo pw | $B/dfs login admin --password-stdin --server 127.0.0.1:$port >/dev/null; fi
  local t0=$(date +%s.%N); cp $T/src $d/mnt/big; local t1=$(date +%s.%N)
  cat $d/mnt2/big > /dev/null; local t2=$(date +%s.%N)
  mkdir $d/mnt/small; local t3=$(date +%s.%N)
  python3 -c "
import shutil
for i in range(1000): shutil.copyfile('$T/s%d'%i, '$d/mnt/small/s%d'%i)"
  local t4=$(date +%s.%N)
  python3 -c "
for i in range(1000): open('$d/mnt2/small/s%d'%i,'rb').read()"
  local t5=$(date +%s.%N)
  printf "%-22s store 1GiB %6.2fs  cold fetch %6.2fs  1000 small write %6.2fs  cold read %6.2fs\n" "$name" \
    $(echo "$t1-$t0" | bc) $(echo "$t2-$t1" | bc) $(echo "$t4-$t3" | bc) $(echo "$t5-$t4" | bc)
  umount -l $d/mnt $d/mnt2; pkill -f "$d/" || true; sleep 0.5
}
run open-cell no -
run realm-integrity yes integrity
run realm-privacy yes privacy
