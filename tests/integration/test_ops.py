"""What hosting operators do besides: attributes, runscript, cp, bind mounts, healthcheck."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.helpers.wait import wait_for
from tests.integration.test_net import node_pings


def test_attrs_on_every_object(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "a1", "--user", "u")
    node.osctl("ct", "new", "a2", "--user", "u")
    node.osctl("ct", "set", "attr", "a1", "org.example:order", "1234")
    p = node.osctl("ct", "set", "attr", "a2", "org.example:order", "99")
    assert "attrs.org.example:order 99" in p.stdout
    assert node.osctl_json("ct", "show", "a1")["attrs"] == {"org.example:order": "1234"}
    ids = [c["id"] for c in node.osctl_json("ct", "ls", "--attr", "org.example:order=1234")]
    assert ids == ["a1"]
    assert len(node.osctl_json("ct", "ls", "--attr", "org.example:order")) == 2
    node.osctl("ct", "unset", "attr", "a2", "org.example:order")
    assert node.osctl_json("ct", "show", "a2")["attrs"] == {}
    for obj, ref in (("user", "u"), ("pool", "default"), ("group", "/default")):
        node.osctl(obj, "set", "attr", ref, "org.example:customer", "42")
        shown = node.osctl_json(obj, "show", ref)
        assert shown["attrs"] == {"org.example:customer": "42"}, obj
        assert len(node.osctl_json(obj, "ls", "--attr", "org.example:customer=42")) == 1, obj
    node.osctl("group", "unset", "attr", "/default", "org.example:customer")
    assert node.osctl_json("group", "show", "/default")["attrs"] == {}
    # Bad names and values are refused and change nothing.
    for key, value in (("order", "1"), ("org.example:", "1"), ("Org:x", "1"),
                       ("org.example:k", "x" * 1025), ("org.example:k", "a\nb")):
        p = node.osctl("ct", "set", "attr", "a1", key, value, check=False)
        assert p.returncode == 2, (key, p.stderr)
    assert node.osctl_json("ct", "show", "a1")["attrs"] == {"org.example:order": "1234"}
    # Persisted: a restarted daemon shows them, and the pool's config holds them.
    node.restart()
    assert node.osctl_json("ct", "show", "a1")["attrs"] == {"org.example:order": "1234"}
    assert node.osctl_json("user", "show", "u")["attrs"] == {"org.example:customer": "42"}
    pool = yaml.safe_load((node.state_dir / "pools/default/conf/pool.yml").read_text())
    assert pool["attrs"] == {"org.example:customer": "42"}


def test_runscript(node, tmp_path):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "r1", "--user", "u", "--start")
    script = tmp_path / "s.sh"
    script.write_text('#!/bin/sh\necho "args: $*"\nread line\necho "read: $line"\n'
                      'echo oops >&2\nid -u\nexit 7\n')
    p = node.osctl("ct", "runscript", "r1", str(script), "a", "b", check=False, input="hello\n")
    assert p.returncode == 7, p.stderr
    assert p.stdout == "args: a b\nread: hello\n0\n" and p.stderr == "oops\n"
    # One without #! runs with sh; nothing of either stays inside.
    script.write_text("echo plain\n")
    assert node.osctl("ct", "runscript", "r1", str(script)).stdout == "plain\n"
    assert node.exec_raw("r1", "sh", "-c", "ls -A /tmp") == ""
    node.osctl("ct", "stop", "r1")
    p = node.osctl("ct", "runscript", "r1", str(script), check=False)
    assert p.returncode == 6 and "stopped, not running" in p.stderr


def test_cp_in_and_out(node, tmp_path):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "c1", "--user", "u", "--start")
    u = node.osctl_json("user", "show", "u")
    rootfs = Path(node.osctl_json("ct", "show", "c1")["rootfs"])
    f = tmp_path / "app.conf"
    f.write_text("listen 80\n")
    f.chmod(0o640)
    node.osctl("ct", "cp", str(f), "c1:/etc/")
    assert node.exec_raw("c1", "stat", "-c", "%u:%g %a", "/etc/app.conf") == "0:0 640\n"
    assert node.exec_raw("c1", "cat", "/etc/app.conf") == "listen 80\n"
    node.osctl("ct", "cp", str(f), "c1:/root/renamed.conf", "--uid", "1000", "--gid", "1000")
    assert node.exec_raw("c1", "stat", "-c", "%u:%g", "/root/renamed.conf") == "1000:1000\n"
    # A directory needs -r; it keeps its tree and modes.
    d = tmp_path / "www"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "index.html").write_text("hi\n")
    (d / "run.sh").write_text("#!/bin/sh\n")
    (d / "run.sh").chmod(0o750)
    p = node.osctl("ct", "cp", str(d), "c1:/srv", check=False)
    assert p.returncode == 2 and "give -r" in p.stderr
    node.exec_raw("c1", "mkdir", "-p", "/srv")
    node.osctl("ct", "cp", "-r", str(d), "c1:/srv")  # into a directory: under its own name
    assert node.exec_raw("c1", "cat", "/srv/www/sub/index.html") == "hi\n"
    node.osctl("ct", "cp", "-r", str(d), "c1:/srv/site")  # a new name: as that
    assert node.exec_raw("c1", "cat", "/srv/site/sub/index.html") == "hi\n"
    p = node.osctl("ct", "cp", "-r", str(d), "c1:/nowhere/site", check=False)
    assert p.returncode == 3 and "/nowhere: no such directory" in p.stderr
    assert node.exec_raw("c1", "stat", "-c", "%a", "/srv/www/run.sh") == "750\n"
    # A symlink inside to /etc is the container's /etc: the node's is untouched.
    node.exec_raw("c1", "ln", "-s", "/etc", "/root/hostetc")
    node.osctl("ct", "cp", str(f), "c1:/root/hostetc/osctl-cp-probe")
    assert not Path("/etc/osctl-cp-probe").exists()
    assert node.exec_raw("c1", "cat", "/etc/osctl-cp-probe") == "listen 80\n"
    node.exec_raw("c1", "ln", "-s", "/etc/passwd", "/root/passwd-link")
    node.osctl("ct", "cp", str(f), "c1:/root/passwd-link")
    assert "listen 80" not in Path("/etc/passwd").read_text()
    # On the node's disk it is the container's root's: stored unshifted on an
    # idmapped pool, as the user's mapped root on a chown one.
    idmapped = node.osctl_json("pool", "show", "default")["idmap"] != "chown"
    owner = (rootfs / "etc/app.conf").stat()
    assert (owner.st_uid, owner.st_gid) == ((0, 0) if idmapped else (u["root_uid"], u["root_gid"]))
    # Out: a file, a directory with -r, a path that is not there.
    out = tmp_path / "out"
    out.mkdir()
    node.osctl("ct", "cp", "c1:/etc/app.conf", str(out))
    assert (out / "app.conf").read_text() == "listen 80\n"
    assert (out / "app.conf").stat().st_mode & 0o777 == 0o640
    node.osctl("ct", "cp", "-r", "c1:/srv/www", str(out / "site"))
    assert (out / "site" / "sub" / "index.html").read_text() == "hi\n"
    p = node.osctl("ct", "cp", "c1:/nonexistent", str(out), check=False)
    assert p.returncode == 3 and "no such file" in p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["app.conf", "site"]  # no staging left
    node.osctl("ct", "stop", "c1")
    p = node.osctl("ct", "cp", str(f), "c1:/etc/", check=False)
    assert p.returncode == 6 and "not running" in p.stderr


def test_bind_mounts(node, tmp_path):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "m1", "--user", "u", "--start")
    data, certs = node.dir / "data", node.dir / "certs"
    data.mkdir()
    certs.mkdir()
    (data / "hello").write_text("from the node\n")
    (certs / "cert.pem").write_text("PEM\n")
    node.osctl("ct", "mount", "add", "m1", str(data), "/mnt/data")
    node.osctl("ct", "mount", "add", "m1", str(certs), "/etc/certs", "--ro")
    # Live: seen inside at once, owned by the container's root as on an idmapped rootfs.
    assert node.exec_raw("m1", "cat", "/mnt/data/hello") == "from the node\n"
    idmapped = node.osctl_json("pool", "show", "default")["idmap"] != "chown"
    owner = node.exec_raw("m1", "stat", "-c", "%u", "/mnt/data/hello").strip()
    assert owner == ("0" if idmapped else "65534")
    node.exec_raw("m1", "sh", "-c", "echo inside > /mnt/data/written")
    assert (data / "written").read_text() == "inside\n"
    p = node.lxc("lxc-attach", "default", "m1", "--clear-env", "--", "touch", "/etc/certs/x", check=False)
    assert p.returncode != 0 and not (certs / "x").exists()
    # The container's root cannot make it writable again.
    p = node.lxc("lxc-attach", "default", "m1", "--clear-env", "--", "sh", "-c",
                 "mount -o remount,bind,rw /etc/certs; touch /etc/certs/x", check=False)
    assert p.returncode != 0 and not (certs / "x").exists(), p.stderr
    rows = {r["dst"]: r for r in node.osctl_json("ct", "mount", "ls", "m1")}
    assert rows["/etc/certs"]["ro"] and rows["/mnt/data"]["mounted"] and rows["/etc/certs"]["mounted"]
    # Bad input is refused and changes nothing.
    for src, dst, code in ((str(data), "/", 2), (str(data), "/proc/x", 2), (str(data), "rel", 2),
                           (str(node.dir / "nope"), "/mnt/nope", 3), (str(data), "/mnt/data", 4),
                           (str(data), "/mnt/../..", 2), ("/tmp/a b", "/mnt/x", 2)):
        p = node.osctl("ct", "mount", "add", "m1", src, dst, check=False)
        assert p.returncode == code, (src, dst, p.stderr)
    assert len(node.osctl_json("ct", "mount", "ls", "m1")) == 2
    # At start (before the init runs), ro locked there too.
    node.osctl("ct", "restart", "m1")
    assert node.exec_raw("m1", "cat", "/etc/certs/cert.pem") == "PEM\n"
    p = node.lxc("lxc-attach", "default", "m1", "--clear-env", "--", "sh", "-c",
                 "mount -o remount,bind,rw /etc/certs; touch /etc/certs/x", check=False)
    assert p.returncode != 0 and not (certs / "x").exists()
    assert not Path("/etc/certs").exists()  # made inside, not on the node
    # del unmounts a live one (added live, locked read-only).
    node.osctl("ct", "mount", "del", "m1", "/mnt/data")
    node.osctl("ct", "mount", "add", "m1", str(data), "/mnt/data", "--ro")
    p = node.lxc("lxc-attach", "default", "m1", "--clear-env", "--", "sh", "-c",
                 "mount -o remount,bind,rw /mnt/data; touch /mnt/data/x", check=False)
    assert p.returncode != 0 and not (data / "x").exists(), p.stderr
    node.osctl("ct", "mount", "del", "m1", "/mnt/data")
    assert node.exec_raw("m1", "ls", "/mnt/data") == ""
    assert [r["dst"] for r in node.osctl_json("ct", "mount", "ls", "m1")] == ["/etc/certs"]
    p = node.osctl("ct", "mount", "del", "m1", "/mnt/data", check=False)
    assert p.returncode == 3
    # Added to a stopped container: in at its start; a source gone makes the start fail, saying so.
    node.osctl("ct", "stop", "m1")
    node.osctl("ct", "mount", "add", "m1", str(data), "/srv/data")
    node.osctl("ct", "start", "m1")
    assert node.exec_raw("m1", "cat", "/srv/data/hello") == "from the node\n"
    node.osctl("ct", "stop", "m1")
    (certs / "cert.pem").unlink()
    certs.rmdir()
    p = node.osctl("ct", "start", "m1", check=False)
    assert p.returncode == 6 and str(certs) in p.stderr, p.stderr
    assert node.osctl_json("ct", "show", "m1")["state"] == "stopped"
    node.osctl("ct", "mount", "del", "m1", "/etc/certs")
    node.osctl("ct", "start", "m1")
    node.osctl("ct", "stop", "m1")


def test_healthcheck_finds_and_repairs(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "h1", "--user", "u")
    node.osctl("ct", "netif", "new", "h1", "eth0")
    node.osctl("ct", "netif", "ip", "add", "h1", "eth0", "192.0.2.10")
    node.osctl("ct", "start", "h1")
    wait_for(lambda: node_pings(node, "192.0.2.10"), message="192.0.2.10 to answer")
    p = node.osctl("healthcheck")
    assert p.returncode == 0 and "nothing wrong found" in p.stdout, p.stdout
    # A route deleted behind the daemon's back, a subuid line gone.
    node.nsexec("ip", "route", "del", "192.0.2.10/32")
    assert not node_pings(node, "192.0.2.10")
    line = node.subid_lines("subuid")[0]
    subuid = Path("/etc/subuid")
    subuid.write_text("".join(f"{ln}\n" for ln in subuid.read_text().splitlines() if ln != line))
    p = node.osctl("-j", "healthcheck", check=False)
    assert p.returncode == 1 and p.stdout, p.stderr + node.log_tail(80)
    found = {(f["check"], f["id"]): f for f in json.loads(p.stdout)["findings"]}
    assert "no route to 192.0.2.10/32" in found[("netif", "default:h1")]["problem"]
    assert line in found[("subuid", "subuid")]["problem"]
    assert all(f["repair"] for f in found.values())
    p = node.osctl("-j", "healthcheck", "--repair", check=False)
    res = json.loads(p.stdout)
    assert p.returncode == 0 and res["ok"] and all(f["repaired"] for f in res["findings"]), res
    wait_for(lambda: node_pings(node, "192.0.2.10"), message="192.0.2.10 to answer again")
    assert line in node.subid_lines("subuid")
    assert node.osctl("healthcheck").returncode == 0
    # A stopped container's cgroup left behind: removed.
    cgroup = next(Path("/sys/fs/cgroup").glob(f"**/osctl-{node.name}/**/ct.h1"))
    node.osctl("ct", "stop", "h1")
    cgroup.mkdir(exist_ok=True)
    p = node.osctl("-j", "healthcheck", "--repair", check=False)
    assert p.returncode == 0 and [f["check"] for f in json.loads(p.stdout)["findings"]] == ["cgroup"]
    assert not cgroup.exists()
    # What it cannot repair it says, and the exit status stays non-zero.
    rootfs = Path(node.osctl_json("ct", "show", "h1")["rootfs"])
    rootfs.rename(rootfs.with_name("moved"))
    try:
        p = node.osctl("-j", "healthcheck", "--repair", check=False)
        res = json.loads(p.stdout)
        assert p.returncode == 1 and [f["check"] for f in res["findings"]] == ["rootfs"]
        assert res["findings"][0]["repair"] is None and res["findings"][0]["repaired"] is False
    finally:
        rootfs.with_name("moved").rename(rootfs)
