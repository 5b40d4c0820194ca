#!/usr/bin/env bash
# The main job: set up, start osctld with its default pool, create a user and
# a busybox container, start it, run a command in it, list containers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

OSCTL=.venv/bin/osctl
SOCKET=${OSCTLD_SOCKET:-/run/osctld/osctld.sock}
export OSCTLD_SOCKET=$SOCKET

if ! $OSCTL status >/dev/null 2>&1; then
    mkdir -p /var/log
    echo "demo: starting osctld (log: /var/log/osctld.log)"
    nohup .venv/bin/osctld >>/var/log/osctld.log 2>&1 &
    for _ in $(seq 100); do
        $OSCTL status >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
$OSCTL status

$OSCTL user show demo >/dev/null 2>&1 || $OSCTL user new demo
$OSCTL ct show demo1 >/dev/null 2>&1 || $OSCTL ct new demo1 --user demo --template busybox
[ "$($OSCTL -H -o state ct show demo1 | awk '{print $2}')" = running ] || $OSCTL ct start demo1
echo "demo: running a command inside demo1"
$OSCTL ct exec demo1 -- sh -c 'echo "hello from $(hostname), uid $(id -u) inside"; uname -sr'
$OSCTL ct ls
