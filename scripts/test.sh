#!/usr/bin/env bash
# Set up, then run the whole test suite (unit and integration; root needed
# for the integration tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -ra "$@" tests
