"""VM parts that need no root and no QEMU: policy, model, command line,
the console escape, and the QMP client against a fake monitor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from osctl.protocol import OsctlError
from osctld.config import Config, VmPolicy
from osctld.model.vm import RUNNING, VM, VmLimits
from osctld.runtime.console import strip_escape
from osctld.runtime.vm import VmRunPaths, qemu_argv
from osctld.runtime.qmp import Qmp, QmpError
from osctld.runtime.vmimage import VmFiles

MIB, GIB = 1 << 20, 1 << 30


def vm(**kw) -> VM:
    return VM(**{"id": "v1", "pool": "p", "user": "u", "template": "debian", "version": "bookworm",
                 "cores": 2, "memory": 512 * MIB, "disk": 10 * GIB, **kw})


def test_policy_defaults_and_config_section():
    cfg = Config(vm={"accelerator": "kvm", "min_disk": GIB})
    assert isinstance(cfg.vm, VmPolicy)
    assert (cfg.vm.accelerator, cfg.vm.min_disk, cfg.vm.max_cores) == ("kvm", GIB, 8)
    assert Config().vm.accelerator == "tcg"
    with pytest.raises(ValueError, match="accelerator"):
        Config(vm={"accelerator": "xen"})


@pytest.mark.parametrize("args, message", [
    ({"cores": 0}, "cores must be 1 to 8"),
    ({"cores": 9}, "cores must be 1 to 8"),
    ({"memory": 255 * MIB}, "memory must be at least 256 MiB"),
    ({"disk": 10 * GIB - 1}, "disk must be at least 10240 MiB"),
])
def test_limits_refuse(args, message):
    with pytest.raises(OsctlError, match=message) as e:
        VmLimits(1, 8, 256 * MIB, 10 * GIB).check(**args)
    assert e.value.code == "invalid"


def test_limits_accept_the_edges():
    VmLimits(1, 8, 256 * MIB, 10 * GIB).check(1, 256 * MIB, 10 * GIB)
    VmLimits(1, 8, 256 * MIB, 10 * GIB).check(8)


def test_model_round_trip_and_pending_restart():
    v = vm(online=True)
    again = VM.from_dict(v.to_dict(), "p")
    assert again == v and "state" not in v.to_dict()
    assert not v.pending_restart  # not running
    v.state, v.running_cores, v.running_memory = RUNNING, 2, 512 * MIB
    assert not v.pending_restart
    v.cores = 4
    assert v.public()["pending_restart"]
    with pytest.raises(OsctlError):
        vm(id="../x")
    # Its resource group: /default unless given, kept, normalised, checked.
    assert (v.group, vm(group="/prod//web/").group) == ("/default", "/prod/web")
    assert VM.from_dict(vm(group="/prod").to_dict(), "p").group == "/prod"
    with pytest.raises(OsctlError, match="group"):
        vm(group="prod")


def test_qemu_command_line(tmp_path):
    files, paths = VmFiles(tmp_path / "d"), VmRunPaths(tmp_path / "r")
    files.dir.mkdir()
    (files.dir / "cmdline").write_text("console=ttyS0 quiet\n")
    argv = qemu_argv(VmPolicy(), vm(), files, paths)
    joined = " ".join(argv)
    assert argv[argv.index("-accel") + 1] == "tcg" and "-cpu" not in argv
    assert argv[argv.index("-m") + 1] == "512M" and argv[argv.index("-smp") + 1] == "2"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 quiet"
    assert "-daemonize" in argv and argv[argv.index("-pidfile") + 1] == str(paths.pidfile)
    assert f"unix:{paths.qmp},server=on,wait=off" in argv
    assert f"path={paths.console}" in joined and f"logfile={paths.console_log}" in joined
    assert f"filename={files.disk}" in joined
    kvm = qemu_argv(VmPolicy(accelerator="kvm"), vm(), files, paths)
    assert kvm[kvm.index("-accel") + 1] == "kvm" and kvm[kvm.index("-cpu") + 1] == "host"


def test_guest_network_on_the_kernel_command_line(tmp_path):
    import ipaddress

    from osctld.distconfig.netconfig import IfaceConfig
    from osctld.runtime.vm import guest_net

    iface = IfaceConfig(name="eth0", kind="routed", hwaddr="02:00:00:00:00:01",
                        addresses=[ipaddress.ip_interface("10.100.0.2/30"),
                                   ipaddress.ip_interface("192.0.2.10/32")],
                        gateway4=ipaddress.ip_address("10.100.0.1"),
                        src4=ipaddress.ip_address("192.0.2.10"))
    word = "osctld.net=02:00:00:00:00:01,eth0,10.100.0.1,192.0.2.10,-,10.100.0.2/30,192.0.2.10/32"
    assert guest_net(iface) == word
    files, paths = VmFiles(tmp_path / "d"), VmRunPaths(tmp_path / "r")
    files.dir.mkdir()
    (files.dir / "cmdline").write_text("console=ttyS0\n")
    argv = qemu_argv(VmPolicy(), vm(), files, paths, [("osv3", iface)])
    assert argv[argv.index("-append") + 1] == f"console=ttyS0 {word}"
    assert "tap,id=net0,ifname=osv3,script=no,downscript=no" in argv
    assert "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01" in argv


def test_console_escape_across_chunks():
    assert strip_escape(b"ls\n", b"") == (b"ls\n", False, b"")
    assert strip_escape(b"ab\x01q rest", b"") == (b"ab", True, b"")
    # Ctrl-a at a chunk's end is held back until the next byte is known.
    assert strip_escape(b"x\x01", b"") == (b"x", False, b"\x01")
    assert strip_escape(b"q", b"\x01") == (b"", True, b"")
    assert strip_escape(b"b", b"\x01") == (b"\x01b", False, b"")


async def fake_qemu(path: Path, replies: dict, seen: list):
    """A QMP server: greeting, then per command the reply from ``replies``."""

    async def client(reader, writer):
        writer.write(json.dumps({"QMP": {"version": {}, "capabilities": []}}).encode() + b"\n")
        while line := await reader.readline():
            msg = json.loads(line)
            seen.append(msg)
            if msg["execute"] == "quit":
                break
            writer.write(json.dumps({"event": "NOISE"}).encode() + b"\n")  # events interleave
            reply = replies.get(msg["execute"], {"return": {}})
            writer.write(json.dumps({**reply, "id": msg["id"]}).encode() + b"\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(client, path=str(path))


def test_qmp_client(tmp_path):
    async def main():
        seen, events, closed = [], [], []
        sock = tmp_path / "qmp.sock"
        server = await fake_qemu(sock, {
            "query-cpus-fast": {"return": [{}, {}]},
            "block_resize": {"error": {"class": "GenericError", "desc": "Cannot shrink"}},
        }, seen)
        async with server:
            q = await Qmp.connect(str(sock), on_event=events.append, on_close=lambda: closed.append(1))
            assert len(await q.execute("query-cpus-fast")) == 2
            with pytest.raises(QmpError, match="Cannot shrink") as e:
                await q.execute("block_resize", {"node-name": "disk0", "size": 1})
            assert e.value.qmp_class == "GenericError"
            with pytest.raises(QmpError):  # QEMU closes the socket on quit, no reply
                await q.execute("quit", timeout=5)
            assert await q.wait_closed(5)
            with pytest.raises(QmpError, match="not connected"):
                await q.execute("query-status")
        assert [m["execute"] for m in seen] == ["qmp_capabilities", "query-cpus-fast",
                                                "block_resize", "quit"]
        assert seen[2]["arguments"] == {"node-name": "disk0", "size": 1}
        assert events and events[0]["event"] == "NOISE" and closed == [1]

    asyncio.run(main())


def test_qmp_connect_failure(tmp_path):
    with pytest.raises(QmpError, match="cannot talk QMP"):
        asyncio.run(Qmp.connect(str(tmp_path / "none.sock"), timeout=1))
