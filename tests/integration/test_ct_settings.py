"""Settings and ways in: autostart, live hostname, passwd, attach and console on a terminal."""

from __future__ import annotations

import os
import subprocess
import time

from tests.helpers.node import OSCTL
from tests.helpers.terminal import osctl_terminal
from tests.helpers.wait import wait_for


def test_autostart_after_daemon_restart(node):
    node.osctl("user", "new", "u")
    for ct in ("auto1", "auto2", "manual"):
        node.osctl("ct", "new", ct, "--user", "u")
    node.osctl("ct", "set", "autostart", "auto1", "on")
    node.osctl("ct", "set", "autostart", "auto2", "on", "--priority", "1")
    assert node.osctl_json("ct", "show", "auto2")["autostart_priority"] == 1
    node.kill()
    node.start()
    states = wait_for(lambda: {c["id"]: c["state"] for c in node.osctl_json("ct", "ls")}, 30,
                      message="auto1 and auto2 to run",
                      until=lambda states: states["auto1"] == states["auto2"] == "running")
    assert states == {"auto1": "running", "auto2": "running", "manual": "stopped"}
    assert node.exec("auto1", "true").returncode == 0
    node.osctl("ct", "set", "autostart", "auto1", "off")
    node.osctl("ct", "stop", "auto1")
    node.restart()
    time.sleep(1)
    assert node.osctl_json("ct", "show", "auto1")["state"] == "stopped"


def test_hostname_and_dns_live(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "h1", "--user", "u", "--start")
    assert node.exec("h1", "hostname").stdout.strip() == "h1"
    ct = node.osctl_json("ct", "set", "hostname", "h1", "web.example.org")
    assert ct["hostname"] == "web.example.org"
    assert node.exec("h1", "hostname").stdout.strip() == "web.example.org"
    assert node.exec("h1", "cat", "/etc/hostname").stdout == "web.example.org\n"
    assert "web.example.org web" in node.exec("h1", "cat", "/etc/hosts").stdout
    node.osctl("ct", "set", "dns-resolvers", "h1", "192.0.2.53", "2001:db8::53")
    resolv = node.exec("h1", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 192.0.2.53\nnameserver 2001:db8::53\n" in resolv
    p = node.osctl("ct", "set", "hostname", "h1", "bad_name!", check=False)
    assert p.returncode == 2 and "invalid hostname" in p.stderr
    assert node.exec("h1", "hostname").stdout.strip() == "web.example.org"
    # It survives a restart of the container, from the rootfs and the LXC config.
    node.osctl("ct", "restart", "h1", "--timeout", "10")
    assert node.exec("h1", "hostname").stdout.strip() == "web.example.org"


def test_passwd_attach_and_console(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "t1", "--user", "u", "--start")
    shadow_before = node.exec("t1", "grep", "^root:", "/etc/shadow").stdout
    node.osctl("ct", "passwd", "t1", "root", "--password", "s3cret-pw")
    shadow_after = node.exec("t1", "grep", "^root:", "/etc/shadow").stdout
    assert shadow_after != shadow_before
    hashed = shadow_after.split(":")[1]
    assert hashed.startswith("$") and "s3cret" not in hashed
    assert "s3cret-pw" not in node.osctl("history").stdout  # passwords stay out of the log
    p = node.osctl("ct", "passwd", "t1", "nosuchuser", "--password", "x", check=False)
    assert p.returncode == 2 and "passwd in t1 failed" in p.stderr

    # attach: a shell on this terminal.
    t = osctl_terminal(node, "ct", "attach", "t1")
    t.expect("# ")
    t.send("echo attached-$((6*7)) $(id -u) $(tty)\n")
    line = t.expect(r"attached-42 0 \S+")
    assert line.split()[2].startswith("/dev/pts/")
    t.send("exit 5\n")
    assert t.wait() == 5

    # exec from a terminal: the command gets one, its output and exit code come back.
    t = osctl_terminal(node, "ct", "exec", "t1", "--", "sh", "-c", "echo on-$(tty); exit 3")
    assert t.expect(r"on-\S+").startswith("on-/dev/pts/")
    assert t.wait() == 3

    # Piped input with the output on a terminal: no terminal inside, the
    # input's end reaches the command, stdout and stderr stay apart.
    master, slave = os.openpty()
    p = subprocess.run([OSCTL, "--socket", str(node.socket), "ct", "exec", "t1", "--", "sh", "-c",
                        "wc -l; tty; echo err >&2"], input=b"one\ntwo\n", stdout=slave,
                       stderr=subprocess.PIPE, timeout=30)
    os.close(slave)
    out = os.read(master, 4096)
    os.close(master)
    assert (p.returncode, out.split(), p.stderr) == (0, [b"2", b"not", b"a", b"tty"], b"err\n"), out

    # A caller that goes away mid-session: the shell inside is hung up, the
    # operation ends.
    t = osctl_terminal(node, "ct", "attach", "t1")
    t.expect("# ")
    t.proc.kill()
    t.wait()
    wait_for(lambda: node.call("op.ls"), 20, message="the attach operation to end",
             until=lambda ops: ops == [])
    wait_for(lambda: node.exec("t1", "ps", "-o", "comm").stdout.split(), 20,
             message="the shell inside to end", until=lambda comms: "sh" not in comms)

    # console: log in with the password just set, run a command, leave with Ctrl-a q.
    t = osctl_terminal(node, "ct", "console", "t1")
    t.expect("Ctrl.a q")
    for _ in range(20):  # keys typed while lxc-console sets the terminal up are lost
        t.send("\r")
        try:
            t.expect("login: ", timeout=1)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"no login prompt on the console: {t.seen[-500:]!r}")
    t.send("root\r")
    t.expect("Password: ")
    t.send("s3cret-pw\r")
    t.send("echo on-console-$((6*7))\r")
    t.expect("on-console-42")
    t.send("exit\r")
    # Leave once the console is quiet again: LXC 5.0.2's monitor ends (and
    # kills the container) when a console client leaves while output for it
    # is in flight ("Terminal client on fd -1 has exited").
    t.expect("login: ")
    time.sleep(1)
    t.send(b"\x01q")
    assert t.wait() == 0
    assert node.osctl_json("ct", "show", "t1")["state"] == "running"
