#!/usr/bin/env bash
# One command from a fresh clone to the whole test suite: install, check services, lint,
# type-check and run every test. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
bash scripts/system-packages.sh
bash scripts/services.sh
ruff check src tests
ruff format --check src tests bench
mypy
python -m pytest -p no:cacheprovider "$@"
