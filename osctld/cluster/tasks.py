"""The task queue: work one node asks another to do (create an instance
there, place one as the leader, move one).

A task is a key ``tasks/<node>/<id>`` holding {"verb", "args", "by",
"created"}; its node's runner takes it off the queue (a delete at the
revision read, so it runs once) and runs the handler registered for its
verb, writing ``results/<id>``: {"state": "running", "progress", "lines"
(every progress line so far)}, then
{"state": "done", "value"} or {"state": "failed", "code", "error"}. The
asker (``call``) polls the result and passes the progress on.

Handlers register with ``@task("verb")`` and are called as
``handler(node, args, progress)``; ``progress(text)`` says how far it got.
An OsctlError they raise reaches the asker with its code.

The runner polls its queue (every POLL seconds) rather than watching it:
etcd3gw's watch is a thread on one streaming connection to one member,
which would have to be set up again on another member whenever that one
goes; a range read every half second costs a member nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from osctl.protocol import BUSY, ERROR_CODES, INTERNAL, OsctlError

from .errors import EtcdError, EtcdUnavailable
from .store import ClusterStore, key

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
Handler = Callable[["Node", dict, Progress], Awaitable[Any]]
TASKS: dict[str, Handler] = {}
POLL = 0.5
# Seconds a task may wait for its node to take it: a node that does not is down.
TAKE_TIMEOUT = 20.0


def task(verb: str) -> Callable[[Handler], Handler]:
    """Register the decorated handler as what task ``verb`` runs."""
    if verb in TASKS:
        raise RuntimeError(f"task {verb} registered twice")
    return lambda handler: TASKS.setdefault(verb, handler)


class TaskRunner:
    """Runs the tasks queued for node ``name`` (each as its own asyncio task)."""

    def __init__(self, store: ClusterStore, name: str, node: Node):
        self.store = store
        self.name = name
        self.node = node
        self.running: set[asyncio.Task] = set()

    async def run(self) -> None:
        while True:
            try:
                for tid, t in await self.store.take_tasks(self.name):
                    job = asyncio.create_task(self._run(tid, t))
                    self.running.add(job)
                    job.add_done_callback(self.running.discard)
            except (EtcdUnavailable, EtcdError) as e:
                log.debug("cluster: task queue: %s", e)
            await asyncio.sleep(POLL)

    async def _run(self, tid: str, t: dict) -> None:
        verb, args = t.get("verb"), t.get("args") or {}
        log.info("cluster: task %s %s from %s", tid[:8], verb, t.get("by"))
        last: list[asyncio.Task] = []
        lines: list[str] = []  # all of them: the asker polls, and must miss none

        def progress(text: str) -> None:
            lines.append(text)
            last.append(asyncio.ensure_future(self.store.put_result(
                tid, {"state": "running", "progress": text, "lines": list(lines)})))

        try:
            handler = TASKS.get(str(verb))
            if handler is None:
                raise OsctlError(INTERNAL, f"node {self.name} knows no task {verb!r}")
            await self.store.put_result(tid, {"state": "running", "progress": None})
            value = await handler(self.node, args, progress)
            result = {"state": "done", "value": value}
        except OsctlError as e:
            result = {"state": "failed", "code": e.code, "error": e.message}
        except Exception as e:
            log.exception("cluster: task %s %s failed", tid[:8], verb)
            result = {"state": "failed", "code": INTERNAL,
                      "error": f"task {verb} failed on node {self.name}: {e}"}
        if last:
            await asyncio.wait(last)  # a late progress must not overwrite the end
        try:
            await self.store.put_result(tid, {**result, "lines": lines})
        except (EtcdUnavailable, EtcdError) as e:
            log.error("cluster: task %s: its result is lost: %s", tid[:8], e)


async def call(store: ClusterStore, node: str, verb: str, args: dict, by: str,
               progress: Progress | None = None, timeout: float = 3600.0) -> Any:
    """Run task ``verb`` on ``node`` and wait for its value: OsctlError with
    the task's code if it failed, ``busy`` if the node did not take it
    within TAKE_TIMEOUT seconds (it is down) or it ran past ``timeout``."""
    tid = await store.submit(node, verb, args, by)
    start = time.monotonic()
    said = 0  # progress lines passed on
    while True:
        await asyncio.sleep(0.2)
        result = await store.result(tid)
        waited = time.monotonic() - start
        if result is None:
            if waited > TAKE_TIMEOUT:
                await store.etcd.call(store.etcd.delete, key("tasks", node, tid))
                raise OsctlError(BUSY, f"node {node} did not take task {verb} within "
                                       f"{TAKE_TIMEOUT:.0f} s: is it up?")
            continue
        lines = result.get("lines")
        if progress is not None and isinstance(lines, list) and len(lines) > said:
            for line in lines[said:]:
                progress(str(line))
            said = len(lines)
        if result.get("state") == "done":
            return result.get("value")
        if result.get("state") == "failed":
            code = result.get("code")
            raise OsctlError(code if code in ERROR_CODES else INTERNAL,
                             str(result.get("error")))
        if waited > timeout:
            raise OsctlError(BUSY, f"task {verb} on node {node} runs past {timeout:.0f} s")
