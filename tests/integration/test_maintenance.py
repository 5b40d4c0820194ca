"""Groups' platform settings and maintenance windows, seen from outside: a
group's settings as `group show` has them, inherited and checked; a running
VM's cores change planned into a window seconds ahead (the node counts
windows in seconds), announced first, done inside it, and the guest sees
the new count; a container's staged feature change the same way; a
maintenance run at once; one whose window passed while the daemon was down
waits for the next window."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.conftest import missing_capability, require
from tests.helpers.vm import have_qemu, vm_node_config, wait_console
from tests.helpers.wait import wait_for
from tests.integration.test_density import Events

# Windows in seconds; the timer looks twice a second; in_maintenance ends after 2 s.
SECONDS = {"maintenance": {"unit": 1, "check_every": 0.5, "in_maintenance_cap": 2}}


def effective(node, path: str) -> dict:
    return node.osctl_json("group", "show", path)["effective_settings"]


def window_in(node, group: str, ahead: int, length: int) -> float:
    """Give ``group`` a daily window (UTC) that opens ``ahead`` seconds from now
    and lasts ``length``, announced without lead time; when it opens."""
    now = int(time.time())
    start = (now + ahead) % 86400
    node.osctl("group", "set", group, "timezone", "UTC", "maintenance-start", str(start),
               "maintenance-end", str((start + length) % 86400), "notification-leadtime", "0")
    return now + ahead


def maintenance(node, id: str) -> dict:
    return node.osctl_json("maintenance", "show", id)


def test_group_settings_inherit_are_checked_and_in_maintenance_ends_by_itself(make_node):
    node = make_node(maintenance={"check_every": 0.5, "in_maintenance_cap": 2})
    node.osctl("group", "new", "/prod")
    node.osctl("group", "new", "/prod/web")
    assert effective(node, "/prod/web") == {
        "maintenance_start": 22, "maintenance_end": 5, "timezone": "Europe/Berlin",
        "notification_leadtime": 12, "production": True, "in_maintenance": False,
        "maintenance_until": None}
    node.osctl("group", "set", "/prod", "maintenance-start", "23", "maintenance-end", "4",
               "timezone", "Asia/Tokyo", "notification-leadtime", "24", "production", "no")
    node.osctl("group", "set", "/prod/web", "timezone", "America/New_York")
    web = node.osctl_json("group", "show", "/prod/web")
    assert web["settings"] == {"timezone": "America/New_York"}
    assert web["effective_settings"]["maintenance_start"] == 23
    assert web["effective_settings"]["production"] is False
    assert effective(node, "/default")["timezone"] == "Europe/Berlin"

    # A bad timezone, an hour out of range, a contradiction: invalid, nothing changed.
    for bad, why in [(["timezone", "Europe/Atlantis"], "unknown timezone"),
                     (["maintenance-end", "24"], "0 to 23"),
                     (["in-maintenance", "yes", "maintenance-until", "2020-01-01T00:00Z"], "contradict"),
                     (["in-maintenance", "no", "maintenance-until", "2999-01-01T00:00+01:00"],
                      "contradict")]:
        p = node.osctl("group", "set", "/prod", "production", "yes", *bad, check=False)
        assert p.returncode == 2 and why in p.stderr, p.stderr
    assert node.osctl_json("group", "show", "/prod")["settings"]["production"] is False

    # Inherited back once the child drops its own; kept across a daemon restart.
    node.osctl("group", "set", "/prod/web", "timezone", "inherit")
    node.restart()
    assert effective(node, "/prod/web")["timezone"] == "Asia/Tokyo"

    # in_maintenance holds for the node's cap (2 s here), then the daemon resets it.
    t0 = time.time()
    node.osctl("group", "set", "/prod", "in-maintenance", "yes")
    assert effective(node, "/prod/web")["in_maintenance"] is True
    wait_for(lambda: effective(node, "/prod/web")["in_maintenance"] is False, 10,
             message="in_maintenance to end by itself")
    assert time.time() - t0 >= 2


def test_vm_cores_change_waits_for_the_window_and_the_guest_sees_it(make_node, tinyvm_image, tmp_path):
    require(missing_capability() or have_qemu())
    node = make_node(**vm_node_config(tmp_path), **SECONDS)
    node.osctl("user", "new", "vmuser")
    node.osctl("vm", "new", "v1", "--user", "vmuser", "--template", "tinyvm",
               "--cores", "1", "--memory", "256M", "--disk", "10G")
    node.osctl("vm", "start", "v1")
    wait_console(node, "v1", r"OSCTLD-VM-UP 1 cpus")
    events = Events(node)
    try:
        opens = window_in(node, "/default", 8, 60)
        res = node.osctl_json("vm", "set", "cores", "v1", "2")
        m = res["maintenance"]
        assert (m["state"], m["machine"], m["activities"]) == ("planned", "vm:v1", ["cores: 1 -> 2"])
        assert datetime.fromisoformat(m["starts"]).timestamp() == opens
        assert res["pending_restart"] and node.osctl_json("vm", "show", "v1")["running_cores"] == 1
        assert [x["id"] for x in node.osctl_json("maintenance", "ls", "--group", "/default")] == [m["id"]]

        def phase(p):
            return lambda ev: ev["type"] == "maintenance" and ev["id"] == m["id"] and ev["phase"] == p

        announced = events.wait(phase("announced"), 5)
        started = events.wait(phase("started"), 30)
        assert announced["time"] < opens <= started["time"]
        done = events.wait(phase("done"), 90)
        assert done["time"] < datetime.fromisoformat(m["ends"]).timestamp()
    finally:
        events.close()
    wait_console(node, "v1", r"OSCTLD-VM-UP 2 cpus")  # each start begins a new console log
    shown = node.osctl_json("vm", "show", "v1")
    assert (shown["state"], shown["running_cores"], shown["pending_restart"]) == ("running", 2, False)
    assert maintenance(node, m["id"])["state"] == "done"

    # --now: restarted at once, outside any window.
    res = node.osctl_json("vm", "set", "cores", "v1", "1", "--now")
    assert (res["maintenance"]["state"], res["state"], res["pending_restart"]) == ("done", "running", False)
    assert node.osctl_json("vm", "show", "v1")["running_cores"] == 1
    wait_console(node, "v1", r"OSCTLD-VM-UP 1 cpus")
    node.osctl("vm", "kill", "v1")


def test_container_change_staged_into_a_window_run_now_and_kept_across_downtime(make_node):
    node = make_node(**SECONDS)
    node.osctl("user", "new", "alice")
    node.osctl("group", "new", "/prod")
    node.osctl("ct", "new", "c1", "--user", "alice", "--group", "/prod")
    pid = node.osctl_json("ct", "start", "c1")["init_pid"]

    def tun() -> bool:
        return node.exec("c1", "test", "-c", "/dev/net/tun").returncode == 0

    # A wrapping window: 22:00 to 05:00 in Tokyo, as the group's hours (seconds here).
    node.osctl("group", "set", "/prod", "timezone", "Asia/Tokyo", "maintenance-start", str(22 * 3600),
               "maintenance-end", str(5 * 3600), "notification-leadtime", "0")
    res = node.osctl_json("ct", "feature", "enable", "c1", "tun", "--no-restart")
    m = res["maintenance"]
    tokyo = ZoneInfo("Asia/Tokyo")
    starts, ends = (datetime.fromisoformat(m[k]).astimezone(tokyo) for k in ("starts", "ends"))
    assert (starts.hour, ends.hour, (ends - starts).total_seconds()) == (22, 5, 7 * 3600)
    assert m["activities"] == ["features: [] -> ['tun']"] and not res["restarted"]

    # Run at once: the container restarts into the feature and runs again.
    assert node.osctl_json("maintenance", "run", m["id"])["state"] == "done"
    shown = node.osctl_json("ct", "show", "c1")
    assert shown["state"] == "running" and shown["init_pid"] != pid and not shown["pending_restart"]
    assert tun()
    p = node.osctl("maintenance", "run", m["id"], check=False)
    assert p.returncode == 6 and "done" in p.stderr

    # Staged again, into a window seconds ahead; the daemon is down across it.
    window_in(node, "/prod", 5, 3)
    m = node.osctl_json("ct", "feature", "disable", "c1", "tun", "--no-restart")["maintenance"]
    pid = node.osctl_json("ct", "show", "c1")["init_pid"]
    node.kill()
    time.sleep(max(0.0, datetime.fromisoformat(m["ends"]).timestamp() - time.time()) + 1)
    node.start()
    time.sleep(1.5)  # the timer's first looks
    again = maintenance(node, m["id"])
    assert again["state"] == "planned" and again["starts"] > m["starts"], again
    shown = node.osctl_json("ct", "show", "c1")
    assert (shown["init_pid"], shown["pending_restart"]) == (pid, True)
    assert tun()  # not restarted outside a window

    # Its next window is tomorrow; an operator opens one now for the group.
    node.osctl("group", "set", "/prod", "in-maintenance", "yes")
    wait_for(lambda: maintenance(node, m["id"])["state"] == "done", 30, message="the maintenance")
    assert node.osctl_json("ct", "show", "c1")["state"] == "running"
    assert not tun()
    node.osctl("ct", "stop", "c1")
