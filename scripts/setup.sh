#!/usr/bin/env bash
# Install what osctld needs on a Debian 12 node (as root) and a virtualenv
# with osctld and osctl in ./.venv. Safe to run again: it installs only what
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    lxc lxc-dev lxcfs uidmap busybox-static debootstrap btrfs-progs iproute2
    nix-bin qemu-system-x86 qemu-utils pkg-config gcc tar
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c 'import osctld, osctl, lxc, pyroute2, pytest' 2>/dev/null; then
    echo "setup: installing osctld into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
fi
# Byte-compile the tree, as an installed package is: an editable install does
# not, and under PYTHONDONTWRITEBYTECODE every osctl run would compile its
# modules again (20 to 50 ms of each call on a 2-core node).
.venv/bin/python -m compileall -q osctl osctld >/dev/null
