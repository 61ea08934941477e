#!/usr/bin/env bash
# Unmounts the quickstart mount and stops its server (same as `scripts/quickstart.sh stop`).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/quickstart.sh" stop
