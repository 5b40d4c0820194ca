"""The wire protocol: framing, malformed input, request envelopes, argument schemas."""

from __future__ import annotations

import msgpack
import pytest

from osctl import protocol
from osctl.protocol import Decoder, FrameError, OsctlError, encode, parse_request
from osctld.commands import CommandSpec, command, REGISTRY
from osctld.dispatch import check_args


# --- framing ------------------------------------------------------------------

def test_round_trip_of_every_message_shape():
    msgs = [
        protocol.greeting("1.2.3"),
        protocol.request(1, "ct.start", {"id": "c1"}),
        protocol.request(2, "ct.exec", {"id": "c1", "argv": ["sh"]}, fds=3),
        protocol.progress(1, {"step": "rootfs", "message": "cloning"}),
        protocol.ok(1, {"id": "c1", "state": "running", "init_pid": 42, "x": [1.5, None, True]}),
        protocol.error(2, OsctlError(protocol.NOT_FOUND, "no such container", {"id": "c9"})),
        protocol.event({"type": "state", "state": "running"}),
        {"id": 3, "ok": b"\x00\xffbinary"},
    ]
    assert Decoder().feed(b"".join(encode(m) for m in msgs)) == msgs


def test_frames_split_across_feeds_at_every_byte():
    msgs = [protocol.request(i, "ct.ls", {"pool": "p" * i}) for i in range(1, 6)]
    data = b"".join(encode(m) for m in msgs)
    for cut in range(len(data) + 1):
        d = Decoder()
        assert d.feed(data[:cut]) + d.feed(data[cut:]) == msgs


def test_byte_at_a_time():
    msg = protocol.ok(7, {"rows": list(range(100))})
    d = Decoder()
    out = []
    for b in encode(msg):
        out += d.feed(bytes([b]))
    assert out == [msg]


def test_many_frames_in_one_feed():
    msgs = [protocol.request(i, "daemon.status") for i in range(1000)]
    assert Decoder().feed(b"".join(encode(m) for m in msgs)) == msgs


@pytest.mark.parametrize("garbage", [
    b"\xc1",  # the one byte msgpack never uses
    b"\xc1\xc1\xc1garbage",
    b"\x91" * 5000,  # nesting deeper than the unpacker's stack
])
def test_garbage_bytes_are_a_frame_error(garbage):
    with pytest.raises(FrameError):
        Decoder().feed(garbage)


@pytest.mark.parametrize("value", [1, "str", [1, 2], None, True, b"bin", 1.5])
def test_a_frame_that_is_not_a_map_is_refused(value):
    with pytest.raises(FrameError, match="expected a map"):
        Decoder().feed(msgpack.packb(value))


def test_non_map_after_good_frames_is_refused():
    with pytest.raises(FrameError):
        Decoder().feed(encode({"id": 1}) + msgpack.packb([1]))


def test_oversized_frame_in_one_feed():
    big = encode({"id": 1, "cmd": "x", "args": {"blob": "a" * 2000}})
    with pytest.raises(FrameError, match="larger than 1024"):
        Decoder(max_frame=1024).feed(big)


def test_oversized_frame_across_feeds():
    big = encode({"id": 1, "cmd": "x", "args": {"blob": "a" * 5000}})
    d = Decoder(max_frame=1024)
    with pytest.raises(FrameError):
        for i in range(0, len(big), 100):
            d.feed(big[i:i + 100])


def test_oversized_length_header_is_refused_within_the_limit():
    # A str header announcing 100 MB: the stream is refused once the limit is
    # reached, long before the announced bytes are buffered.
    d = Decoder(max_frame=1024)
    fed = 0
    with pytest.raises(FrameError):
        d.feed(b"\x81\xa2id\xdb" + (100 * 1024 * 1024).to_bytes(4, "big"))
        while fed <= 1024:
            d.feed(b"a" * 100)
            fed += 100
    assert fed <= 1024


def test_frames_up_to_the_limit_pass_one_after_another():
    d = Decoder(max_frame=1024)
    msg = {"id": 1, "blob": "a" * 900}
    for _ in range(20):
        assert d.feed(encode(msg)) == [msg]


# --- errors on the wire ---------------------------------------------------------

def test_error_round_trip_and_unknown_codes():
    e = OsctlError(protocol.BUSY, "held", {"by": "ct.start"})
    back = OsctlError.from_wire(e.to_wire())
    assert (back.code, back.message, back.details) == ("busy", "held", {"by": "ct.start"})
    assert OsctlError.from_wire({"code": "bogus", "message": "m"}).code == protocol.INTERNAL
    assert OsctlError.from_wire("not a map").code == protocol.INTERNAL
    with pytest.raises(ValueError):
        OsctlError("bogus", "x")


# --- request envelopes --------------------------------------------------------------

def test_parse_request_accepts_a_good_one():
    req = parse_request({"id": 5, "cmd": "ct.exec", "args": {"id": "c"}, "fds": 3})
    assert (req.id, req.cmd, req.args, req.fds) == (5, "ct.exec", {"id": "c"}, 3)
    assert parse_request({"id": 1, "cmd": "x", "args": None}).args == {}
    assert parse_request({"id": 1, "cmd": "x"}).args == {}


@pytest.mark.parametrize("msg,what", [
    ({"cmd": "x"}, "id"),
    ({"id": "1", "cmd": "x"}, "id"),
    ({"id": True, "cmd": "x"}, "id"),
    ({"id": 1.0, "cmd": "x"}, "id"),
    ({"id": 1}, "cmd"),
    ({"id": 1, "cmd": ""}, "cmd"),
    ({"id": 1, "cmd": 7}, "cmd"),
    ({"id": 1, "cmd": "x", "args": [1]}, "args"),
    ({"id": 1, "cmd": "x", "args": "a"}, "args"),
    ({"id": 1, "cmd": "x", "fds": 5}, "fds"),
    ({"id": 1, "cmd": "x", "fds": -1}, "fds"),
    ({"id": 1, "cmd": "x", "fds": True}, "fds"),
])
def test_parse_request_refuses_bad_envelopes(msg, what):
    with pytest.raises(OsctlError) as e:
        parse_request(msg)
    assert e.value.code == protocol.INVALID
    assert what in e.value.message


# --- argument schemas -------------------------------------------------------------

@pytest.fixture(scope="module")
def spec() -> CommandSpec:
    @command("test.schema")
    async def handler(ctx, name: str, count: int = 1, flag: bool = False,
                      ratio: float = 1.0, tags: list[str] | None = None,
                      size: str | int | None = None, env: dict | None = None) -> None:
        """A verb for this test only."""

    try:
        yield REGISTRY["test.schema"]
    finally:
        del REGISTRY["test.schema"]


def test_check_args_passes_good_args(spec):
    args = {"name": "a", "count": 2, "flag": True, "ratio": 2, "tags": ["x"], "size": "1G",
            "env": {"K": "V"}}
    assert check_args(spec, args) == args
    assert check_args(spec, {"name": "a", "size": 5, "tags": None}) == {"name": "a", "size": 5, "tags": None}
    assert spec.required == {"name"}
    assert spec.summary == "A verb for this test only."


@pytest.mark.parametrize("args,words", [
    ({}, ["missing", "name"]),
    ({"name": "a", "bogus": 1}, ["unknown", "bogus"]),
    ({"name": 1}, ["'name'", "str", "int"]),
    ({"name": "a", "count": "2"}, ["'count'", "int"]),
    ({"name": "a", "count": True}, ["'count'", "int", "bool"]),  # a bool is no int
    ({"name": "a", "flag": 1}, ["'flag'", "bool", "int"]),  # nor an int a bool
    ({"name": "a", "ratio": False}, ["'ratio'"]),
    ({"name": "a", "tags": "x"}, ["'tags'"]),
    ({"name": "a", "tags": ["x", 1]}, ["'tags'"]),
    ({"name": "a", "size": True}, ["'size'"]),
    ({"name": "a", "size": 1.5}, ["'size'"]),
    ({"name": "a", "env": ["K=V"]}, ["'env'"]),
    ({"name": None}, ["'name'"]),
])
def test_check_args_refuses_bad_args(spec, args, words):
    with pytest.raises(OsctlError) as e:
        check_args(spec, args)
    assert e.value.code == protocol.INVALID
    for w in words:
        assert w in e.value.message
    assert e.value.message.startswith("test.schema:")


def test_every_registered_verb_has_a_checkable_schema():
    from osctld.commands import load_all

    load_all()
    for name, s in REGISTRY.items():
        assert s.summary, f"{name} has no docstring"
        with pytest.raises(OsctlError):
            check_args(s, {"__nope__": 1})


# --- the frame limit, to the byte (issue 8) ---------------------------------------

def frame_of(size: int) -> bytes:
    """A request frame of exactly ``size`` bytes."""
    for n in range(size):
        data = encode({"id": 1, "cmd": "x", "args": {"blob": "a" * n}})
        if len(data) == size:
            return data
    raise AssertionError(f"no frame of {size} bytes")


def feeds(data: bytes, how: str) -> list[bytes]:
    step = {"whole": len(data), "pieces": 100, "bytes": 1}[how]
    return [data[i:i + step] for i in range(0, len(data), step)]


@pytest.mark.parametrize("how", ["whole", "pieces", "bytes"])
@pytest.mark.parametrize("over", [1, 2, 3, 100])
def test_a_frame_just_over_the_limit_is_refused(how, over):
    d = Decoder(max_frame=1024)
    with pytest.raises(FrameError, match="larger than 1024"):
        for chunk in feeds(frame_of(1024 + over), how):
            d.feed(chunk)


@pytest.mark.parametrize("how", ["whole", "pieces", "bytes"])
def test_frames_of_exactly_the_limit_pass(how):
    d = Decoder(max_frame=1024)
    data = frame_of(1024) * 3 + frame_of(1000)
    out = []
    for chunk in feeds(data, how):
        out += d.feed(chunk)
    assert len(out) == 4


def test_a_frame_of_many_small_values_fed_in_pieces_is_refused():
    # Each piece is parsed (and freed) as it comes: only counting the frame's
    # own bytes catches a frame that never fills msgpack's buffer at once.
    data = encode({"id": 1, "cmd": "x", "args": {f"k{i}": [1] * 50 for i in range(200)}})
    assert len(data) > 10 * 1024
    d = Decoder(max_frame=1024)
    with pytest.raises(FrameError, match="larger than 1024"):
        for chunk in feeds(data, "pieces"):
            d.feed(chunk)


def test_one_feed_bigger_than_the_limit_of_small_frames_passes():
    msgs = [protocol.request(i, "daemon.status") for i in range(500)]
    assert Decoder(max_frame=1024).feed(b"".join(encode(m) for m in msgs)) == msgs


@pytest.mark.parametrize("garbage", [b"\xc1", b"\x91" * 5000, b"\x81\xa1a\xa2\xff\xfe"])
def test_malformed_msgpack_says_what_is_wrong(garbage):
    with pytest.raises(FrameError) as e:
        Decoder().feed(garbage)
    detail = str(e.value).split(":", 1)[1].strip()
    assert str(e.value).startswith("malformed msgpack") and detail


@pytest.mark.parametrize("msg,expected", [
    ({"id": 7}, 7), ({"id": True}, None), ({"id": False}, None), ({"id": "7"}, None),
    ({"id": 1.0}, None), ({}, None),
])
def test_the_id_a_reply_carries(msg, expected):
    assert protocol.request_id(msg) == expected
