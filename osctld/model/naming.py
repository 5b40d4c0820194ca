"""One strict pattern for every name that reaches a path, cgroup or LXC name."""

from __future__ import annotations

import re

from osctl.protocol import INVALID, OsctlError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# Hostnames are seen by the tenant's software, so follow RFC 1123 instead.
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or ".." in value:
        raise OsctlError(
            INVALID,
            f"invalid {kind} name {value!r}: use 1-63 of a-z 0-9 _ . -, "
            "starting with a letter or digit",
        )
    return value


def check_hostname(value: object) -> str:
    if not isinstance(value, str) or not HOSTNAME_RE.fullmatch(value):
        raise OsctlError(INVALID, f"invalid hostname {value!r}")
    return value


# The kernel's limits: PATH_MAX (with its NUL) and NAME_MAX, in bytes.
PATH_MAX, NAME_MAX = 4095, 255


def check_path(what: str, value: str) -> str:
    """A host path the kernel can take: no NUL, no part over NAME_MAX bytes,
    the whole within PATH_MAX (ENAMETOOLONG is the operator's mistake, not
    an internal error)."""
    raw = value.encode(errors="surrogateescape")
    if "\0" in value:
        raise OsctlError(INVALID, f"{what} {value[:60]!r} holds a NUL byte")
    if len(raw) > PATH_MAX or any(len(p) > NAME_MAX for p in raw.split(b"/")):
        raise OsctlError(INVALID, f"{what} {value[:60]!r}... is too long: {PATH_MAX} bytes at most, "
                                  f"{NAME_MAX} for each part")
    return value
