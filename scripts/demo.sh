#!/usr/bin/env bash
# One command from a fresh clone to a running demo: install, build the demo, sync twice.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec backhaul demo "${1:-backhaul-demo}"
