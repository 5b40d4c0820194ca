#!/usr/bin/env bash
# Set up, then run the whole test suite (unit and integration; root needed
# for the integration tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

# The node VM's image (ZFS modules compiled for its kernel: ~10 minutes of
# CPU) is built in the background, at the lowest priority, while the host's
# tests run: tests/nodevm comes after them and its fixture waits on the
# build's lock. Only for a whole run as root (arguments that are all
# options); a run of chosen tests builds it when it needs it.
build=
if [ "$(id -u)" = 0 ] && ! printf '%s\n' "$@" | grep -q '^[^-]'; then
    cache=${OSCTLD_TEST_CACHE:-/var/cache/osctld-test}
    mkdir -p "$cache"
    echo "test: building the node VM image in the background (log: $cache/nodevm-build.log)"
    setsid nice -n 19 ionice -c 3 .venv/bin/python -m tests.helpers.nodevm \
        > "$cache/nodevm-build.log" 2>&1 &
    build=$!
fi
rc=0
.venv/bin/python -m pytest -ra "$@" tests || rc=$?
if [ -n "$build" ] && kill -0 "$build" 2>/dev/null; then
    kill -- -"$build" 2>/dev/null || true  # pytest ended first (interrupted, or -x)
fi
exit $rc
