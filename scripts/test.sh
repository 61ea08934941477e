#!/usr/bin/env bash
# THE test command of dfs: installs what the tests need, builds the release binaries, then
# runs every test of the workspace (unit tests and the integration tests in tests/, which
# start real servers and real FUSE mounts).
#
# Needs root (the integration tests mount FUSE file systems) and /dev/fuse.
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -- --nocapture`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the integration tests mount FUSE file systems and must run as root" >&2
    exit 1
fi
if [ ! -e /dev/fuse ]; then
    echo "scripts/test.sh: /dev/fuse is missing; the integration tests need FUSE" >&2
    exit 1
fi

# Tools the tests use, by command -> Debian package.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need cc gcc # links the binaries and builds mimalloc's C sources
need fusermount3 fuse3
need git git
need python3 python3
need tar tar
need diff diffutils
need sha256sum coreutils
need bash bash
need flock util-linux
need mount mount # the WAL test on a small tmpfs (a full disk)
need umount mount
need setpriv util-linux
need iptables iptables
need setfacl acl # ACLs on the mounts
need setfattr attr # extended attributes on the mounts
need systemd-analyze systemd # checks the shipped units (systemd need not run)
need install coreutils # scripts/install.sh into a temporary prefix
if [ "${#missing[@]}" -gt 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

start=$(date +%s)
cargo build --release --workspace --bins
cargo test --release --workspace --no-fail-fast "$@"
# The cache's unit tests on the in-memory server (feature `testing`).
cargo test --release -p dfs-client --features testing --lib "$@"
echo "scripts/test.sh: all tests passed in $(( $(date +%s) - start )) s"
