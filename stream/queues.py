"""Bounded queues with an explicit full-queue policy, and the outlets stages emit through.

Policies:
    "block": the producer waits (files, folders, synthetic sources: deterministic, no drops).
    "latest": the oldest item is dropped and counted (live sources: latency never builds up).
End-of-stream sentinels are never dropped.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from segstream.stream.frame import EndOfStream

_POLL_S = 0.05

POLICIES = ("block", "latest")


class BoundedQueue:
    """A ``queue.Queue`` with a maximum size, a full-queue policy and a drop counter.

    Args:
        maxsize: capacity, at least 1.
        policy: "block" or "latest".
        name: for metrics (queue depths).
    """

    def __init__(self, maxsize: int, policy: str = "block", name: str = "") -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        if policy not in POLICIES:
            raise ValueError(f"queue policy must be one of {POLICIES}, got {policy!r}")
        self._q: queue.Queue = queue.Queue(maxsize)
        self.maxsize = maxsize
        self.policy = policy
        self.name = name
        self.dropped = 0
        self._lock = threading.Lock()

    def put(self, item: Any, abort: threading.Event) -> bool:
        """Puts an item; returns False if it was not queued (``abort`` set while waiting)."""
        if self.policy == "latest" and not isinstance(item, EndOfStream):
            with self._lock:
                while True:
                    try:
                        self._q.put_nowait(item)
                        return True
                    except queue.Full:
                        try:
                            old = self._q.get_nowait()
                        except queue.Empty:
                            continue
                        if isinstance(old, EndOfStream):  # never lose the end of a stream
                            self._q.queue.appendleft(old)
                            return False
                        self.dropped += 1
        while True:
            try:
                self._q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if abort.is_set():
                    return False

    def get(self, timeout: float = _POLL_S) -> Any:
        """Returns the next item, or raises queue.Empty after ``timeout`` seconds."""
        return self._q.get(timeout=timeout)

    def depth(self) -> int:
        return self._q.qsize()


class Outlet:
    """Where a stage's output goes."""

    def put(self, item: Any, abort: threading.Event) -> bool:
        raise NotImplementedError


class QueueOutlet(Outlet):
    def __init__(self, q: BoundedQueue) -> None:
        self.queue = q

    def put(self, item: Any, abort: threading.Event) -> bool:
        return self.queue.put(item, abort)


class FanOutlet(Outlet):
    """Sends a copy of each frame (own results dict, shared read-only image) to every branch."""

    def __init__(self, outlets: list[Outlet]) -> None:
        self.outlets = outlets

    def put(self, item: Any, abort: threading.Event) -> bool:
        ok = True
        for out in self.outlets:
            copy = item if isinstance(item, EndOfStream) else item.branch_copy()
            ok = out.put(copy, abort) and ok
        return ok


class TaggedOutlet(Outlet):
    """Wraps items as (branch index, item) for a join's shared input queue."""

    def __init__(self, q: BoundedQueue, tag: int) -> None:
        self.queue = q
        self.tag = tag

    def put(self, item: Any, abort: threading.Event) -> bool:
        return self.queue.put((self.tag, item), abort)
