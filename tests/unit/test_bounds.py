"""Every number an operator gives has a range: sizes, rates, limits, quotas,
prlimits, integer arguments. Out of range is ``invalid`` with the value,
what it is for and the range; a value saved out of range is clamped at load;
a reply that cannot be encoded still becomes an error reply."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import types

import msgpack
import pytest

from osctl import protocol
from osctl.protocol import INVALID, OsctlError
from osctld.commands import REGISTRY, Between, command, load_all
from osctld.dispatch import between, check_args
from osctld.model.container import Container
from osctld.model.limits import Limits, parse_limit
from osctld.model.naming import check_path
from osctld.model.netif import NetIf
from osctld.model.prlimit import check_pair
from osctld.model.quota import Quota
from osctld.model.units import parse_rate, parse_size

BIG = "9" * 23


def refused(fn, *args, match: str):
    with pytest.raises(OsctlError, match=match) as e:
        fn(*args)
    assert e.value.code == INVALID
    return e.value.message


# --- sizes and rates ---------------------------------------------------------------

@pytest.mark.parametrize("text, size", [("512M", 512 << 20), ("1.5G", 3 << 29), ("4096", 4096),
                                        ("0.5k", 512), (1 << 60, 1 << 60), ("1024P", 1 << 60)])
def test_sizes_in_range_are_exact(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["99999999P", "1025P", "9" * 400, BIG, (1 << 60) + 1, -1])
def test_sizes_out_of_range_are_refused_naming_value_and_range(text):
    msg = refused(parse_size, text, "memory limit", match="out of range")
    assert msg.startswith("memory limit ")
    if len(str(text)) < 30:
        assert "0 to 1024P" in msg and str(text) in msg


@pytest.mark.parametrize("text", ["1.5", "0.3k", "1.1G"])
def test_sizes_that_are_no_whole_number_of_bytes_are_refused_not_rounded(text):
    refused(parse_size, text, match="not a whole number of bytes")


@pytest.mark.parametrize("value", [{}, [], True, None, 1.5, "1e3", "ten"])
def test_sizes_of_the_wrong_kind_are_invalid(value):
    refused(parse_size, value, match="invalid size")


def test_rates_from_1k_to_what_tbf_takes_and_zero_is_no_limit():
    assert parse_rate("0") == 0
    assert parse_rate("1k") == 1000
    assert parse_rate("100M") == 100_000_000
    assert parse_rate(8 * (2**32 - 1)) == 8 * (2**32 - 1)
    for bad in ("0.5", "1", "999", "35G", BIG, "9" * 400):
        msg = refused(parse_rate, bad, "max-tx", match="out of range")
        assert msg.startswith("max-tx ")


# --- container and group limits -------------------------------------------------------

@pytest.mark.parametrize("name, value, words", [
    ("memory", "99999999P", "memory limit '99999999P' is out of range: 4M to 1024P"),
    ("memory", "1M", "memory limit '1M' is out of range: 4M to 1024P"),
    ("swap", BIG, "swap limit"),
    ("pids", BIG, f"pids limit '{BIG}' is out of range: 1 to 4194304"),
    ("pids", "0", "pids limit '0' is out of range"),
    ("pids", {"a": 1}, "invalid pids limit"),
    ("cpu_limit", "1e400", "cpu_limit inf is out of range"),
    ("cpu_limit", "nan", "cpu_limit nan is out of range"),
])
def test_limits_out_of_range(name, value, words):
    with pytest.raises(OsctlError) as e:
        parse_limit(name, value, 8.0)
    assert e.value.code == INVALID and words in e.value.message


def test_limits_saved_out_of_range_are_clamped_at_load_with_a_warning(caplog):
    caplog.set_level(logging.WARNING)
    ct = Container.from_dict({"id": "c1", "user": "u", "distribution": "busybox", "version": "1",
                              "limits": {"memory": 99999999 << 50, "pids": 10**23, "swap": 1 << 20},
                              "disk": 10**30, "prlimits": {"nofile": [10**21, 10**21], "nice": [50, 99]},
                              "netifs": [{"name": "eth0", "max_tx": 10**23, "max_rx": 1}]}, "p")
    assert ct.limits == Limits(memory=1 << 60, pids=1 << 22, swap=1 << 20)
    assert ct.disk == 1 << 60
    assert ct.prlimits == {"nofile": [(1 << 63) - 1] * 2, "nice": [40, 40]}
    assert (ct.netifs[0].max_tx, ct.netifs[0].max_rx) == (8 * (2**32 - 1), 1000)
    protocol.encode(ct.public())  # what ct ls sends: encodable again
    assert "container p:c1: memory: saved value" in caplog.text
    assert "container p:c1 eth0: max_tx" in caplog.text


# --- quotas ------------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    ({"ipv4": BIG}, f"ipv4 quota '{BIG}' is out of range: 0 to 4294967296"),
    ({"ipv4": {"a": 1}}, "invalid ipv4 quota {'a': 1}: give a whole number"),
    ({"ipv4": [1]}, "invalid ipv4 quota"),
    ({"containers": "2.5"}, "invalid containers quota '2.5'"),
    ({"memory": "99999999P"}, "memory quota '99999999P' is out of range"),
    ({"memory": "1.5"}, "not a whole number of bytes"),
    ({"cpus": "nan"}, "cpus quota 'nan' is out of range"),
    ({"cpus": "inf"}, "cpus quota 'inf' is out of range"),
    ({"disk": -1}, "disk quota -1 is out of range"),
])
def test_quota_values_out_of_range_or_of_the_wrong_kind(change, words):
    with pytest.raises(OsctlError) as e:
        Quota().updated(change)
    assert e.value.code == INVALID and words in e.value.message


def test_quota_saved_out_of_range_is_clamped():
    assert Quota.from_dict({"ipv4": 10**23, "memory": -1}) == Quota(ipv4=1 << 32, memory=0)


# --- prlimits ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (("nice", "unlimited", None), "prlimit nice cannot be unlimited: its highest value is 40"),
    (("nice", "41", None), "prlimit nice '41' is out of range: 0 to 40"),
    (("rtprio", "100", None), "prlimit rtprio '100' is out of range: 0 to 99"),
    (("rtprio", "1", "unlimited"), "prlimit rtprio cannot be unlimited"),
    (("nofile", "999999999999999999999", None), "prlimit nofile '999999999999999999999' is out of range"),
    (("nproc", {"a": 1}, None), "must be a number"),
    (("nproc", "-5", None), "out of range"),
])
def test_prlimits_out_of_the_kernels_range(args, words):
    with pytest.raises(OsctlError) as e:
        check_pair(*args)
    assert e.value.code == INVALID and words in e.value.message


def test_prlimit_hard_above_the_daemons_own_is_refused_naming_it():
    assert check_pair("nproc", "100", "1000", ceiling=1000) == (100, 1000)
    assert check_pair("nice", "10", None, ceiling=40) == (10, 10)
    with pytest.raises(OsctlError, match="hard 1001 is above osctld's own hard limit, 1000"):
        check_pair("nproc", "100", "1001", ceiling=1000)
    with pytest.raises(OsctlError, match="hard unlimited is above osctld's own hard limit, 1000"):
        check_pair("nproc", "unlimited", None, ceiling=1000)
    assert check_pair("nproc", "unlimited", None, ceiling="unlimited") == ("unlimited", "unlimited")


# --- netifs and paths --------------------------------------------------------------------

def test_netif_rates_are_checked_when_made():
    with pytest.raises(OsctlError, match="max-tx 1bit/s is out of range: 1Kbit/s to 34.36Gbit/s"):
        NetIf(name="eth0", max_tx=1)


def test_paths_too_long_for_the_kernel():
    assert check_path("pool path", "/a/" + "b" * 255) == "/a/" + "b" * 255
    refused(check_path, "pool path", "/a/" + "b" * 256, match="too long")
    refused(check_path, "pool path", "/a" * 2100, match="too long")
    refused(check_path, "pool path", "/a\0b", match="NUL")


# --- argument schemas ---------------------------------------------------------------------

load_all()


def _ints_without_a_range(hint) -> bool:
    """A bare ``int`` that no parser takes (``str | int`` goes to parse_size and friends)."""
    import typing
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    parts = typing.get_args(hint) if union else (hint,)
    return int in parts and str not in parts


def test_every_integer_argument_has_a_range():
    loose = [f"{s.name} {k}" for s in REGISTRY.values() for k, h in s.hints.items()
             if _ints_without_a_range(h)]
    assert loose == []
    assert between(REGISTRY["ct.stop"].hints["timeout"]) == Between(0, 86400)


def test_check_args_refuses_out_of_range_integers_and_nul_bytes():
    spec = REGISTRY["ct.stop"]
    for t in (-1, 86401, 2**63, 2**64 - 1, -(2**63)):
        refused(check_args, spec, {"id": "c1", "timeout": t},
                match="'timeout' is .* out of range: 0 to 86400")
    refused(check_args, spec, {"id": "c\0"}, match="'id' holds a NUL byte")
    refused(check_args, REGISTRY["ct.exec"], {"id": "c", "argv": ["a"], "env": {"K": "v\0"}},
            match="'env' holds a NUL byte")
    assert check_args(spec, {"id": "c1", "timeout": 5}) == {"id": "c1", "timeout": 5}


# Values msgpack can carry, the kinds the adversarial run sent.
NASTY = [None, True, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, float("nan"), "", "\0",
         "x" * 5000, "9" * 400, "../../etc", [], [1, "a", None], {}, {"a": {"b": [1]}},
         {"\0": 1}, b"bytes"]


def test_check_args_fuzz_answers_invalid_or_passes_never_raises_anything_else():
    rng = random.Random(8)
    for spec in REGISTRY.values():
        keys = sorted(spec.hints)
        for _ in range(60):
            args = {k: rng.choice(NASTY) for k in rng.sample(keys, rng.randint(0, len(keys)))}
            if rng.random() < 0.2:
                args[rng.choice(["bogus", "", "\0"])] = 1
            try:
                check_args(spec, args)
            except OsctlError as e:
                assert e.code == INVALID, (spec.name, args, e)


# --- replies that cannot be encoded -----------------------------------------------------

def test_encode_error_names_the_cause():
    with pytest.raises(protocol.EncodeError, match="cannot encode"):
        protocol.encode({"ok": 2**64})


def test_a_reply_that_cannot_be_encoded_still_ends_the_request(monkeypatch, caplog):
    from osctld import server

    @command("test.huge")
    async def huge(ctx) -> dict:
        return {"n": 2**70}

    try:
        asyncio.run(_ask_huge(server))
    finally:
        REGISTRY.pop("test.huge")
    assert "internal error in test.huge" in caplog.text


async def _ask_huge(server) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    node = types.SimpleNamespace(ops={}, events=None, history=None)
    fake = types.SimpleNamespace(node=node, max_frame=1 << 20, accounts=False)
    conn = server.Connection(fake, theirs)
    conn.uid = 0  # whoever runs the unit tests
    task = asyncio.create_task(conn.run())
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(ours, msgpack.packb(protocol.request(1, "test.huge")))
    ours.setblocking(False)
    decoder = protocol.Decoder()
    replies = []
    while not any(m.get("id") == 1 for m in replies):
        replies += decoder.feed(await asyncio.wait_for(loop.sock_recv(ours, 65536), 5))
    reply = next(m for m in replies if m.get("id") == 1)
    assert reply["error"]["code"] == "internal" and reply["error"]["details"]["reference"]
    ours.close()
    await asyncio.wait_for(task, 5)
