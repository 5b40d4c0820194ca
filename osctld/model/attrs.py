"""Free-form metadata on every object: ``vendor:key`` -> a short string.

A frontend ties a server, a user or a group to its own records with them
(``org.example:order`` 1234), as vpsAdminOS's user attributes
(``org.vpsadminos.osctl:...``). The daemon never reads them; it keeps them
with the object's config, shows them and lets listings filter by them. The
vendor part keeps two frontends' keys apart. Their size is bounded, so a
config and every reply that carries it stay small.
"""

from __future__ import annotations

import logging
import re

from osctl.protocol import INVALID, OsctlError

from .bounds import shown

log = logging.getLogger(__name__)

# vendor (a reversed domain or a plain word), a colon, the key.
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_VALUE = 1024  # characters of one value
MAX_ATTRS = 64  # attributes on one object


def check_key(key: object) -> str:
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise OsctlError(INVALID, f"invalid attribute name {shown(key)}: use vendor:key, such as "
                                  "org.example:order (vendor: a-z 0-9 . -; key: letters, digits _ . -)")
    return key


def check_value(key: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_VALUE or not value.isprintable():
        raise OsctlError(INVALID, f"attribute {key}: the value must be printable text of at most "
                                  f"{MAX_VALUE} characters, got {shown(value)}")
    return value


def updated(attrs: dict[str, str], key: str, value: str | None) -> dict[str, str]:
    """``attrs`` with ``key`` set to ``value`` (None: removed), checked; the
    original is left as it is, so a refused change changes nothing."""
    check_key(key)
    out = dict(attrs)
    if value is None:
        out.pop(key, None)
        return out
    out[key] = check_value(key, value)
    if len(out) > MAX_ATTRS:
        raise OsctlError(INVALID, f"at most {MAX_ATTRS} attributes per object: unset one first")
    return out


def loaded(saved: object, where: str) -> dict[str, str]:
    """Attributes as saved: those that pass the checks (a bad one is dropped
    with a warning rather than hiding the object)."""
    out: dict[str, str] = {}
    for k, v in (saved or {}).items() if isinstance(saved, dict) else ():
        try:
            out = updated(out, k, v)
        except OsctlError as e:
            log.warning("%s: attribute dropped: %s", where, e.message)
    return out
