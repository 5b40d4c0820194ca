"""/etc/subuid and /etc/subgid under fire: locks no other user can hold,
shadow-utils' locking against a racing useradd/userdel, and host users'
grants that explicit maps may not overlap."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from osctld import shadowlock
from tests.helpers.node import BLOCK

FILES = [Path("/etc/subuid"), Path("/etc/subgid")]

# Run as nobody: take every lock it can and hold them, printing which.
GRAB = r"""
import fcntl, json, os, sys, time
taken = []
for path in sys.argv[1:]:
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            fd = os.open(path, flags | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            taken.append(path)
        except OSError:
            pass
        break
print(json.dumps(taken), flush=True)
time.sleep(5)
"""


def locked_by(pid: int) -> list[Path]:
    """Files process ``pid`` holds a lock on (/proc/locks names their inodes)."""
    rows = [line.split() for line in Path("/proc/locks").read_text().splitlines() if "->" not in line]
    inodes = {int(r[5].split(":")[2]) for r in rows if r[4] == str(pid)}
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = Path(os.readlink(fd))
            if target.is_absolute() and os.stat(target).st_ino in inodes:
                out.append(target)
        except OSError:
            pass
    return out


def timed(fn, *args, **kw) -> tuple[float, object]:
    t0 = time.monotonic()
    out = fn(*args, **kw)
    return time.monotonic() - t0, out


def test_no_other_user_can_hold_the_daemons_locks(node):
    node.call("user.new", name="u0")  # every lock file has been made once
    pid = node.call("daemon.status")["pid"]
    held = locked_by(pid)
    assert node.run_dir / "osctld.lock" in held
    ours = {*held, Path("/etc/.pwd.lock"), *(f.with_name(f.name + ".lock") for f in FILES)}
    for p in ours:  # in root's own directories (no one else can plant a file), root's own
        assert p.parent.stat().st_mode & 0o022 == 0 and p.parent.stat().st_uid == 0, p
        assert not p.exists() or p.stat().st_mode & 0o077 == 0, p
    # What an older osctld locked: a user holding it must not matter either.
    paths = {*ours, Path("/run/lock/osctld-subid.lock")}
    grab = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             "/usr/bin/python3", "-I", "-c", GRAB, *map(str, paths)],
                            stdout=subprocess.PIPE, text=True)
    try:
        taken = json.loads(grab.stdout.readline())
        status = {}
        asker = threading.Thread(target=lambda: status.update(t=timed(node.call, "daemon.status")[0]))
        asker.start()
        took, _ = timed(node.call, "user.new", name="u1")
        asker.join()
    finally:
        grab.kill()
        grab.wait()
    assert set(taken) <= {"/run/lock/osctld-subid.lock"}
    assert took < 3 and status["t"] < 1, (took, status)


def test_a_held_subid_lock_stalls_no_other_request(node):
    """useradd holding shadow-utils' locks makes `user new` wait for them, and nothing else."""
    release = threading.Event()
    locked = threading.Event()

    def hold() -> None:
        with shadowlock.locked(FILES):
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    done = {}
    try:
        assert locked.wait(10)
        t0 = time.monotonic()
        creator = threading.Thread(target=lambda: done.update(user=node.call("user.new", name="late"),
                                                              t=time.monotonic() - t0))
        creator.start()
        time.sleep(0.5)
        for _ in range(3):
            took, status = timed(node.call, "daemon.status")
            assert took < 1, took
            assert isinstance(node.call("user.ls"), list) and not done
        time.sleep(4.5 - (time.monotonic() - t0))
        assert not done and node.subid_lines() == []  # still waiting for the lock
    finally:
        release.set()
        holder.join()
    creator.join(20)
    assert done["t"] >= 4.5
    assert node.subid_lines() == [f"root:{done['user']['root_uid']}:{BLOCK}"]


def edit(change) -> None:
    with shadowlock.locked(FILES):
        for f in FILES:
            f.write_text(change(f.name, f.read_text()))


def test_explicit_maps_may_not_overlap_host_users_grants(node):
    host = f"osctldtest{uuid.uuid4().hex[:8]}"
    grants = {"subuid": [f"{host}:{node.id_base + 100}:65536", f"{host}:{node.id_base + 40 * BLOCK}:65536"],
              "subgid": [f"{host}:{node.id_base + 100}:65536", f"{host}:{node.id_base + 41 * BLOCK}:65536"]}
    edit(lambda name, text: text + "".join(f"{g}\n" for g in grants[name]))
    try:
        # The block allocator steps around block 0, which the host user has a part of.
        assert node.call("user.new", name="a")["root_uid"] == node.id_base + BLOCK
        before = node.subid_lines("subuid"), node.subid_lines("subgid"), node.call("user.ls")
        for args, kind in ((["--map", f"0:{node.id_base + 40 * BLOCK + 1000}:65536"], "subuid"),
                           (["--map-uid", f"0:{node.id_base + 50 * BLOCK}:65536",
                             "--map-gid", f"0:{node.id_base + 41 * BLOCK - 10}:65536"], "subgid")):
            p = node.osctl("user", "new", "x", *args, check=False)
            assert p.returncode == 6 and f"given to '{host}' in /etc/{kind}" in p.stderr, p.stderr
            assert (node.subid_lines("subuid"), node.subid_lines("subgid"), node.call("user.ls")) == before
        # Next to it is fine.
        node.osctl("user", "new", "y", "--map", f"0:{node.id_base + 40 * BLOCK + 65536}:65536")
    finally:
        edit(lambda name, text: "".join(f"{line}\n" for line in text.splitlines()
                                        if line not in grants[name]))


def host_lines(names: set[str], kind: str) -> Counter:
    return Counter(line.split(":")[0] for line in Path(f"/etc/{kind}").read_text().splitlines()
                   if line.split(":")[0] in names)


def test_racing_useradd_and_userdel_keep_every_line(node):
    """osctld and shadow-utils change the files at once; no line is lost or doubled."""
    prefix = f"ot{uuid.uuid4().hex[:6]}h"
    made: list[str] = []
    deadline = time.monotonic() + 25
    rounds = {"host": 0, "osctld": 0}
    errors: list[str] = []
    with shadowlock.locked(FILES):  # useradd gives ranges only where the files exist
        for f in FILES:
            f.touch(mode=0o644, exist_ok=True)

    def host() -> None:
        for i in range(80):
            if time.monotonic() > deadline:
                return
            name = f"{prefix}{i}"
            p = subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name],
                               capture_output=True, text=True)
            if p.returncode != 0:
                errors.append(f"useradd {name}: {p.stderr}")
                return
            made.append(name)
            if i % 2:  # keep every other one
                p = subprocess.run(["userdel", made[-2]], capture_output=True, text=True)
                if p.returncode != 0:
                    errors.append(f"userdel {made[-2]}: {p.stderr}")
                    return
            rounds["host"] += 1

    def osctld() -> None:
        with node.client() as c:
            for i in range(200):
                if time.monotonic() > deadline:
                    return
                c.call("user.new", {"name": f"o{i}"})
                if i >= 2:
                    c.call("user.del", {"name": f"o{i - 2}"})
                rounds["osctld"] += 1

    try:
        workers = [threading.Thread(target=host), threading.Thread(target=osctld)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        print(f"rounds: {rounds}")
        assert not errors, errors
        assert rounds["host"] >= 10 and rounds["osctld"] >= 10, rounds
        kept = {n for i, n in enumerate(made) if i % 2 or i == len(made) - 1}
        for kind in ("subuid", "subgid"):
            wanted = [f"root:{u['root_uid'] if kind == 'subuid' else u['root_gid']}:{BLOCK}"
                      for u in node.call("user.ls")]
            assert Counter(node.subid_lines(kind)) == Counter(wanted), kind
            assert host_lines(set(made), kind) == Counter(kept), kind
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True)
