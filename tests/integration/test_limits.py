"""Limits, groups and quotas, seen from inside the containers and from the
cgroups on the host."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from osctld.runtime.cgroup import layout as cgroups
from tests.helpers.syscalls import ENOSYS, errnos, install, syscalls_program  # noqa: F401 (fixture)
from tests.helpers.wait import wait_for

MIB = 1 << 20


def ct_cgroup(node, ct: str, controller: str, group: str = "/default", pool: str = "default") -> Path:
    """A container's (limit) cgroup directory on the host: below our own cgroup,
    like the daemon's (it is our child)."""
    parts = "/".join(f"group.{p}" for p in group.split("/") if p)
    rel = "/".join(x for x in (node.config["cgroup_root"], f"pool.{pool}", parts, f"ct.{ct}") if x)
    return cgroups.detect().for_controller(controller).dir(rel)


def meminfo_total(node, ct: str) -> int:
    line = next(ln for ln in node.exec(ct, "cat", "/proc/meminfo").stdout.splitlines()
                if ln.startswith("MemTotal:"))
    return int(line.split()[1]) * 1024


def test_memory_limit_oom_kills_inside_and_changes_live(node):
    node.osctl("user", "new", "m")
    node.osctl("ct", "new", "m1", "--user", "m", "--memory", "64M", "--swap", "0")
    node.osctl("ct", "start", "m1")
    shown = node.osctl_json("ct", "show", "m1")
    assert shown["limits"] == {"memory": 64 * MIB, "swap": 0}
    assert shown["limits_in_force"]["memory"] == 64 * MIB
    cg = ct_cgroup(node, "m1", "memory")
    assert int((cg / "memory.limit_in_bytes").read_text()) == 64 * MIB
    # lxcfs's /proc/meminfo inside shows the limit (procps free reads it;
    # busybox free asks sysinfo(2), which lxcfs cannot change).
    assert meminfo_total(node, "m1") == 64 * MIB

    # busybox dd allocates (and fills) a buffer of one block: 100M does not fit.
    p = node.exec("m1", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
    assert p.returncode == 137, (p.returncode, p.stderr)  # SIGKILL from the OOM killer
    # v1 counts the kill where the victim was: the container's namespace cgroup.
    assert "oom_kill 1" in (cg / "ns" / "memory.oom_control").read_text()
    assert node.osctl_json("ct", "show", "m1")["state"] == "running"
    assert node.exec("m1", "true").returncode == 0

    # Raised live, the same allocation fits.
    node.osctl("ct", "set", "memory", "m1", "256M")
    assert node.osctl_json("ct", "show", "m1")["limits_in_force"]["memory"] == 256 * MIB
    assert meminfo_total(node, "m1") == 256 * MIB
    p = node.exec("m1", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
    assert p.returncode == 0, p.stderr
    node.osctl("ct", "unset", "m1", "memory", "swap")
    assert node.osctl_json("ct", "show", "m1")["limits_in_force"].get("memory") is None


def cpu_seconds(node, ct: str) -> float:
    return int((ct_cgroup(node, ct, "cpuacct") / "cpuacct.usage").read_text()) / 1e9


def test_cpu_limit_half_a_core(node):
    node.osctl("user", "new", "c")
    node.osctl("ct", "new", "c1", "--user", "c", "--cpu-limit", "0.5")
    node.osctl("ct", "start", "c1")
    assert node.osctl_json("ct", "show", "c1")["limits_in_force"]["cpu_limit"] == 0.5
    # Two busy loops for 2 s: unlimited they would take two cores. The limit
    # is a ceiling: other work on this shared machine can only push the
    # figure down. So the node's tree gets a large CPU weight against the
    # rest of the machine (the ceiling stays), up to three tries are made,
    # and the best must be about 1 CPU second.
    top = cgroups.detect().for_controller("cpu").dir(node.config["cgroup_root"])
    if (top / "cpu.shares").exists():
        (top / "cpu.shares").write_text("262144")
    tries = []
    for _ in range(3):
        before = cpu_seconds(node, "c1")
        p = node.exec("c1", "sh", "-c",
                      "for i in 1 2; do timeout 2 sh -c 'while :; do :; done' & done; wait")
        assert p.returncode == 0, p.stderr
        tries.append(cpu_seconds(node, "c1") - before)
        assert tries[-1] <= 1.2, f"{tries[-1]:.2f} CPU seconds over 2 s with cpu-limit 0.5"
        if tries[-1] >= 0.8:
            break
    assert max(tries) >= 0.8, f"CPU seconds over 2 s with cpu-limit 0.5: {tries}"


def test_cpu_limit_lowered_and_raised_live(node):
    """The quota repeated on the inner cgroup for lxcfs never stands above
    the outer one: on v1 the kernel would refuse the lower outer quota."""
    node.osctl("user", "new", "c")
    node.osctl("ct", "new", "c2", "--user", "c", "--cpu-limit", "2")
    node.osctl("ct", "start", "c2")
    outer = ct_cgroup(node, "c2", "cpu")
    files = {"cpu.max": lambda q: f"{q} 100000", "cpu.cfs_quota_us": str}
    name, shown = next((f, v) for f, v in files.items() if (outer / f).exists())

    def quotas() -> tuple[str, str]:
        return (outer / name).read_text().strip(), (outer / "ns" / name).read_text().strip()

    assert quotas() == (shown(200000), shown(200000))
    for limit, quota in (("1", 100000), ("0.5", 50000), ("1.5", 150000)):
        node.osctl("ct", "set", "cpu-limit", "c2", limit)
        assert quotas() == (shown(quota), shown(quota))
    assert node.osctl_json("ct", "show", "c2")["limits_in_force"]["cpu_limit"] == 1.5
    assert node.exec("c2", "true").returncode == 0


def test_pids_limit_fork_fails_inside(node):
    node.osctl("user", "new", "p")
    node.osctl("ct", "new", "p1", "--user", "p", "--pids", "12")
    node.osctl("ct", "start", "p1")
    # echo and wait are shell builtins: only the sleeps fork.
    p = node.exec("p1", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do "
                                    "sleep 2 && echo $i & done; wait")
    assert "can't fork" in p.stderr, p.stderr
    assert len(p.stdout.split()) < 12
    pids = ct_cgroup(node, "p1", "pids")
    assert (pids / "pids.max").read_text().strip() == "12"


def test_group_limit_binds_two_containers(node):
    node.osctl("user", "new", "g")
    node.osctl("group", "new", "/prod", "--memory", "1G")
    node.osctl("group", "new", "/prod/web", "--pids", "500")
    web = node.osctl_json("group", "show", "/prod/web")
    assert web["limits"] == {"pids": 500}
    assert web["effective_limits"] == {"memory": 1 << 30, "pids": 500}  # memory inherited
    for ct in ("w1", "w2"):
        node.osctl("ct", "new", ct, "--user", "g", "--group", "/prod/web")
        node.osctl("ct", "start", ct)
    assert node.osctl_json("ct", "show", "w1")["effective_limits"] == {"memory": 1 << 30, "pids": 500}
    # Room for 20 more processes in the group, set live: each container alone
    # may fork 14 sleeps, the two together may not.
    idle = node.osctl_json("group", "show", "/prod/web")["usage"]["pids"]
    node.osctl("group", "set", "/prod/web", "--pids", str(idle + 20))
    spawn = ("for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do sleep 10 >/dev/null 2>&1 & done; "
             "echo started")
    p = node.exec("w1", "sh", "-c", spawn)
    assert p.stdout == "started\n" and p.stderr == ""
    p = node.exec("w2", "sh", "-c", spawn)
    assert "can't fork" in p.stderr, "the group's pids.max did not bind the second container"
    node.restart()  # groups live in the pool: conf/group/prod/web.yml
    assert (node.state_dir / "pools/default/conf/group/prod/web.yml").is_file()
    shown = node.osctl_json("group", "show", "/prod/web")
    assert idle + 14 < shown["usage"]["pids"] <= idle + 20
    assert shown["limits_in_force"]["pids"] == idle + 20
    assert shown["container_ids"] == ["w1", "w2"]
    # Both containers' memory is charged to the group.
    usage = [int((ct_cgroup(node, c, "memory", "/prod/web") / "memory.usage_in_bytes").read_text())
             for c in ("w1", "w2")]
    assert shown["usage"]["memory"] >= sum(usage)

    p = node.osctl("group", "del", "/prod/web", check=False)
    assert p.returncode == 6 and "w1, w2" in p.stderr
    for ct in ("w1", "w2"):
        node.osctl("ct", "del", ct, "--force")
    group_dir = ct_cgroup(node, "x", "pids", "/prod/web").parent
    assert group_dir.is_dir()
    node.osctl("group", "del", "/prod/web")
    assert not group_dir.exists()
    assert [g["path"] for g in node.osctl_json("group", "ls")] == ["/", "/default", "/prod"]


def test_quota_refusal_changes_nothing(node):
    node.osctl("user", "new", "q")
    node.osctl("user", "set", "quota", "q", "memory=256M", "containers=2")
    node.osctl("ct", "new", "q1", "--user", "q", "--memory", "200M")
    node.osctl("ct", "start", "q1")
    conf = node.state_dir / "pools/default/conf/ct/q1.yml"
    before = conf.read_text()

    p = node.osctl("ct", "set", "memory", "q1", "300M", check=False)
    assert p.returncode == 6 and "quota memory of user q is 256M" in p.stderr, p.stderr
    assert conf.read_text() == before
    assert node.osctl_json("ct", "show", "q1")["limits_in_force"]["memory"] == 200 * MIB

    p = node.osctl("ct", "new", "q2", "--user", "q", "--memory", "100M", check=False)
    assert p.returncode == 6 and "quota memory" in p.stderr
    p = node.osctl("ct", "new", "q2", "--user", "q", check=False)
    assert p.returncode == 6 and "needs a memory of its own" in p.stderr
    assert [c["id"] for c in node.osctl_json("ct", "ls")] == ["q1"]
    assert not (node.state_dir / "pools/default/ct/q2").exists()

    node.osctl("ct", "new", "q2", "--user", "q", "--memory", "50M")
    p = node.osctl("ct", "new", "q3", "--user", "q", "--memory", "4M", check=False)
    assert p.returncode == 6 and "quota containers of user q is 2" in p.stderr
    shown = node.osctl_json("user", "show", "q")
    assert shown["quota"] == {"memory": 256 * MIB, "containers": 2}
    assert (shown["quota_usage"]["memory"], shown["quota_usage"]["containers"]) == (250 * MIB, 2)


def df_k(node, ct: str, path: str = "/", raw: bool = False) -> tuple[int, int]:
    """Total and used KiB that ``df -k PATH`` inside shows (raw: through
    lxc-attach, with no daemon)."""
    if raw:
        pool, _, name = ct.partition(":")
        out = node.exec_raw(name, "df", "-k", path, pool=pool)
    else:
        p = node.exec(ct, "df", "-k", path)
        assert p.returncode == 0, p.stderr
        out = p.stdout
    cols = out.splitlines()[1].split()
    return int(cols[1]), int(cols[2])


def seccomp_mode(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("Seccomp:")[1].split()[0])


def test_btrfs_disk_quota(node, syscalls_program):
    img = node.dir / "q.img"
    node.osctl("pool", "install", "bq", "--backend", "btrfs", "--image", str(img), "--size", "300M",
               "--path", str(node.dir / "bq"), "--id-base", str(node.id_base + 32 * 524288))
    node.osctl("user", "new", "d", "--pool", "bq")
    node.osctl("ct", "new", "d1", "--user", "bq:d", "--disk", "20M")
    node.osctl("ct", "start", "bq:d1")
    assert node.osctl_json("ct", "show", "bq:d1")["disk"] == 20 * MIB

    # btrfs answers statfs for the whole pool; the statfs proxy shows the
    # qgroup: its limit as the size, what the subvolume refers to as used.
    total, used = df_k(node, "bq:d1")
    assert total == 20 * 1024
    assert node.exec("bq:d1", "dd", "if=/dev/zero", "of=/five", "bs=1M", "count=5").returncode == 0
    node.exec("bq:d1", "sync")  # qgroups count at the transaction's commit
    total, used5 = df_k(node, "bq:d1")
    assert total == 20 * 1024 and used5 - used >= 5 * 1024 - 64, (used, used5)
    # ct show and ct ls say what it holds, as df inside does.
    assert abs(node.osctl_json("ct", "show", "bq:d1")["disk_used"] - used5 * 1024) < MIB
    [row] = node.osctl_json("ct", "ls", "-p", "bq", "-o", "id,disk,disk_used")
    assert row["disk"] == 20 * MIB and abs(row["disk_used"] - used5 * 1024) < MIB, row

    p = node.exec("bq:d1", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=40")
    assert p.returncode != 0 and "quota exceeded" in p.stderr.lower(), p.stderr

    # Other mounts are answered by the kernel, unchanged: /dev (tmpfs) as
    # the host sees it through the container's root.
    pid = node.osctl_json("ct", "show", "bq:d1")["init_pid"]
    st = os.statvfs(f"/proc/{pid}/root/dev")
    assert df_k(node, "bq:d1", "/dev")[0] == st.f_blocks * st.f_frsize // 1024

    p = node.osctl("ct", "set", "disk", "bq:d1", "10M", check=False)
    assert p.returncode == 6 and "below what" in p.stderr, p.stderr
    node.osctl("ct", "set", "disk", "bq:d1", "100M")  # live, from at its limit
    assert df_k(node, "bq:d1")[0] == 100 * 1024
    p = node.exec("bq:d1", "dd", "if=/dev/zero", "of=/big2", "bs=1M", "count=30")
    assert p.returncode == 0, p.stderr

    # The proxy is no child of osctld: df inside works with osctld killed,
    # and a new osctld uses the same proxy.
    proxy = node.statfs_proxy_pid()
    assert proxy is not None
    node.kill()
    assert df_k(node, "bq:d1", raw=True)[0] == 100 * 1024
    node.start()
    assert node.statfs_proxy_pid() == proxy
    # A dead proxy is replaced; the container's monitor reconnects to the new one.
    os.kill(proxy, signal.SIGKILL)
    wait_for(node.statfs_proxy_pid, 15, message="a new statfs proxy",
             until=lambda pid: pid not in (None, proxy))
    assert df_k(node, "bq:d1")[0] == 100 * 1024

    # One profile holds the deny-list and the notify rules: keyctl says ENOSYS.
    assert seccomp_mode(pid) == 2  # SECCOMP_MODE_FILTER
    install(node, "bq:d1", syscalls_program)
    assert errnos(node, "bq:d1", "keyctl", "open_by_handle_at") == dict.fromkeys(
        ("keyctl", "open_by_handle_at"), ENOSYS)
    # A container without a quota has the deny-list alone: the pool's size.
    node.osctl("ct", "new", "free", "--user", "bq:d")
    node.osctl("ct", "start", "bq:free")
    assert seccomp_mode(node.osctl_json("ct", "show", "bq:free")["init_pid"]) == 2
    assert 250 * 1024 < df_k(node, "bq:free")[0] <= 300 * 1024
    # A quota set while it runs: the filter comes with the next start.
    assert node.osctl_json("ct", "set", "disk", "bq:free", "50M")["pending_restart"]
    node.osctl("ct", "stop", "bq:free")
    node.osctl("ct", "start", "bq:free")
    assert df_k(node, "bq:free")[0] == 50 * 1024

    node.osctl("user", "new", "diru")
    node.osctl("ct", "new", "plain", "--user", "default:diru")
    p = node.osctl("ct", "set", "disk", "plain", "1G", check=False)
    assert p.returncode == 8 and "no disk quotas" in p.stderr
