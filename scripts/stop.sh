#!/usr/bin/env bash
# Unmounts the quickstart mount and stops every node of its cluster; data is kept (same as
# `scripts/quickstart.sh stop`; DFS_HOME and DFS_MOUNT apply here too).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/quickstart.sh" stop
