"""50 clients racing on one container: start, stop, set and show, mixed.

Nothing answers `internal`; afterwards the daemon's state, its saved config
and the kernel agree; and the container's lock is served first come, first
served: no call that asked well after another is done well before it.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from dataclasses import dataclass

from osctl.protocol import OsctlError

CLIENTS = 50
SECONDS = 30
# A call sent this long after another, and answered this long before it,
# overtook it in the lock's queue (the daemon reads both long before).
MARGIN = 1.0
LOCKING = ("ct.start", "ct.stop", "ct.set")


@dataclass
class Call:
    cmd: str
    sent: float
    done: float
    outcome: str  # "ok" or the error code


def client(node, seed: int, deadline: float, calls: list[Call]) -> None:
    rnd = random.Random(seed)
    with node.client() as c:
        while time.monotonic() < deadline:
            cmd = rnd.choice(("ct.start", "ct.stop", "ct.set", "ct.set", "ct.show"))
            args = {"id": "c1"}
            if cmd == "ct.stop":
                args["timeout"] = 2
            elif cmd == "ct.set":
                args.update(hostname=f"h{rnd.randrange(1000)}",
                            limits={"memory": f"{rnd.randrange(64, 512)}M"})
            sent = time.monotonic()
            try:
                c.call(cmd, args)
                outcome = "ok"
            except OsctlError as e:
                outcome = e.code
            calls.append(Call(cmd, sent, time.monotonic(), outcome))


def overtakes(calls: list[Call]) -> list[tuple[Call, Call]]:
    locking = sorted((c for c in calls if c.cmd in LOCKING), key=lambda c: c.sent)
    out = []
    for i, a in enumerate(locking):
        for b in locking[i + 1:]:
            if b.sent - a.sent >= MARGIN and a.done - b.done >= MARGIN:
                out.append((a, b))
    return out


def test_fifty_clients_racing_on_one_container(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "c1", "--user", "u")
    node.osctl("ct", "start", "c1")
    calls: list[Call] = []
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=client, args=(node, i, deadline, calls)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a client never got its answer"

    outcomes = {o: sum(c.outcome == o for c in calls) for o in {c.outcome for c in calls}}
    waits = sorted(c.done - c.sent for c in calls if c.cmd in LOCKING)
    bad = overtakes(calls)
    print(f"{len(calls)} calls: {outcomes}; locking calls took median "
          f"{statistics.median(waits):.2f} s, max {waits[-1]:.2f} s; {len(bad)} overtakes")
    assert "internal" not in outcomes
    assert set(outcomes) <= {"ok", "conflict"}, outcomes
    assert not bad, [(a, b) for a, b in bad[:5]]

    # The daemon, LXC and the kernel agree; and so does the saved config.
    shown = node.osctl_json("ct", "show", "c1")
    lxc_state = node.lxc("lxc-info", "default", "c1", "-s").stdout.split()[-1].lower()
    assert lxc_state == shown["state"]
    if shown["state"] == "running":
        assert node.exec_raw("c1", "hostname").strip() == shown["hostname"]
        assert shown["limits_in_force"]["memory"] == shown["limits"]["memory"]
    node.restart()
    again = node.osctl_json("ct", "show", "c1")
    for key in ("state", "hostname", "limits"):
        assert again[key] == shown[key], key
