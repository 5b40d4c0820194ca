"""The etcd client: etcd3gw (OpenStack's, pure Python over etcd's /v3/ JSON
gateway; no grpcio) called in threads, so that the daemon's event loop
never waits on the network.

etcd3gw talks to one endpoint; ``Etcd`` holds one client per configured
endpoint and moves on to the next when one cannot be reached, so a node
keeps working while any member of a quorate etcd answers. Keys and values
are bytes on the wire (etcd3gw encodes a ``str`` as latin-1): callers give
and get ``str`` here, UTF-8 on the wire.

Only what the cluster uses: ranges, puts, deletes, compare-and-swap
transactions on a key's mod_revision or on its absence, leases, and the
election service (campaign, leader, resign), which etcd3gw does not wrap.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import etcd3gw
import requests

from .errors import EtcdError, EtcdUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

# The gateway path of etcd 3.4 (Debian's): etcd3gw 2.0's default, /v3alpha/, is gone there.
API_PATH = "/v3/"
# Seconds one request may take before the next endpoint is tried.
REQUEST_TIMEOUT = 3.0


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    """The end of the range of keys starting with ``prefix`` (its last byte + 1)."""
    raw = prefix.encode()
    return _b64(raw[:-1] + bytes([raw[-1] + 1]))


@dataclass(frozen=True)
class KV:
    """A key as read: its value, and the revision of its last change (what a
    compare-and-swap compares) and of its creation."""

    key: str
    value: str
    mod_revision: int
    create_revision: int
    lease: int = 0

    @classmethod
    def parse(cls, kv: dict) -> "KV":
        return cls(_unb64(kv["key"]), _unb64(kv.get("value", "")), int(kv.get("mod_revision", 0)),
                   int(kv.get("create_revision", 0)), int(kv.get("lease", 0)))


class Etcd:
    """A client of the etcd members at ``endpoints`` (``http://ip:2379``)."""

    def __init__(self, endpoints: list[str], timeout: float = REQUEST_TIMEOUT):
        self.clients = []
        for url in endpoints:
            u = urlsplit(url)
            self.clients.append(etcd3gw.Etcd3Client(
                host=u.hostname or "", port=u.port or 2379, protocol=u.scheme or "http",
                timeout=timeout, api_path=API_PATH))
        self._current = 0
        self._turn = threading.Lock()

    # --- the transport ---------------------------------------------------------

    def _post(self, path: str, body: dict, timeout: float | None = None) -> Any:
        """POST ``body`` to the gateway's ``path`` on the endpoint that
        answered last, then on each other in turn (EtcdUnavailable if none).
        With ``timeout`` (a request that waits, a campaign), a timeout is
        the answer (TimeoutError), not a reason to try the next endpoint."""
        with self._turn:
            first = self._current
        errors = []
        for i in range(len(self.clients)):
            n = (first + i) % len(self.clients)
            client = self.clients[n]
            try:
                resp = client.session.post(client.get_url(path), json=body,
                                           timeout=timeout or client.timeout)
            except requests.exceptions.ReadTimeout:
                if timeout is not None:
                    raise TimeoutError(path) from None
                errors.append(f"{client.host}:{client.port}: timed out")
                continue
            except requests.exceptions.RequestException as e:
                errors.append(f"{client.host}:{client.port}: {type(e).__name__}")
                continue
            if resp.status_code != 200:
                try:
                    message = str(resp.json().get("error"))
                except ValueError:
                    message = resp.text[:200]
                if resp.status_code >= 500 and not message.startswith("election:"):
                    # A member out of quorum, or one starting: another may answer.
                    errors.append(f"{client.host}:{client.port}: {message}")
                    continue
                raise EtcdError(message)
            with self._turn:
                self._current = n
            return resp.json()
        raise EtcdUnavailable("no etcd endpoint answered: " + "; ".join(errors))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread."""
        return await asyncio.to_thread(fn, *args)

    # --- keys (blocking; callers run them through ``call`` or a thread) --------

    def get(self, key: str) -> KV | None:
        kvs = self._post("kv/range", {"key": _b64(key)}).get("kvs") or []
        return KV.parse(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str) -> list[KV]:
        body = {"key": _b64(prefix), "range_end": _prefix_end(prefix)}
        return [KV.parse(kv) for kv in self._post("kv/range", body).get("kvs") or []]

    def put(self, key: str, value: str, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        self._post("kv/put", body)

    def delete(self, key: str) -> bool:
        return int(self._post("kv/deleterange", {"key": _b64(key)}).get("deleted", 0)) > 0

    def txn(self, compare: list[dict], success: list[dict], failure: list[dict] = ()) -> dict:  # type: ignore[assignment]
        return self._post("kv/txn", {"compare": compare, "success": success,
                                     "failure": list(failure)})

    def create(self, key: str, value: str, lease: int = 0) -> bool:
        """Put ``key`` only if it does not exist: whether it was put."""
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = lease
        return bool(self.txn([{"key": _b64(key), "target": "CREATE", "result": "EQUAL",
                               "create_revision": "0"}],
                             [{"request_put": put}]).get("succeeded"))

    def put_if_absent(self, key: str, value: str, absent: str) -> bool:
        """Put ``key`` only while key ``absent`` does not exist: whether it was put."""
        return bool(self.txn([{"key": _b64(absent), "target": "CREATE", "result": "EQUAL",
                               "create_revision": "0"}],
                             [{"request_put": {"key": _b64(key), "value": _b64(value)}}]
                             ).get("succeeded"))

    def swap(self, key: str, value: str | None, mod_revision: int,
             present: str | None = None, absent: str | None = None) -> bool:
        """Put ``value`` (None: delete the key) only if the key was last
        changed at ``mod_revision`` (and, in the same transaction, while key
        ``present`` exists and key ``absent`` does not): whether it was."""
        op = ({"request_delete_range": {"key": _b64(key)}} if value is None
              else {"request_put": {"key": _b64(key), "value": _b64(value)}})
        compare = [{"key": _b64(key), "target": "MOD", "result": "EQUAL",
                    "mod_revision": str(mod_revision)}]
        for other, result in ((present, "GREATER"), (absent, "EQUAL")):
            if other is not None:
                compare.append({"key": _b64(other), "target": "CREATE", "result": result,
                                "create_revision": "0"})
        return bool(self.txn(compare, [op]).get("succeeded"))

    # --- leases ------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        return int(self._post("lease/grant", {"TTL": ttl, "ID": 0})["ID"])

    def refresh(self, lease: int) -> int:
        """The lease's TTL after a keepalive; -1 if it has expired."""
        result = self._post("lease/keepalive", {"ID": lease}).get("result") or {}
        return int(result.get("TTL", -1))

    def revoke(self, lease: int) -> None:
        self._post("kv/lease/revoke", {"ID": lease})

    # --- election ------------------------------------------------------------------

    def campaign(self, name: str, lease: int, value: str, timeout: float) -> dict | None:
        """Stand in election ``name`` on ``lease``: the leader key (name, key,
        rev, lease) once elected, None if ``timeout`` passed first (the
        gateway then withdraws the candidacy: its request's context ends)."""
        try:
            return self._post("election/campaign", {"name": _b64(name), "lease": lease,
                                                    "value": _b64(value)},
                              timeout=timeout)["leader"]
        except TimeoutError:
            return None

    def leader(self, name: str) -> KV | None:
        """The current leader's key of election ``name`` (its value says who)."""
        try:
            kv = self._post("election/leader", {"name": _b64(name)}).get("kv")
        except EtcdError as e:
            if "no leader" in str(e):
                return None
            raise
        return KV.parse(kv) if kv else None

    def resign(self, leader: dict) -> None:
        self._post("election/resign", {"leader": leader})
