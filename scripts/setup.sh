#!/usr/bin/env bash
# Install what osctld needs on a Debian 12 node (as root) and a virtualenv
# with osctld and osctl in ./.venv. Safe to run again: it installs only what
# is missing. With --test, also what only the test suite uses.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    lxc lxc-dev lxcfs uidmap busybox-static debootstrap btrfs-progs iproute2
    qemu-system-x86 qemu-utils pkg-config gcc tar
    openssl  # vm passwd hashes the password (openssl passwd -6); optional on Debian 12
    openssh-server openssh-client rsync  # moving servers between nodes (ct send, vm migrate)
    etcd-server  # the cluster's store (osctld.yml cluster:); each cluster node runs a member
    python3-venv python3-dev  # on a plain Debian 12: the venv, and headers to build python-lxc
)
TEST_PACKAGES=(
    nix-bin  # nix-instantiate parse-checks nix/
    ifupdown  # its ifup/ifdown check distconfig's Debian output, in test namespaces only
    dbus-daemon  # a private bus for NetworkManager in the same tests
    libc6-dev  # a static libc for the seccomp test program (tests/helpers/syscalls.c)
)
testing=false
[ "${1:-}" = --test ] && testing=true
$testing && PACKAGES+=("${TEST_PACKAGES[@]}")

# The node VM tests (tests/nodevm) build OpenZFS's modules from zfs-dkms of
# bookworm-backports contrib, downloaded and unpacked, not installed: the
# suite is added to apt's sources (backports are installed only when asked
# for by name), and nothing else comes from it.
BACKPORTS=/etc/apt/sources.list.d/osctld-test-zfs.sources
if $testing && [ ! -f "$BACKPORTS" ]; then
    echo "setup: apt: bookworm-backports contrib in $BACKPORTS (the node VM's ZFS module source)"
    cat > "$BACKPORTS" <<'SOURCES'
# osctld test suite (scripts/setup.sh --test): zfs-dkms for the node VM.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -qq
fi

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

# Debian's etcd-server starts and enables a single-member etcd on localhost
# with its own data: a cluster member is configured by the operator (README,
# "Cluster"), and tests start their own members, so the packaged one is not
# left running.
if command -v systemctl >/dev/null && systemctl is-enabled -q etcd 2>/dev/null; then
    echo "setup: disabling the packaged etcd service (cluster members are configured by hand)"
    systemctl disable -q etcd
    [ -d /run/systemd/system ] && systemctl stop etcd  # only where systemd runs
fi

# The user other nodes' osctld log in as to send servers here (ct send): no
# password ("*", not locked: sshd refuses a locked account), a shell for the
# forced command sshd runs, and keys only from the file osctld generates
# (README: the sshd "Match User osctld-recv" block).
if ! getent passwd osctld-recv >/dev/null; then
    echo "setup: creating the system user osctld-recv"
    useradd --system --user-group --create-home --home-dir /var/lib/osctld-recv \
        --shell /bin/sh --password '*' osctld-recv
fi

# ...and sshd's block for it (Debian's sshd_config includes sshd_config.d).
if [ -d /etc/ssh/sshd_config.d ] && ! cmp -s scripts/sshd_osctld.conf /etc/ssh/sshd_config.d/osctld.conf; then
    echo "setup: sshd: the osctld-recv block in /etc/ssh/sshd_config.d/osctld.conf"
    install -m 0644 scripts/sshd_osctld.conf /etc/ssh/sshd_config.d/osctld.conf
    if command -v systemctl >/dev/null && systemctl is-active -q ssh 2>/dev/null; then
        systemctl reload ssh
    fi
fi

# Other distributions' network tools, for the tests that run distconfig's
# output with them: unpacked, not installed, because ifupdown-ng conflicts
# with ifupdown and an installed NetworkManager could manage the node's own
# network.
TOOLS=${OSCTLD_TEST_CACHE:-/var/cache/osctld-test}
unpack() {  # unpack DIR FILE-IT-PROVIDES PACKAGE...
    local dir=$TOOLS/$1 provides=$2 deb
    shift 2
    [ -e "$dir/$provides" ] && return
    echo "setup: unpacking $* into $dir"
    mkdir -p "$dir"
    deb=$(mktemp -d)
    (cd "$deb" && apt-get download -qq "$@")
    for f in "$deb"/*.deb; do dpkg -x "$f" "$dir"; done
    rm -rf "$deb"
}
if $testing; then
    unpack ifupdown-ng sbin/ifup ifupdown-ng
    unpack network-manager usr/sbin/NetworkManager network-manager libndp0
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Editable, but as a plain path in a .pth file ("compat"): setuptools' default
# editable install puts an import finder in front of every import, which
# cost each osctl call 13 ms or more before it said a word.
finder=$(compgen -G '.venv/lib/python3*/site-packages/__editable___osctld_*_finder.py' || true)
if [ -n "$finder" ] || ! .venv/bin/python -c 'import osctld, osctl, lxc, pyroute2, prometheus_client, etcd3gw, cffi, pytest, mypy' 2>/dev/null; then
    echo "setup: installing osctld into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat
fi
# Byte-compile the tree, as an installed package is: an editable install does
# not, and under PYTHONDONTWRITEBYTECODE every osctl run would compile its
# modules again (20 to 50 ms of each call on a 2-core node).
.venv/bin/python -m compileall -q osctl osctld >/dev/null
