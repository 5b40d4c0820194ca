"""The wire protocol between osctl (or any frontend) and osctld.

Kept apart from any I/O, in the manner of h11: a Decoder is fed bytes and
hands back whole messages, and the message builders return plain dicts. Both
the daemon and the client use this module, so the two cannot drift apart.

Framing is a stream of msgpack maps. Each map is one message; the decoder
refuses a frame bigger than ``max_frame`` (so a hostile peer cannot make the
daemon buffer without bound) and anything that is not a map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
# File descriptors a single request may carry (stdin, stdout, stderr and spare).
MAX_FDS = 4

# The fixed set of error codes. Clients switch on these, never on messages.
NOT_FOUND = "not_found"
EXISTS = "exists"
INVALID = "invalid"
BUSY = "busy"
CONFLICT = "conflict"
DENIED = "denied"
UNSUPPORTED = "unsupported"
INTERNAL = "internal"
CANCELLED = "cancelled"
ERROR_CODES = frozenset(
    {NOT_FOUND, EXISTS, INVALID, BUSY, CONFLICT, DENIED, UNSUPPORTED, INTERNAL, CANCELLED}
)


# Exit statuses by error code (osctl's, and the receiving node's forced
# command's), so scripts can tell "not found" from "busy".
EXIT_CODES = {NOT_FOUND: 3, EXISTS: 4, INVALID: 2, BUSY: 5, CONFLICT: 6, DENIED: 7,
              UNSUPPORTED: 8, CANCELLED: 130}


def exit_code(code: str) -> int:
    return EXIT_CODES.get(code, 1)


class OsctlError(Exception):
    """An error with a wire code. Raised by daemon code, re-raised by clients."""

    def __init__(self, code: str, message: str, details: Any = None):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_wire(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return err

    @classmethod
    def from_wire(cls, err: Any) -> "OsctlError":
        if not isinstance(err, dict):
            return cls(INTERNAL, f"malformed error from peer: {err!r}")
        code = err.get("code")
        if code not in ERROR_CODES:
            code = INTERNAL
        return cls(code, str(err.get("message", "")), err.get("details"))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class FrameError(Exception):
    """The byte stream cannot be decoded any further: the connection is done."""


class EncodeError(ValueError):
    """A message holds what msgpack cannot carry: an integer beyond 64 bits,
    a string over 4 GiB, an object that is no msgpack type."""


def encode(message: dict) -> bytes:
    try:
        return msgpack.packb(message, use_bin_type=True)
    except (OverflowError, ValueError, TypeError) as e:
        raise EncodeError(f"cannot encode the message: {e}") from e


class Decoder:
    """Incremental decoder: ``feed(bytes)`` returns the complete messages.

    The frame limit is counted here, in bytes of the stream since the end of
    the last message: msgpack's own ``max_buffer_size`` bounds only what it
    has not parsed yet, so a frame fed in pieces could pass it."""

    # What msgpack says about its errors, where it says nothing.
    _WHAT = {msgpack.FormatError: "a byte that starts no msgpack value",
             msgpack.StackError: "values nested too deeply"}

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._unpacker = msgpack.Unpacker(
            raw=False,
            max_buffer_size=max_frame + 1,
            strict_map_key=False,
        )
        self._fed = 0  # bytes of the stream so far
        self._start = 0  # where the frame being received began

    def feed(self, data: bytes) -> list[dict]:
        out: list[dict] = []
        view = memoryview(data)
        while view:
            # Never more than one byte past the limit of the frame under way.
            room = self.max_frame + 1 - (self._fed - self._start)
            chunk, view = view[:room], view[room:]
            self._unpacker.feed(chunk)
            self._fed += len(chunk)
            out += self._frames()
            if self._fed - self._start > self.max_frame:
                raise self._too_big()
        return out

    def _frames(self) -> list[dict]:
        out = []
        try:
            for msg in self._unpacker:
                end = self._unpacker.tell()
                if end - self._start > self.max_frame:
                    raise self._too_big()
                self._start = end
                if not isinstance(msg, dict):
                    raise FrameError(f"expected a map, got {type(msg).__name__}")
                out.append(msg)
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as e:
            if "exceeds max_" in str(e):  # a header announcing more than a frame can hold
                raise self._too_big() from None
            what = str(e) or self._WHAT.get(type(e), type(e).__name__)
            raise FrameError(f"malformed msgpack at byte {self._unpacker.tell()}: {what}") from None
        return out

    def _too_big(self) -> FrameError:
        return FrameError(f"frame larger than {self.max_frame} bytes")


# --- message builders ---------------------------------------------------------

def greeting(version: str) -> dict:
    return {"osctld": version, "protocol": PROTOCOL_VERSION}


def request(req_id: int, cmd: str, args: dict | None = None, fds: int = 0) -> dict:
    msg = {"id": req_id, "cmd": cmd, "args": args or {}}
    if fds:
        msg["fds"] = fds
    return msg


def progress(req_id: int, data: dict) -> dict:
    return {"id": req_id, "progress": data}


def ok(req_id: int, result: Any) -> dict:
    return {"id": req_id, "ok": result}


def error(req_id: Any, err: OsctlError) -> dict:
    return {"id": req_id, "error": err.to_wire()}


# What the daemon publishes, and what ``event.subscribe`` may ask for:
# objects' states (``up``/``down``: a netif's), objects added, removed and
# changed, commands (run, done, failed), maintenances and staged deletions.
EVENT_TYPES = ("state", "up", "down", "add", "remove", "change", "command", "maintenance",
               "deletion")
# The kinds of object events (and command events) name in ``object``.
EVENT_OBJECTS = ("ct", "vm", "netif", "user", "group", "pool", "flavor", "account",
                 "maintenance")


def event(data: dict) -> dict:
    return {"event": data}


@dataclass
class Request:
    id: int
    cmd: str
    args: dict = field(default_factory=dict)
    fds: int = 0


def request_id(msg: dict) -> int | None:
    """The id a reply to ``msg`` carries: its own if it is an integer (a bool
    is none), else None."""
    req_id = msg.get("id")
    return req_id if isinstance(req_id, int) and not isinstance(req_id, bool) else None


def parse_request(msg: dict) -> Request:
    """Validate the envelope of a request; arguments are checked per command."""
    req_id = request_id(msg)
    if req_id is None:
        raise OsctlError(INVALID, "request needs an integer 'id'")
    cmd = msg.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise OsctlError(INVALID, "request needs a string 'cmd'")
    args = msg.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise OsctlError(INVALID, "'args' must be a map")
    fds = msg.get("fds", 0)
    if not isinstance(fds, int) or isinstance(fds, bool) or not 0 <= fds <= MAX_FDS:
        raise OsctlError(INVALID, f"'fds' must be an integer from 0 to {MAX_FDS}")
    return Request(req_id, cmd, args, fds)
