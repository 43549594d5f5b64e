"""Batching across sources: frames waiting for one model are stacked into one backend call.

The inference stage runs in several worker threads (``InferStage``); each thread hands its frame's
feeds to one ``Batcher`` and blocks until the batch holding them has run. A batch leaves when it
is full (``max_batch`` frames), when ``timeout_ms`` has passed since its first frame arrived, or
at once when one of its frames is older than ``max_age_ms`` (its capture time to now), so a frame
is never held past that age to fill a batch. The thread that closes a batch runs it: one backend
call on the feeds stacked along axis 0, whose outputs are split back one row per frame. There is
no batching thread; the graph's stage restores the frames' order (per source too) by ticket.

Feeds of different shapes (sources of different sizes through a dynamic-size model) never share
a batch: each shape has its own open batch. ``max_batch`` 1 needs no batcher at all: the
inference stage then calls the backend directly, as without batching.

A batch larger than 1 needs an artifact whose inputs and outputs have a dynamic first axis
(``segstream export ... --dynamic-batch``); ``require_dynamic_batch`` says so at build time.
On CPU ONNX Runtime gains little from batches; the value is on GPUs (see ``bench/batching.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from segstream.stream.backends.base import Backend
from segstream.stream.errors import ConfigError, ModelError


@dataclass(frozen=True)
class BatchSettings:
    """How frames of one model are batched.

    Attributes:
        max_batch: most frames per backend call (1: no batching, the backend is called per frame).
        timeout_ms: a batch leaves this long after its first frame arrived, full or not.
        max_age_ms: a batch leaves at once when one of its frames is this old (capture to now),
            so no frame waits for others past this age.
    """

    max_batch: int = 1
    timeout_ms: float = 10.0
    max_age_ms: float = 100.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.timeout_ms < 0 or self.max_age_ms < 0:
            raise ValueError(f"timeout_ms and max_age_ms must be >= 0, got {self.timeout_ms} and {self.max_age_ms}")

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1


def _dynamic(dim) -> bool | np.bool_:
    """Whether a ``TensorSpec`` dimension is dynamic (a name or None in ONNX Runtime, None or -1 elsewhere)."""
    return not isinstance(dim, (int, np.integer)) or dim < 0


def require_dynamic_batch(backend: Backend, max_batch: int, what: str = "batching.max_batch") -> None:
    """Raises ConfigError unless every input and output of ``backend`` has a dynamic first axis.

    Args:
        backend: the opened artifact.
        max_batch: the batch size asked for (only > 1 needs a dynamic axis).
        what: the setting named in the message.
    """
    if max_batch <= 1:
        return
    for kind, specs in (("input", backend.inputs), ("output", backend.outputs)):
        for t in specs:
            if not t.shape or not _dynamic(t.shape[0]):
                raise ConfigError(
                    f"{what} = {max_batch} needs an artifact with a dynamic batch dimension, but {backend.path} "
                    f"has {kind} '{t.name}' of shape {tuple(t.shape)}; export it with 'segstream export ... "
                    f"--dynamic-batch' or set {what} = 1"
                )


@dataclass
class _Batch:
    """One batch being collected or run (guarded by the batcher's condition until ``done``)."""

    opened_ns: int
    deadline_ns: int
    feeds: list[dict[str, np.ndarray]] = field(default_factory=list)
    closed: bool = False
    outputs: list[dict[str, np.ndarray]] | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Batcher:
    """Collects the feeds of concurrent callers into batches and runs one call per batch.

    Args:
        run: the backend call, ``feeds -> outputs`` (name -> array, batch along axis 0).
        settings: batch size, timeout and maximum age.
        concurrency: batches run at once at most (further closed batches wait their turn).
        clock: monotonic clock in ns; frames' ``capture_ns`` must come from the same one.

    Thread-safe: ``submit`` is called from the inference stage's worker threads.
    """

    def __init__(
        self,
        run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
        settings: BatchSettings,
        concurrency: int = 1,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.run = run
        self.settings = settings
        self.clock = clock
        self._cond = threading.Condition()
        self._open: dict[tuple, _Batch] = {}  # feed shapes -> the batch collecting them
        self._slots = threading.Semaphore(max(1, concurrency))
        self._timeout_ns = int(settings.timeout_ms * 1e6)
        self._max_age_ns = int(settings.max_age_ms * 1e6)
        self.released = {"full": 0, "timeout": 0, "age": 0}
        self.batches = 0
        self.frames = 0

    def submit(self, feeds: dict[str, np.ndarray], capture_ns: int) -> dict[str, np.ndarray]:
        """Adds one frame's feeds (batch 1) to a batch, waits until that batch has run, and
        returns this frame's outputs (each with a batch axis of 1).

        Args:
            feeds: input name -> array of shape (1, ...).
            capture_ns: the frame's capture time (``Frame.capture_ns``).

        Raises:
            ModelError: a feed without a batch axis of 1, or outputs that do not split by frame.
            Whatever the backend raised, in every frame of the failed batch.
        """
        for name, arr in feeds.items():
            if arr.ndim == 0 or arr.shape[0] != 1:
                raise ModelError(f"batching: feed '{name}' must have a batch axis of 1, got shape {arr.shape}")
        key = tuple(sorted((name, arr.shape, arr.dtype.str) for name, arr in feeds.items()))
        now = self.clock()
        with self._cond:
            batch = self._open.get(key)
            if batch is None:
                batch = _Batch(opened_ns=now, deadline_ns=now + self._timeout_ns)
                self._open[key] = batch
            index = len(batch.feeds)
            batch.feeds.append(feeds)
            age_deadline = capture_ns + self._max_age_ns
            if age_deadline < batch.deadline_ns:
                batch.deadline_ns = age_deadline
                self._cond.notify_all()  # the batch's waiters sleep until the old deadline
            runner = False
            if len(batch.feeds) >= self.settings.max_batch:
                self._close(key, batch, "full")
                runner = True
            else:
                while not batch.closed:
                    now = self.clock()
                    if now >= batch.deadline_ns:
                        age = batch.deadline_ns < batch.opened_ns + self._timeout_ns
                        self._close(key, batch, "age" if age else "timeout")
                        runner = True
                        break
                    self._cond.wait((batch.deadline_ns - now) / 1e9)
        if runner:
            self._execute(batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        assert batch.outputs is not None
        return batch.outputs[index]

    def _close(self, key: tuple, batch: _Batch, reason: str) -> None:
        """Takes the batch off the open list (under the condition)."""
        batch.closed = True
        del self._open[key]
        self.released[reason] += 1
        self._cond.notify_all()

    def _execute(self, batch: _Batch) -> None:
        """Runs a closed batch (one backend call) and splits its outputs by frame."""
        n = len(batch.feeds)
        try:
            if n == 1:
                feeds = batch.feeds[0]
            else:
                feeds = {name: np.concatenate([f[name] for f in batch.feeds], axis=0) for name in batch.feeds[0]}
            with self._slots:
                outputs = self.run(feeds)
            if n == 1:
                batch.outputs = [outputs]
            else:
                for name, arr in outputs.items():
                    if arr.ndim == 0 or arr.shape[0] != n:
                        raise ModelError(
                            f"batching: output '{name}' of shape {arr.shape} does not have the batch's {n} rows "
                            "along axis 0; this artifact cannot be batched (set batching.max_batch = 1)"
                        )
                batch.outputs = [{name: arr[i : i + 1] for name, arr in outputs.items()} for i in range(n)]
        except BaseException as exc:
            batch.error = exc
        finally:
            with self._cond:
                self.batches += 1
                self.frames += n
            batch.done.set()

    def metrics(self) -> dict:
        """Batches run, frames in them, their mean size and why they left (full, timeout, age)."""
        with self._cond:
            mean = self.frames / self.batches if self.batches else 0.0
            return {
                "batches": self.batches,
                "batched_frames": self.frames,
                "mean_batch": round(mean, 3),
                "released": dict(self.released),
            }
