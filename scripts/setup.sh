#!/usr/bin/env bash
# Install what osctld needs on a Debian 12 node (as root) and a virtualenv
# with osctld and osctl in ./.venv. Safe to run again: it installs only what
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    lxc lxc-dev lxcfs uidmap busybox-static debootstrap btrfs-progs iproute2
    nix-bin qemu-system-x86 qemu-utils pkg-config gcc tar
    ifupdown  # its ifup/ifdown check distconfig's Debian output, in test namespaces only
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

# Alpine's ifupdown-ng conflicts with ifupdown: it is unpacked, not installed,
# for the test that runs distconfig's Alpine output with it.
IFUPDOWN_NG=${OSCTLD_TEST_CACHE:-/var/cache/osctld-test}/ifupdown-ng
if [ ! -x "$IFUPDOWN_NG/sbin/ifup" ]; then
    echo "setup: unpacking ifupdown-ng into $IFUPDOWN_NG"
    deb=$(mktemp -d)
    (cd "$deb" && apt-get download -qq ifupdown-ng 2>/dev/null)
    dpkg -x "$deb"/ifupdown-ng_*.deb "$IFUPDOWN_NG"
    rm -rf "$deb"
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
