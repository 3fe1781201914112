#!/usr/bin/env bash
# Set up, fetch the cached assets (model + data, offline after the first run), run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/fetch_assets.py --link assets
.venv/bin/python -m pytest -q -m "not slow" "$@"
