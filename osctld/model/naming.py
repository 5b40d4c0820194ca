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
