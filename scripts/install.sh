#!/usr/bin/env bash
# Installs dfs on this host (as root):
#   PREFIX/bin/{dfs-server,dfs-mount,dfs}             the binaries (built first unless --no-build)
#   SBINDIR/mount.fuse.dfs -> PREFIX/bin/dfs-mount     the helper mount(8) runs for -t fuse.dfs
#   UNITDIR/dfs-server@.service, mnt-dfs.{mount,automount}.example   systemd units
#   PREFIX/share/man/man1/*.1                          man pages
#   PREFIX/share/{bash-completion/completions,zsh/site-functions,fish/vendor_completions.d}
#   /etc/dfs/example.toml                              an example node's settings (kept if present)
#
#   scripts/install.sh [--prefix DIR] [--sbin-dir DIR] [--unit-dir DIR] [--etc-dir DIR] [--no-build]
#
# Defaults: PREFIX=/usr/local, SBINDIR=/sbin (where mount(8) looks for mount.TYPE
# helpers), UNITDIR=PREFIX/lib/systemd/system (on systemd's search path), ETCDIR=/etc/dfs.
# mount(8) finds /sbin/mount.fuse.dfs before it would fall back to fuse3's mount.fuse3,
# which would run a program named after the subtype, `dfs` (the command line tool, not
# the mount): so the helper is installed under its full name. Installing again upgrades
# the binaries in place (running daemons keep the old ones until restarted).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/usr/local
SBINDIR=/sbin
UNITDIR=
ETCDIR=/etc/dfs
BUILD=1
die() {
    echo "install.sh: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --sbin-dir) SBINDIR=${2:?--sbin-dir needs a directory}; shift 2 ;;
    --unit-dir) UNITDIR=${2:?--unit-dir needs a directory}; shift 2 ;;
    --etc-dir) ETCDIR=${2:?--etc-dir needs a directory}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $PREFIX == /* ]] || PREFIX=$PWD/$PREFIX
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --workspace --bins)
fi
for b in dfs-server dfs-mount dfs; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (build with cargo build --release, or drop --no-build)"
done

install -d "$PREFIX/bin" "$SBINDIR" "$UNITDIR" "$ETCDIR"
for b in dfs-server dfs-mount dfs; do
    # Into a new file, then renamed: a running binary is never overwritten in place.
    install -m 0755 "$BIN/$b" "$PREFIX/bin/.$b.new"
    mv -f "$PREFIX/bin/.$b.new" "$PREFIX/bin/$b"
done
ln -sfn "$PREFIX/bin/dfs-mount" "$SBINDIR/mount.fuse.dfs"

for unit in dfs-server@.service mnt-dfs.mount mnt-dfs.automount; do
    dest=$UNITDIR/$unit
    # The mount examples name a made-up server: installed as examples, not as units.
    case "$unit" in mnt-dfs.*) dest=$UNITDIR/$unit.example ;; esac
    sed "s#@BINDIR@#$PREFIX/bin#g" "$ROOT/dist/systemd/$unit" >"$dest"
    chmod 0644 "$dest"
done
[ -e "$ETCDIR/example.toml" ] || install -m 0644 "$ROOT/dist/dfs-server.example.toml" "$ETCDIR/example.toml"

docs=$(mktemp -d)
trap 'rm -rf "$docs"' EXIT
for b in dfs-server dfs-mount dfs; do
    DFS_GENERATE_DOCS=$docs "$PREFIX/bin/$b"
done
install -d "$PREFIX/share/man/man1" "$PREFIX/share/bash-completion/completions" \
    "$PREFIX/share/zsh/site-functions" "$PREFIX/share/fish/vendor_completions.d"
install -m 0644 "$docs"/man1/*.1 "$PREFIX/share/man/man1/"
install -m 0644 "$docs"/bash/* "$PREFIX/share/bash-completion/completions/"
install -m 0644 "$docs"/zsh/* "$PREFIX/share/zsh/site-functions/"
install -m 0644 "$docs"/fish/* "$PREFIX/share/fish/vendor_completions.d/"

echo "install.sh: installed dfs-server, dfs-mount, dfs in $PREFIX/bin; $SBINDIR/mount.fuse.dfs;"
echo "  units in $UNITDIR; man pages and completions under $PREFIX/share"
