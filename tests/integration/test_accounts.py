"""Frontends on the account socket, seen from outside: host users other than
root connect with osctl, each acting for its tenant with its own permissions;
another tenant's containers are neither shown nor touched; root sees all; a
host user who is no account is refused."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from tests.conftest import missing_capability, require
from tests.helpers.hostuser import host_users, osctl_argv, osctl_as
from tests.helpers import node as nodes
from tests.helpers.wait import wait_for

DENIED = 7  # osctl's exit code for "denied"


@pytest.fixture
def tenants(request):
    """A node with the account socket open to a new Unix group, two tenants'
    groups (/t1 with its child /t1/web, and /t2) with a container each, and
    three host users in that group: frontends a and b, and a stranger."""
    require(missing_capability())
    with host_users("a", "b", "stranger") as (group, users):
        node = nodes.TestNode()
        sock = node.run_dir / "accounts.sock"
        node.config.update(account_socket=str(sock), account_group=group)
        try:
            node.start()
            node.osctl("user", "new", "alice")
            for path, ct in (("/t1", "a1"), ("/t1/web", "w1"), ("/t2", "b1")):
                node.osctl("group", "new", path)
                node.osctl("ct", "new", ct, "--user", "alice", "--group", path)
            node.osctl("account", "new", "front-a", "--uid", str(users["a"].uid))
            node.osctl("account", "new", "front-b", "--uid", str(users["b"].uid))
            node.osctl("permission", "add", "front-a", "/t1", "sudo-srv")
            node.osctl("permission", "add", "front-b", "/t2", "manager")
            yield node, str(sock), users
        finally:
            if getattr(request.node, "rep_call_failed", False):
                print(node.log_tail(80))
            node.cleanup()


def as_json(user, sock, *args):
    code, out = osctl_as(user, sock, "-j", *args)
    assert code == 0, out
    return json.loads(out)


def states(node) -> dict[str, str]:
    return {c["id"]: c["state"] for c in node.osctl_json("ct", "ls")}


def test_a_frontend_acts_for_its_tenant_only_and_root_sees_all(tenants):
    node, sock, users = tenants
    a, b = users["a"], users["b"]
    # The sockets: root's stays root's; the account socket is the group's.
    root_st, acc_st = os.stat(node.socket), os.stat(sock)
    assert (stat.S_IMODE(root_st.st_mode), root_st.st_uid) == (0o600, 0)
    assert (stat.S_IMODE(acc_st.st_mode), acc_st.st_gid) == (0o660, a.gid)

    # Each frontend sees its own tenant's groups and containers only.
    assert sorted(c["id"] for c in as_json(a, sock, "ct", "ls")) == ["a1", "w1"]
    assert [g["path"] for g in as_json(a, sock, "group", "ls")] == ["/t1", "/t1/web"]
    assert [c["id"] for c in as_json(b, sock, "ct", "ls")] == ["b1"]
    assert sorted(states(node)) == ["a1", "b1", "w1"]  # root: all of them

    # sudo-srv on /t1 reaches its child /t1/web: the container really runs,
    # and login's exec answers from inside it.
    assert as_json(a, sock, "ct", "start", "w1")["state"] == "running"
    assert states(node)["w1"] == "running"
    assert osctl_as(a, sock, "ct", "exec", "w1", "--", "echo", "inside") == (0, "inside\n")

    # Not in another tenant's group, and not beyond its permission: denied,
    # naming what is missing, and nothing happens.
    code, out = osctl_as(a, sock, "ct", "start", "b1")
    assert code == DENIED and "needs permission sudo-srv on group default:/t2" in out
    code, out = osctl_as(a, sock, "ct", "del", "a1")
    assert code == DENIED and "needs permission manager" in out
    code, out = osctl_as(b, sock, "ct", "show", "a1")
    assert code == DENIED
    code, out = osctl_as(b, sock, "ct", "stop", "w1")
    assert code == DENIED
    assert states(node) == {"a1": "stopped", "b1": "stopped", "w1": "running"}
    # Root's own verbs are root's.
    code, out = osctl_as(b, sock, "user", "new", "mallory")
    assert code == DENIED and "for root only" in out
    code, out = osctl_as(b, sock, "permission", "add", "front-b", "/t1", "manager")
    assert code == DENIED
    # And root's socket does not let a frontend in at all.
    code, out = osctl_as(a, str(node.socket), "ct", "ls")
    assert code == DENIED and "permission denied" in out

    # Moving its container into another tenant's group needs manager there too.
    code, out = osctl_as(b, sock, "ct", "set", "group", "b1", "/t1")
    assert code == DENIED and "to group /t1 needs manager there" in out, out
    assert node.osctl_json("ct", "show", "b1")["group"] == "/t2"

    # manager on /t2: front-b deletes its own container.
    osctl_as(b, sock, "ct", "del", "b1")
    assert sorted(states(node)) == ["a1", "w1"]

    # History names who acted, refusals too.
    lines = [(h["cmd"], h.get("account"), h["result"]) for h in node.osctl_json("history", "-n", "0")]
    assert ("ct.start", "front-a", "ok") in lines
    assert ("ct.start", "front-a", "error") in lines
    assert ("ct.del", "front-b", "ok") in lines
    assert ("ct.new", "root", "ok") in lines


def test_a_host_user_that_is_no_account_is_refused(tenants):
    node, sock, users = tenants
    code, out = osctl_as(users["stranger"], sock, "ct", "ls")
    assert code == DENIED and f"uid {users['stranger'].uid} is no osctld account" in out
    # Registered, it is answered; deleted again, refused at once.
    node.osctl("account", "new", "late", "--uid", str(users["stranger"].uid))
    assert as_json(users["stranger"], sock, "ct", "ls") == []  # no permission: nothing shown
    node.osctl("account", "del", "late")
    code, out = osctl_as(users["stranger"], sock, "ct", "ls")
    assert code == DENIED
    # A service account of /t1, with stats on its child only.
    node.osctl("account", "new", "s-late", "--uid", str(users["stranger"].uid),
               "--service", "--group", "/t1")
    node.osctl("permission", "add", "s-late@/t1", "/t1/web", "stats")
    assert [c["id"] for c in as_json(users["stranger"], sock, "ct", "ls")] == ["w1"]
    assert node.osctl("permission", "add", "s-late@/t1", "/t2", "stats", check=False).returncode == 2


def test_events_reach_a_frontend_only_about_its_tenant(tenants):
    node, sock, users = tenants
    monitor = subprocess.Popen(osctl_argv(users["a"], sock, "-j", "monitor", "--type", "state"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)  # subscribed by then: a subscription is one round trip
        node.osctl("ct", "start", "b1")  # the other tenant's
        node.osctl("ct", "start", "a1")
        wait_for(lambda: states(node)["a1"] == "running", 20, 0.2, "a1 running")
        time.sleep(0.5)
    finally:
        monitor.send_signal(signal.SIGINT)
        out = monitor.communicate(timeout=30)[0]
    seen = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert {(e["id"], e["state"]) for e in seen} >= {("a1", "running")}, out
    assert all(e["id"] == "a1" for e in seen), out
