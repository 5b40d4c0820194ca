"""Bad input over the raw socket never takes the daemon down.

After each kind of bad request the daemon is alive and a good request on a
new connection succeeds. The rules a request is checked by (its envelope,
verbs, arguments, ids, descriptors) are unit-tested without a socket in
tests/unit/test_dispatch.py; here are the frames and a real daemon's answers.
"""

from __future__ import annotations

import socket
import time

import msgpack
import pytest

from osctl import protocol

MAX_FRAME = 65536


class Raw:
    """A bare protocol peer: bytes out, decoded frames in."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.decoder = protocol.Decoder()
        self.pending: list[dict] = []
        self.greeting = self.read()

    def send(self, data: bytes | dict) -> None:
        self.sock.sendall(data if isinstance(data, bytes) else protocol.encode(data))

    def read(self) -> dict | None:
        """The next frame, or None when the daemon closed the connection."""
        while not self.pending:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:  # closed with our bytes still unread
                return None
            if not data:
                return None
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def until_closed(self) -> list[dict]:
        out = []
        while (msg := self.read()) is not None:
            out.append(msg)
        return out

    def final(self, req_id: int) -> dict:
        """Skip progress frames until the final reply of ``req_id``."""
        while True:
            msg = self.read()
            assert msg is not None, "connection closed before the reply"
            if msg.get("id") == req_id and "progress" not in msg:
                return msg

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_node(node):
    """A node with a small frame limit and a running busybox container."""
    node.config["max_frame"] = MAX_FRAME
    node.restart()
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "c1", "--user", "u")
    node.osctl("ct", "start", "c1")
    return node


def still_serving(node) -> None:
    assert node.proc.poll() is None, "osctld died"
    r = Raw(node.socket)
    try:
        r.send(protocol.request(1, "ct.show", {"id": "c1"}))
        assert r.final(1)["ok"]["state"] == "running"
    finally:
        r.close()
    assert node.osctl_json("status")["containers"] == 1


def frame_of(size: int) -> bytes:
    """A ct.ls request of exactly ``size`` bytes (of a pool with no containers)."""
    for n in range(size - 64, size):
        data = protocol.encode(protocol.request(1, "ct.ls", {"pool": "x" * n}))
        if len(data) == size:
            return data
    raise AssertionError(f"no frame of {size} bytes")


def error_of(msg: dict) -> tuple:
    return msg.get("id"), msg["error"]["code"]


def test_malformed_msgpack_closes_that_connection_only(raw_node):
    bystander = Raw(raw_node.socket)
    for garbage in (b"\xc1", b"\xc1\x00\xffnot msgpack at all", b"\x91" * 5000):
        r = Raw(raw_node.socket)
        r.send(garbage)
        msgs = r.until_closed()
        assert [error_of(m) for m in msgs] == [(None, "invalid")], garbage
        assert "malformed" in msgs[0]["error"]["message"]
        assert msgs[0]["error"]["message"].split(":", 1)[1].strip(), "no detail"
        # The other connection is served on.
        bystander.send(protocol.request(5, "daemon.status"))
        assert bystander.final(5)["ok"]["containers"] == 1
        still_serving(raw_node)


def test_bad_frames_and_requests(raw_node):
    node = raw_node
    # A frame that is not a map: that connection is closed.
    r = Raw(node.socket)
    r.send(msgpack.packb([1, "ct.ls", {}]))
    msgs = r.until_closed()
    assert [error_of(m) for m in msgs] == [(None, "invalid")]
    assert "expected a map" in msgs[0]["error"]["message"]
    still_serving(node)

    # An oversized frame: refused, connection closed, nothing buffered.
    r = Raw(node.socket)
    big = protocol.encode(protocol.request(1, "ct.ls", {"pool": "x" * (2 * MAX_FRAME)}))
    try:
        r.send(big)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon hung up before taking it all
    msgs = r.until_closed()
    assert [error_of(m) for m in msgs] == [(None, "invalid")]
    assert "larger than" in msgs[0]["error"]["message"]
    still_serving(node)

    # To the byte: a frame of the limit is served, one of a byte or two more is not.
    for size, closed in ((MAX_FRAME, False), (MAX_FRAME + 1, True), (MAX_FRAME + 2, True)):
        r = Raw(node.socket)
        r.send(frame_of(size))
        if closed:
            msgs = r.until_closed()
            assert [error_of(m) for m in msgs] == [(None, "invalid")], size
            assert "larger than" in msgs[0]["error"]["message"]
        else:
            assert r.read() == {"id": 1, "ok": []}
        r.close()
    still_serving(node)

    # Bad requests in well-formed frames: an error each, the connection lives on.
    r = Raw(node.socket)
    cases = [
        ({"cmd": "ct.ls"}, None, "integer 'id'"),
        ({"id": 4, "cmd": "no.such.verb"}, 4, "unknown command"),
        ({"id": 10, "cmd": "ct.exec", "args": {"id": "c1", "argv": ["true"]}, "fds": 3}, 10,
         "announced 3 file descriptors"),
        ({"id": 11, "cmd": "ct.show", "args": {"id": "../../etc"}}, 11, "not found"),
    ]
    for msg, req_id, words in cases:
        r.send(msg)
        reply = r.read()
        assert reply is not None, f"connection closed after {msg}"
        assert error_of(reply)[0] == req_id, (msg, reply)
        assert reply["error"]["code"] in ("invalid", "not_found"), (msg, reply)
        assert words in reply["error"]["message"], (msg, reply)
    # The same connection still answers, and nothing was changed.
    r.send(protocol.request(99, "ct.show", {"id": "c1"}))
    assert r.final(99)["ok"]["state"] == "running"
    r.close()
    still_serving(node)
    assert "bad request" in node.log.read_text()


def test_requests_in_flight_complete_out_of_order(raw_node):
    node = raw_node
    r = Raw(node.socket)
    t0 = time.monotonic()
    r.send(protocol.request(1, "ct.exec", {"id": "c1", "argv": ["sleep", "2"]}))
    r.send(protocol.request(2, "ct.exec", {"id": "c1", "argv": ["sh", "-c", "echo quick"]}))
    r.send(protocol.request(3, "daemon.status"))
    replies = {}
    while len(replies) < 3:
        msg = r.read()
        assert msg is not None
        replies[msg["id"]] = msg
    assert list(replies)[-1] == 1, list(replies)  # the slow one finishes last
    assert time.monotonic() - t0 >= 2
    assert replies[1]["ok"]["exit_code"] == 0
    assert replies[2]["ok"] == {"exit_code": 0, "stdout": b"quick\n", "stderr": b""}
    assert replies[3]["ok"]["running"] == 1
    r.close()
    still_serving(node)

