"""A TEST DOUBLE of OpenVZ's ``vzctl``: no OpenVZ kernel runs here, so this
stands in for the few verbs ``osctl-convert vz6 migrate`` calls, on the files
of a test OpenVZ node (``$VZ_ROOT``: etc/vz/conf/CTID.conf, the private
area). ``start`` runs a process chrooted in the private area (it writes
/root/heartbeat, and /root/last-words when it is stopped) and puts the
container's IP_ADDRESS on this namespace's lo, as venet makes the node
answer for them; ``stop`` ends both, as vzctl stop takes the venet routes
away. ``set ... --save`` writes keys to the config; ``destroy`` removes the
private area and renames the config, as vzctl does. The standard library
only: it runs with the system Python, in the node's namespace."""

import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.environ["VZ_ROOT"]
LOOP = ("trap 'echo stopped > /root/last-words; exit 0' TERM; "
        "while :; do date +%s%N > /root/heartbeat; sleep 0.1; done")


def conf_path(ctid):
    return f"{ROOT}/etc/vz/conf/{ctid}.conf"


def conf(ctid):
    with open(conf_path(ctid)) as f:
        return dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', f.read(), re.M))


def private(ctid):
    return ROOT + conf(ctid)["VE_PRIVATE"].replace("$VEID", ctid)


def pidfile(ctid):
    return f"{ROOT}/var/run/vzctl-double-{ctid}.pid"


def pid(ctid):
    try:
        with open(pidfile(ctid)) as f:
            p = int(f.read())
        with open(f"/proc/{p}/stat") as f:
            gone = f.read().rpartition(")")[2].split()[0] in ("Z", "X")
        return None if gone else p
    except (OSError, ValueError, IndexError):
        return None


def addresses(ctid):
    return [a if "/" in a else a + ("/128" if ":" in a else "/32")
            for a in conf(ctid).get("IP_ADDRESS", "").split()]


def main(verb, ctid, *opts):
    if verb == "status":
        print(f"CTID {ctid} exist {'mounted running' if pid(ctid) else 'unmounted down'}")
    elif verb == "start":
        if conf(ctid).get("DISABLED") == "yes":
            sys.exit(f"CT {ctid} is disabled")
        if pid(ctid) is None:
            p = subprocess.Popen(["chroot", private(ctid), "/bin/sh", "-c", LOOP],
                                 start_new_session=True, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.makedirs(os.path.dirname(pidfile(ctid)), exist_ok=True)
            with open(pidfile(ctid), "w") as f:
                f.write(str(p.pid))
            for a in addresses(ctid):
                subprocess.run(["ip", "addr", "add", a, "dev", "lo"], check=True)
        print(f"Container {ctid} is started (a test double)")
    elif verb == "stop":
        p = pid(ctid)
        if p is not None:
            os.kill(p, signal.SIGTERM)
            while pid(ctid) is not None:
                time.sleep(0.02)
            os.unlink(pidfile(ctid))
        for a in addresses(ctid):
            subprocess.run(["ip", "addr", "del", a, "dev", "lo"], capture_output=True)
        print(f"Container {ctid} was stopped (a test double)")
    elif verb in ("mount", "umount"):
        pass
    elif verb == "set":
        assert opts[-1] == "--save", opts
        pairs = dict(zip(opts[0:-1:2], opts[1:-1:2]))
        with open(conf_path(ctid), "a") as f:
            for k, v in pairs.items():
                f.write(f'{k.lstrip("-").upper()}="{v}"\n')
    elif verb == "destroy":
        if pid(ctid):
            sys.exit(f"CT {ctid} is running")
        subprocess.run(["rm", "-rf", private(ctid)], check=True)
        os.rename(conf_path(ctid), conf_path(ctid) + ".destroyed")
    else:
        sys.exit(f"vzctl test double: no verb {verb}")


if __name__ == "__main__":
    main(*sys.argv[1:])
