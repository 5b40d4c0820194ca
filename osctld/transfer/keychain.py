"""The keys other nodes may send servers here with (``<state_dir>/receive-keys.yml``),
and the ``authorized_keys`` file sshd reads for the receive user.

sshd matches a key, then runs the forced command of its line (``restrict``:
no pty, no forwarding) with the key's name; the daemon then checks what
sshd cannot say clearly: the sender's address (``from``), the container
IDs the key may send (``ctid``) and whether a single-use key was used
already. A refusal there reaches the sender as a message, where sshd's own
would be "Permission denied". The keychain is node state, as accounts are;
the file is rewritten whole and atomically at each change, and the
authorized_keys file made anew from it (at start as well).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import ipaddress
import logging
import shlex
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from osctl.protocol import DENIED, EXISTS, INVALID, NOT_FOUND, OsctlError

from ..model.naming import check_name
from ..store import atomic_write, read_doc, write_doc

log = logging.getLogger(__name__)

KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})
# A public key line is a few hundred bytes (RSA 16384 bits: under 3 KiB).
MAX_KEY = 8192


def parse_pubkey(text: str) -> str:
    """``type base64`` of one OpenSSH public key line (its comment dropped),
    checked: one line, a known type, base64 whose first field names that
    type. Options (``command=...``) are refused: the daemon writes those."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != 1 or len(lines[0]) > MAX_KEY:
        raise OsctlError(INVALID, "give exactly one public key line (ssh-ed25519 AAAA... comment)")
    parts = lines[0].split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise OsctlError(INVALID, f"not an OpenSSH public key line: it must start with one of "
                                  f"{', '.join(sorted(KEY_TYPES))}")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        inner = blob[4:4 + n].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise OsctlError(INVALID, "the public key's base64 part is damaged") from None
    if inner != parts[0]:
        raise OsctlError(INVALID, f"the public key says {parts[0]} but holds {inner!r}")
    return f"{parts[0]} {parts[1]}"


def _pattern(value: str, what: str) -> str:
    if not value or any(c in value for c in "\n\r\"\\,") or len(value) > 255:
        raise OsctlError(INVALID, f"invalid {what} pattern {value!r}")
    return value


def address_matches(ip: str, pattern: str) -> bool:
    """Whether the sender's address ``ip`` matches ``pattern``: a network
    (``192.0.2.0/24``), an address, or a shell pattern (``192.0.2.*``)."""
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return fnmatch.fnmatchcase(ip, pattern)


@dataclass
class AuthorizedKey:
    name: str
    pubkey: str  # "type base64"
    # Where it may come from: networks, addresses or shell patterns; empty: anywhere.
    from_patterns: list[str] = field(default_factory=list)
    ctid: str | None = None  # shell pattern of the container IDs it may send; None: any
    single_use: bool = False  # good for one transfer (or one call that opens none)
    used: bool = False  # a single-use key that served its call
    token: str | None = None  # the transfer a used single-use key serves
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        check_name("key", self.name)
        self.pubkey = parse_pubkey(self.pubkey)
        self.from_patterns = [_pattern(p, "--from") for p in self.from_patterns]
        if self.ctid is not None:
            _pattern(self.ctid, "--ctid")

    def to_dict(self) -> dict:
        return asdict(self)

    def public(self) -> dict:
        kind, blob = self.pubkey.split()
        return {**self.to_dict(), "pubkey": self.pubkey, "type": kind,
                "fingerprint": fingerprint(blob)}

    def check(self, peer_ip: str, args: dict) -> None:
        """Refuse (``denied``) a call from ``peer_ip`` with ``args`` this key
        may not make: from elsewhere, for another container ID, or a second
        use of a single-use key (other than a call of the transfer it opened:
        one that names its ``token``)."""
        if self.from_patterns and not any(address_matches(peer_ip, p) for p in self.from_patterns):
            raise OsctlError(DENIED, f"key {self.name} may be used from "
                                     f"{', '.join(self.from_patterns)} only, not from {peer_ip}")
        ctid = args.get("id")
        if self.ctid is not None and isinstance(ctid, str) and not fnmatch.fnmatchcase(ctid, self.ctid):
            raise OsctlError(DENIED, f"key {self.name} may send containers {self.ctid} only, "
                                     f"not {ctid}")
        if self.single_use and self.used and (self.token is None or args.get("token") != self.token):
            raise OsctlError(DENIED, f"single-use key {self.name} was used already")


def fingerprint(blob: str) -> str:
    """OpenSSH's SHA256 fingerprint of a key's base64 part."""
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class Keychain:
    """The authorized keys, kept in ``path``; ``authorized_keys`` is what sshd
    reads, each line running ``command`` (argv) with the key's name."""

    def __init__(self, path: Path, authorized_keys: Path, command: list[str]):
        self.path = Path(path)
        self.authorized_keys = Path(authorized_keys)
        self.command = command
        self.keys: dict[str, AuthorizedKey] = {}

    def load(self) -> None:
        if self.path.exists():
            self.keys = {k.name: k for k in (AuthorizedKey(**d) for d in
                                              read_doc(self.path).get("keys") or [])}
        self.deploy()
        log.info("%d authorized keys to receive with", len(self.keys))

    def all(self) -> list[AuthorizedKey]:
        return [self.keys[n] for n in sorted(self.keys)]

    def get(self, name: str) -> AuthorizedKey:
        try:
            return self.keys[name]
        except KeyError:
            raise OsctlError(NOT_FOUND, f"no authorized key {name!r}") from None

    def add(self, key: AuthorizedKey) -> None:
        if key.name in self.keys:
            raise OsctlError(EXISTS, f"authorized key {key.name} exists")
        same = next((k for k in self.keys.values() if k.pubkey == key.pubkey), None)
        if same is not None:
            # sshd takes the first line that matches: a second would never be used.
            raise OsctlError(EXISTS, f"that public key is authorized already, as {same.name}")
        self._commit({**self.keys, key.name: key})

    def replace(self, key: AuthorizedKey) -> None:
        self.get(key.name)
        self._commit({**self.keys, key.name: key})

    def remove(self, name: str) -> AuthorizedKey:
        key = self.get(name)
        self._commit({n: k for n, k in self.keys.items() if n != name})
        return key

    def lines(self) -> str:
        out = []
        for key in self.all():
            cmd = shlex.join([*self.command, key.name])
            out.append(f'restrict,command="{cmd}" {key.pubkey} osctld:{key.name}\n')
        return "".join(out)

    def deploy(self) -> None:
        """Write authorized_keys anew: readable by the receive user, whose
        identity sshd reads it with; not writable by it."""
        self.authorized_keys.parent.mkdir(parents=True, exist_ok=True)
        self.authorized_keys.parent.chmod(0o755)
        atomic_write(self.authorized_keys, self.lines().encode(), mode=0o644, durable=False)

    def _commit(self, table: dict[str, AuthorizedKey]) -> None:
        write_doc(self.path, {"keys": [table[n].to_dict() for n in sorted(table)]})
        self.keys = table
        self.deploy()
