"""The runtime graph: sources, stages in threads joined by bounded queues, fan-out/join, sinks.

A graph is described by a list of steps: a ``Stage``, or a ``Parallel`` of named branches
(lists of stages) whose results are merged by (source id, sequence number). Every arrow is a
bounded queue. Each source has its own thread, queue, in-flight limit and counters; its
queue carries its policy ("latest" for live sources, "block" otherwise) and the first stage
takes from the sources' queues in turn. Every other queue blocks.

Several sources: ``Graph([a, b], ...)`` or ``Graph({"cam0": a, "cam1": b}, ...)``; sources
come and go while it runs (``add_source``, ``remove_source``). When one source ends its
``SourceEnd`` travels every queue behind its last frame: stages hear of it
(``Stage.source_ended``), joins forget it, and sinks with ``end_source`` finalise what they
keep for it. The graph ends when every source has ended. A source that fails is reported and
removed while the others go on (``on_source_error="isolate"``, the default for several); a
graph given one source (not a list) keeps failing the run on a source error ("fail").

Shutdown paths, all of which finalise every sink:
    end of stream  the source ends; EndOfStream travels every queue; stages drain.
    error          a stage, source or sink raises; the source stops; the failing stage
                   discards what reaches it; everything downstream of it drains, so frames
                   processed before the failure reach the sinks.
    stop()         (signals) the source stops and the graph drains for ``drain_timeout_s``;
                   after that stages discard instead of processing.
    watchdog       a stage holds one frame longer than ``watchdog_s``: the run fails with
                   WatchdogError and the graph is aborted around the stuck thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from segstream.stream.errors import SegstreamError, SinkError, SourceError, StageError, WatchdogError
from segstream.stream.frame import EndOfStream, Frame
from segstream.stream.metrics import Metrics
from segstream.stream.progress import ProgressReporter
from segstream.stream.queues import BoundedQueue, FanOutlet, Outlet, QueueOutlet, TaggedOutlet

log = logging.getLogger(__name__)

_POLL_S = 0.05


class Stage:
    """One processing step. The constructor takes settings; ``process`` takes a frame.

    Attributes:
        name: unique name in the graph (metrics and errors use it).
        workers: threads running ``process`` concurrently; output order is restored.
            With more than one worker ``process`` must be thread-safe.
    """

    name = "stage"
    workers = 1

    def setup(self) -> None:
        """Called once in the caller's thread before frames flow (load models here)."""

    def process(self, frame: Frame) -> Frame | None:
        """Returns the frame (with results added), or None to drop it (counted as filtered)."""
        raise NotImplementedError

    def close(self) -> None:
        """Called once after the last frame, also after errors."""

    def source_ended(self, source_id: str) -> None:
        """Called (in order, after that source's last frame) when a source has ended: state kept
        per source may go. Its id may come back later as a new stream starting at frame 0."""

    def metrics(self) -> dict:
        """Stage-specific figures for the run's metrics (under "extra" -> stage name)."""
        return {}


class FunctionStage(Stage):
    """A stage from a function ``fn(frame) -> frame | None``."""

    def __init__(self, name: str, fn: Callable[[Frame], Frame | None], workers: int = 1) -> None:
        self.name = name
        self.fn = fn
        self.workers = workers

    def process(self, frame: Frame) -> Frame | None:
        return self.fn(frame)


@dataclass
class Parallel:
    """Branches that each receive every frame; a join merges their results by frame.

    Attributes:
        branches: branch name -> stages run in order on that branch.
        name: name of the join (metrics).
    """

    branches: dict[str, Sequence[Stage]]
    name: str = "join"


@dataclass
class GraphSettings:
    """Runtime settings of one graph.

    Attributes:
        queue_size: capacity of every inter-stage queue.
        max_in_flight: frames between the source and the sinks at once. At the limit a live
            source drops the frame it reads (the drop point stays upstream of the heavy
            stages) and any other source waits, so latency stays a few frame times instead of
            the depth of every queue. 0 disables the limit.
        max_in_flight_file: the limit for sources that never drop (files, generated frames)
            when it differs from live sources' (None: ``max_in_flight`` for every source).
            Each source has its own limit and counter.
        max_in_flight_total: with several sources, frames between all sources and the sinks
            at once (0: only each source's own limit). At the limit live sources drop and
            others wait, so N cameras do not queue N times the frames of one.
        join_timeout_s: how long a join waits for a branch before emitting the frame
            without that branch's results (counted in ``join_timeouts``).
        join_buffer: at most this many frames waiting in a join (its reorder buffer).
        drain_timeout_s: after stop(), how long stages keep processing before discarding.
        watchdog_s: a stage holding one frame longer than this fails the run (0: off).
    """

    queue_size: int = 4
    max_in_flight: int = 2
    max_in_flight_file: int | None = None
    max_in_flight_total: int = 0
    join_timeout_s: float = 5.0
    join_buffer: int = 32
    drain_timeout_s: float = 1.0
    watchdog_s: float = 0.0


@dataclass
class RunReport:
    """What a finished run says about itself.

    Attributes:
        reason: "eos", "stop" or "error".
        error: the first error, or None.
        metrics: the ``--metrics-json`` document.
        stuck_threads: names of threads that did not finish (a hung stage).
        source_errors: source id -> the error of each source that failed and was removed
            while the others went on (``on_source_error="isolate"``).
    """

    reason: str
    error: SegstreamError | None
    metrics: dict
    stuck_threads: list[str] = field(default_factory=list)
    source_errors: dict[str, SegstreamError] = field(default_factory=dict)


class SourceEnd:
    """Sentinel behind the last frame of one source (the others go on).

    Attributes:
        source_id: the source that ended.
        reason: "eos", "stop" (stopped or removed) or "error" (it failed).
    """

    __slots__ = ("source_id", "reason")

    def __init__(self, source_id: str, reason: str = "eos") -> None:
        self.source_id = source_id
        self.reason = reason

    def branch_copy(self) -> SourceEnd:
        """A fan-out sends every branch the same sentinel (as it sends each a frame copy)."""
        return self

    def __repr__(self) -> str:
        return f"SourceEnd({self.source_id!r}, {self.reason!r})"


class _SourceMux:
    """The first stage's input: every source's own queue, taken in turn so no camera starves
    the others. A source's EndOfStream becomes its ``SourceEnd``; after the last source's, one
    EndOfStream follows and the mux is closed (no source can join any more).

    Sources put into their own queue and then ``notify``; ``get`` scans and waits under one
    lock, so a put between the scan and the wait is never missed.

    With a graph-wide limit (``limit``) a frame leaves only while fewer than the limit are in
    flight; until then each live source's newest frame waits in its own queue (a newer one
    replaces it, counted as that source's drop), and the sources are served in turn, so every
    camera gets its share of the pipeline and no frame waits behind a backlog.
    """

    def __init__(self) -> None:
        self.name = "sources"
        self._cond = threading.Condition()
        self._queues: list[tuple[str, BoundedQueue]] = []
        self._next = 0
        self._reasons: list[str] = []
        self._final_pending = False
        self.closed = False
        self.limit: _Token | None = None

    def add(self, source_id: str, q: BoundedQueue) -> None:
        with self._cond:
            if self.closed or self._final_pending:
                raise SegstreamError("the graph has ended (every source had ended); no source can be added")
            self._queues.append((source_id, q))
            self._cond.notify_all()

    def discard(self, source_id: str) -> None:
        """Forgets a source that never started (removed before the graph started)."""
        with self._cond:
            self._queues = [(sid, q) for sid, q in self._queues if sid != source_id]
            self._next = 0
            if not self._queues:
                self._final_pending = True
            self._cond.notify_all()

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def final_reason(self) -> str:
        reasons = self._reasons
        return "error" if "error" in reasons else ("stop" if "stop" in reasons else "eos")

    def get(self, timeout: float = _POLL_S) -> Any:
        """The next item of any source in turn, or raises queue.Empty after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                n = len(self._queues) if self.limit is None or self.limit.available() else 0
                for i in range(n):
                    k = (self._next + i) % n
                    sid, q = self._queues[k]
                    try:
                        item = q.get(timeout=0)
                    except queue.Empty:
                        continue
                    if isinstance(item, EndOfStream):
                        del self._queues[k]
                        self._next = k % len(self._queues) if self._queues else 0
                        self._reasons.append(item.reason)
                        if not self._queues:
                            self._final_pending = True
                        return SourceEnd(sid, item.reason)
                    self._next = (k + 1) % n
                    if self.limit is not None and isinstance(item, Frame):
                        self.limit.try_acquire()  # the only taker, under this lock: a place is free
                    return item
                if self._final_pending:
                    self._final_pending = False
                    self.closed = True
                    return EndOfStream(self.final_reason())
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise queue.Empty
                self._cond.wait(remaining)

    def depth(self) -> int:
        with self._cond:
            return sum(q.depth() for _, q in self._queues)


class _Token:
    """Counts frames between the source and the sinks (the source waits or drops at the limit).

    Attributes:
        peak: the most frames in flight at once so far.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self.in_flight = 0
        self.peak = 0

    def acquire(self, abort: threading.Event) -> bool:
        with self._cond:
            while self.limit and self.in_flight >= self.limit:
                if abort.is_set():
                    return False
                self._cond.wait(_POLL_S)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return True

    def available(self) -> bool:
        with self._cond:
            return not self.limit or self.in_flight < self.limit

    def try_acquire(self) -> bool:
        """Takes a place if one is free, without waiting."""
        with self._cond:
            if self.limit and self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return True

    def release(self) -> None:
        with self._cond:
            self.in_flight = max(0, self.in_flight - 1)
            self._cond.notify()


class _Node:
    """Common state of everything that runs in a thread."""

    def __init__(self, name: str, graph: Graph) -> None:
        self.name = name
        self.graph = graph
        self.outlet: Outlet | None = None
        self.threads: list[threading.Thread] = []
        self.busy_since: dict[int, tuple[float, int | None]] = {}  # thread ident -> (t0, seq)
        self.dead = False  # set by the watchdog: anything it emits later is ignored

    def emit(self, item: Any) -> bool:
        if self.dead:
            return False
        assert self.outlet is not None
        return self.outlet.put(item, self.graph._abort)

    def start(self, target: Callable[[], None], count: int = 1) -> None:
        for i in range(count):
            t = threading.Thread(target=self._guard(target), name=f"{self.name}#{i}", daemon=True)
            self.threads.append(t)
            t.start()

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # a bug in the runtime itself: fail the run loudly
                self.graph._fail(StageError(self.name, None, None, exc), exc)

        return run


class _SourceNode(_Node):
    """One source's thread: reads, numbers and stamps frames, applies its drop policy and
    in-flight limit, and puts them into its own queue.

    Attributes:
        source_id: the id its frames carry.
        queue: its queue (policy "latest" for a live source); ``queue.dropped`` are its drops.
        token: its in-flight limit, or None.
        stop: set to end this source (graph stop, failure, ``remove_source``).
        drained: set once its ``SourceEnd`` has passed the sinks.
        error: the error it failed with, or None.
    """

    def __init__(self, source, source_id: str, graph: Graph, limit: int) -> None:
        super().__init__(f"source:{source_id}" if graph._multi else "source", graph)
        self.source = source
        self.source_id = source_id
        self.live = bool(getattr(source, "live", False))
        self.token = _Token(limit) if limit else None
        self.queue = BoundedQueue(
            1 if self.live else graph.settings.queue_size,
            "latest" if self.live else "block",
            f"source:{source_id}" if graph._multi else "source",
        )
        self.outlet = QueueOutlet(self.queue)
        self.stop = threading.Event()
        self.drained = threading.Event()
        self.removed = False
        self.error: SegstreamError | None = None

    def emit(self, item: Any) -> bool:
        ok = super().emit(item)
        self.graph._mux.notify()
        return ok

    def run(self) -> None:
        g = self.graph
        reason = "eos"
        seq = 0
        sid = self.source_id
        token = self.token
        try:
            while not self.stop.is_set():
                if self.live and token is not None and not token.available():
                    # Live: keep the camera buffer fresh, drop the frame before the heavy stages.
                    item = self.source.read(self.stop)
                    if item is None:
                        break
                    g.metrics.frame_in(sid)
                    self.queue.dropped += 1
                    seq += 1  # the dropped frame keeps its number: gaps in seq mean drops
                    if g.max_frames is not None and seq >= g.max_frames:
                        break
                    continue
                item = self.source.read(self.stop)
                if item is None:
                    break
                frame = Frame(
                    source_id=sid,
                    seq=seq,
                    pts_s=item.pts_s,
                    capture_ns=time.monotonic_ns(),
                    image_bgr=item.image_bgr,
                    metadata=getattr(item, "metadata", None) or {},
                )
                frame.image_bgr.flags.writeable = False
                seq += 1
                g.metrics.frame_in(sid)
                if token is not None and not token.acquire(g._abort):
                    break
                dropped_before = self.queue.dropped
                if not self.emit(frame):
                    break
                if token is not None:
                    # A frame the "latest" policy pushed out of the queue is no longer in flight.
                    for _ in range(self.queue.dropped - dropped_before):
                        token.release()
                if g.max_frames is not None and seq >= g.max_frames:
                    break
            else:
                reason = "stop" if self.removed else (g._stop_reason or "stop")
        except Exception as exc:  # decoder/library errors: name the source, keep the message
            error = (
                exc
                if isinstance(exc, SegstreamError)
                else SourceError(f"source '{sid}' failed after {seq} frames: {type(exc).__name__}: {exc}")
            )
            g._source_failed(self, error, exc)
            reason = "error"
        finally:
            try:
                self.source.close()
            finally:
                self.emit(EndOfStream(reason))


class _StageNode(_Node):
    """Runs one stage in ``stage.workers`` threads with output order restored by ticket."""

    def __init__(self, stage: Stage, inq: BoundedQueue | _SourceMux, graph: Graph) -> None:
        super().__init__(stage.name, graph)
        self.stage = stage
        self.inq = inq
        self.failed = False
        self._ticket_lock = threading.Lock()
        self._next_ticket = 0
        self._emit_lock = threading.Lock()
        self._next_emit = 0
        self._ready: list[tuple[int, int, Any]] = []
        self._uid = itertools.count()
        self._eos_ticket: int | None = None
        self._fail_ticket: int | None = None

    def _take(self) -> tuple[int, Any] | None:
        """Gets the next input with its ticket, or None when this worker should exit.

        Taking and numbering happen under one lock so tickets follow queue order.
        """
        with self._ticket_lock:
            while True:
                if self._eos_ticket is not None or self.dead:
                    return None
                try:
                    item = self.inq.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                ticket = self._next_ticket
                self._next_ticket += 1
                if isinstance(item, EndOfStream):
                    self._eos_ticket = ticket
                return ticket, item

    def run(self) -> None:
        g = self.graph
        me = threading.get_ident()
        while True:
            got = self._take()
            if got is None:
                return
            ticket, item = got
            out: Any = item
            if isinstance(item, Frame):
                if self.failed or g._discarding.is_set():
                    out = None
                else:
                    self.busy_since[me] = (time.monotonic(), item.seq)
                    t0, c0 = time.perf_counter(), time.thread_time()
                    try:
                        out = self.stage.process(item)
                    except Exception as exc:
                        self.failed = True
                        with self._emit_lock:
                            if self._fail_ticket is None or ticket < self._fail_ticket:
                                self._fail_ticket = ticket
                        g._fail(StageError(self.name, item.seq, item.source_id, exc), exc)
                        out = None
                    finally:
                        self.busy_since.pop(me, None)
                    ms = (time.perf_counter() - t0) * 1e3
                    if out is not None:
                        out.timings_ms[self.name] = ms
                    g.metrics.add_stage_time(self.name, ms, (time.thread_time() - c0) * 1e3)
                    if out is None and not self.failed:
                        g.metrics.count("frames_filtered")
                if out is None and not self.graph._in_branch(self):
                    g._release(item)
            self._deliver(ticket, out)
            if isinstance(item, EndOfStream):
                return

    def _deliver(self, ticket: int, out: Any) -> None:
        """Emits outputs in ticket order; None marks a dropped frame that still takes its turn."""
        with self._emit_lock:
            heapq.heappush(self._ready, (ticket, next(self._uid), out))
            while self._ready and self._ready[0][0] == self._next_emit:
                ticket, _, item = heapq.heappop(self._ready)
                self._next_emit += 1
                if isinstance(item, Frame) and self._fail_ticket is not None and ticket > self._fail_ticket:
                    continue  # other workers' frames after the failing one: the run ends at the failure
                if isinstance(item, SourceEnd):
                    try:
                        self.stage.source_ended(item.source_id)
                    except Exception as exc:
                        self.graph._fail(StageError(self.name, None, item.source_id, exc), exc)
                if item is not None:
                    self.emit(item)


class _JoinNode(_Node):
    """Merges the branches' copies of each frame by (source id, seq), in order."""

    def __init__(self, name: str, branch_names: list[str], inq: BoundedQueue, graph: Graph) -> None:
        super().__init__(name, graph)
        self.branch_names = branch_names
        self.inq = inq
        # key -> (first arrival time, {branch index: frame})
        self.pending: dict[tuple[str, int], tuple[float, dict[int, Frame]]] = {}
        self.order: list[tuple[str, int]] = []  # keys in first-arrival order
        self.emitted_upto: dict[str, int] = {}
        self.eos: dict[int, EndOfStream] = {}
        self.source_ends: dict[str, dict[int, SourceEnd]] = {}  # source id -> branch index -> its end

    def run(self) -> None:
        g = self.graph
        s = g.settings
        n = len(self.branch_names)
        while True:
            try:
                tag, item = self.inq.get(timeout=_POLL_S)
            except queue.Empty:
                tag, item = None, None
            if isinstance(item, EndOfStream):
                self.eos[tag] = item
            elif isinstance(item, SourceEnd):
                self.source_ends.setdefault(item.source_id, {})[tag] = item
            elif isinstance(item, Frame):
                key = item.key
                if item.seq <= self.emitted_upto.get(item.source_id, -1):
                    g.metrics.count("join_late")  # its frame already left without it
                    log.warning(
                        "join '%s': branch '%s' delivered frame %d after its timeout",
                        self.name,
                        self.branch_names[tag],
                        item.seq,
                    )
                else:
                    if key not in self.pending:
                        self.pending[key] = (time.monotonic(), {})
                        self.order.append(key)
                    self.pending[key][1][tag] = item
            # Emit complete frames in order; a head frame waiting too long (or a full buffer)
            # leaves with what it has, and the timeout is counted and logged.
            while self.order:
                key = self.order[0]
                t0, parts = self.pending[key]
                complete = len(parts) == n
                timed_out = time.monotonic() - t0 > s.join_timeout_s
                overfull = len(self.order) > s.join_buffer
                # Every branch has passed this frame's source's end: its missing parts never come.
                ended = len(self.eos) == n or len(self.source_ends.get(key[0], ())) == n
                if not (complete or timed_out or overfull or ended):
                    break
                if not complete:
                    missing = [self.branch_names[i] for i in range(n) if i not in parts]
                    g.metrics.count("join_timeouts")
                    log.warning(
                        "join '%s': frame %d left without %s after %.2f s",
                        self.name,
                        key[1],
                        ", ".join(missing),
                        time.monotonic() - t0,
                    )
                self.order.pop(0)
                del self.pending[key]
                self.emitted_upto[key[0]] = key[1]
                self.emit(self._merge(parts))
            for sid, ends in list(self.source_ends.items()):
                if len(ends) == n and not any(k[0] == sid for k in self.order):
                    del self.source_ends[sid]
                    self.emitted_upto.pop(sid, None)  # the id may come back, numbered from 0
                    reasons = [e.reason for e in ends.values()]
                    reason = "error" if "error" in reasons else ("stop" if "stop" in reasons else "eos")
                    self.emit(SourceEnd(sid, reason))
            if len(self.eos) == n and not self.order:
                reasons = [e.reason for e in self.eos.values()]
                reason = "error" if "error" in reasons else ("stop" if "stop" in reasons else "eos")
                self.emit(EndOfStream(reason))
                return

    def _merge(self, parts: dict[int, Frame]) -> Frame:
        frames = [parts[i] for i in sorted(parts)]
        base = frames[0]
        merged = base.branch_copy()
        for f in frames[1:]:
            merged.results.update(f.results)
            merged.timings_ms.update(f.timings_ms)
            if f.overlay_bgr is not None:
                merged.overlay_bgr = f.overlay_bgr
        missing = [self.branch_names[i] for i in range(len(self.branch_names)) if i not in parts]
        if missing:
            merged.results["missing_branches"] = missing
        return merged


class _SinkNode(_Node):
    def __init__(self, sinks: list, inq: BoundedQueue | _SourceMux, graph: Graph) -> None:
        super().__init__("sink", graph)
        self.sinks = list(sinks)
        self.inq = inq
        self.failed: set[int] = set()

    def run(self) -> None:
        g = self.graph
        me = threading.get_ident()
        try:
            while True:
                try:
                    item = self.inq.get(timeout=_POLL_S)
                except queue.Empty:
                    if self.dead:
                        return
                    continue
                if isinstance(item, EndOfStream):
                    return
                if isinstance(item, SourceEnd):
                    self.end_source(item)
                    continue
                self.busy_since[me] = (time.monotonic(), item.seq)
                t0, c0 = time.perf_counter(), time.thread_time()
                for i, sink in enumerate(self.sinks):
                    if i in self.failed:
                        continue
                    try:
                        sink.write(item)
                    except Exception as exc:
                        self.failed.add(i)
                        err = (
                            exc
                            if isinstance(exc, SinkError)
                            else SinkError(
                                f"sink '{sink.name}' failed on frame {item.seq}: {type(exc).__name__}: {exc}"
                            )
                        )
                        g._fail(err, exc)
                self.busy_since.pop(me, None)
                g.metrics.add_stage_time("sink", (time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3)
                g.metrics.frame_out(item.capture_ns, source_id=item.source_id)
                g._release(item)
        finally:
            self.close_sinks()

    def end_source(self, end: SourceEnd) -> None:
        """Every frame of ``end.source_id`` has been written: sinks that keep something per
        source (``end_source``) finalise it."""
        for i, sink in enumerate(self.sinks):
            finish = getattr(sink, "end_source", None)
            if i in self.failed or finish is None:
                continue
            try:
                finish(end.source_id)
            except Exception as exc:
                self.failed.add(i)
                err = (
                    exc
                    if isinstance(exc, SinkError)
                    else SinkError(
                        f"sink '{sink.name}' could not finalise source '{end.source_id}': {type(exc).__name__}: {exc}"
                    )
                )
                self.graph._fail(err, exc)
        self.graph._source_drained(end.source_id)

    def close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self.graph._fail(SinkError(f"sink '{sink.name}' could not be finalised: {exc}"), exc)
        self.sinks = []


class _SourcesProgress(ProgressReporter):
    """The progress line, with one part per source when the graph has several."""

    def line(self) -> str:
        text = super().line()
        if self.graph._multi:
            text += " | " + self.graph.metrics.sources_line()
        return text


class Graph:
    """Sources, steps and sinks, run with one thread per source and per stage worker.

    Args:
        source: an object with ``name``, ``live``, ``read(stop_event)`` -> item with
            ``image_bgr``/``pts_s`` or None at the end, and ``close()`` (see stream.sources);
            or several: a list (ids: the sources' names when they are unique, else ``cam0``,
            ``cam1``, ... by position) or a dict id -> source.
        steps: stages and ``Parallel`` groups in order.
        sinks: objects with ``name``, ``write(frame)`` and ``close()`` (see stream.sinks); one
            with ``end_source(source_id)`` hears when a source's last frame has been written.
        settings: queue sizes, in-flight limit, timeouts.
        max_frames: stop each source after this many frames from it.
        on_source_error: "fail" (a source error fails the run; the default for one source) or
            "isolate" (the failed source is reported in the metrics and ``RunReport.source_errors``
            and removed, the others go on; the default for several). A source that cannot be
            opened at ``start`` is isolated the same way; if none can, ``start`` raises.
    """

    def __init__(
        self,
        source,
        steps: Sequence[Stage | Parallel],
        sinks: Sequence,
        settings: GraphSettings | None = None,
        max_frames: int | None = None,
        *,
        on_source_error: str | None = None,
    ) -> None:
        initial: list[tuple[str | None, Any]]
        if isinstance(source, dict):
            initial = [(str(k), v) for k, v in source.items()]
        elif isinstance(source, (list, tuple)):
            names = [str(getattr(s, "name", "") or "") for s in source]
            unique = all(names) and len(set(names)) == len(names)
            initial = [(None if unique else f"cam{i}", s) for i, s in enumerate(source)]
        else:
            initial = [(None, source)]
        if not initial:
            raise ValueError("a graph needs at least one source")
        self._multi = isinstance(source, (dict, list, tuple))
        policy = on_source_error or ("isolate" if self._multi else "fail")
        if policy not in ("fail", "isolate"):
            raise ValueError(f"on_source_error must be 'fail' or 'isolate', got {policy!r}")
        self.on_source_error = policy
        self.source = initial[0][1]  # the first source (one-source callers read its fps, length, liveness)
        self.steps = list(steps)
        self.sinks = list(sinks)
        self.settings = settings or GraphSettings()
        self.max_frames = max_frames
        self.metrics = Metrics()
        self._abort = threading.Event()  # stop waiting on full queues
        self._discarding = threading.Event()  # stages skip processing
        self._stop_source = threading.Event()
        self._stop_reason: str | None = None
        self._error: SegstreamError | None = None
        self._error_cause: BaseException | None = None
        self._error_lock = threading.Lock()
        self._nodes: list[_Node] = []
        self._branch_nodes: set[int] = set()
        self._queues: list[BoundedQueue] = []
        self._mux = _SourceMux()
        self._sources_lock = threading.RLock()
        self._source_nodes: dict[str, _SourceNode] = {}  # sources whose end has not reached the sinks
        self._source_errors: dict[str, SegstreamError] = {}
        self._sources_seen = 0
        total = self.settings.max_in_flight_total
        self._shared_token: _Token | None = _Token(total) if self._multi and total else None
        self._mux.limit = self._shared_token
        self._started = False
        self._build()
        for sid, src in initial:
            self._register(src, sid)
        self._first_node = self._source_nodes[next(iter(self._source_nodes))]
        self._first_queue = self._first_node.queue

    # -- construction -------------------------------------------------------------------
    def _queue(self, name: str, policy: str = "block", size: int | None = None) -> BoundedQueue:
        q = BoundedQueue(size or self.settings.queue_size, policy, name)
        self._queues.append(q)
        return q

    def _in_branch(self, node: _Node) -> bool:
        return id(node) in self._branch_nodes

    def _build(self) -> None:
        names = [st.name for st in self.stages()]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"stage names must be unique, repeated: {sorted(dup)}")
        steps = list(self.steps)
        if steps and isinstance(steps[0], Parallel):
            # The sources' drop point must sit before the fan-out so branches see the same frames.
            steps.insert(0, FunctionStage("fanout", lambda f: f))
        # The first stage takes from every source's queue in turn (each queue has its source's policy).
        producer: _Node | None = None
        inq: BoundedQueue | _SourceMux = self._mux
        for step in steps:
            if isinstance(step, Stage):
                node = _StageNode(step, inq, self)
                self._nodes.append(node)
                inq = self._queue(step.name)
                node.outlet = QueueOutlet(inq)
                producer = node
            elif isinstance(step, Parallel):
                if not isinstance(producer, _StageNode):
                    raise ValueError("a Parallel step must follow a stage")
                branch_names = list(step.branches)
                join_q = self._queue(step.name, size=self.settings.queue_size * max(1, len(branch_names)))
                outlets: list[Outlet] = []
                for tag, bname in enumerate(branch_names):
                    bstages = list(step.branches[bname])
                    if not bstages:
                        raise ValueError(f"branch '{bname}' of '{step.name}' has no stages")
                    bq = self._queue(f"{bname}.in")
                    outlets.append(QueueOutlet(bq))
                    for i, st in enumerate(bstages):
                        node = _StageNode(st, bq, self)
                        self._nodes.append(node)
                        self._branch_nodes.add(id(node))
                        if i == len(bstages) - 1:
                            node.outlet = TaggedOutlet(join_q, tag)
                        else:
                            bq = self._queue(st.name)
                            node.outlet = QueueOutlet(bq)
                # Replace the producer's single queue with the fan-out; that queue is unused.
                assert isinstance(inq, BoundedQueue)
                self._queues.remove(inq)
                producer.outlet = FanOutlet(outlets)
                join = _JoinNode(step.name, branch_names, join_q, self)
                self._nodes.append(join)
                inq = self._queue(f"{step.name}.out")
                join.outlet = QueueOutlet(inq)
                producer = join
            else:
                raise TypeError(f"graph steps must be Stage or Parallel, got {type(step).__name__}")
        self._sink_node = _SinkNode(self.sinks, inq, self)
        self._nodes.append(self._sink_node)

    def _limit_for(self, source) -> int:
        s = self.settings
        if not getattr(source, "live", False) and s.max_in_flight_file is not None:
            return s.max_in_flight_file
        return s.max_in_flight

    def _pick_id(self, source, source_id: str | None) -> str:
        taken = self._source_nodes
        if source_id is not None:
            source_id = str(source_id)
            if not source_id:
                raise ValueError("a source id must not be empty")
            if source_id in taken:
                raise ValueError(f"source id '{source_id}' is in use; sources: {', '.join(taken)}")
            return source_id
        name = str(getattr(source, "name", "") or "")
        if name and name not in taken:
            return name
        n = 0
        while f"cam{n}" in taken:
            n += 1
        return f"cam{n}"

    def _register(self, source, source_id: str | None) -> _SourceNode:
        with self._sources_lock:
            if self._stop_source.is_set():
                raise SegstreamError("the graph is stopping; no source can be added")
            sid = self._pick_id(source, source_id)
            node = _SourceNode(source, sid, self, self._limit_for(source))
            if not self._multi and self._source_nodes:  # a one-source graph that was given another
                node.name = node.queue.name = f"source:{sid}"
            self._mux.add(sid, node.queue)
            self._source_nodes[sid] = node
            self._queues.insert(self._sources_seen, node.queue)
            self._nodes.insert(self._sources_seen, node)
            self._sources_seen += 1
            self.metrics.add_source(sid, source, node.queue)
            return node

    # -- sources while running ---------------------------------------------------------------
    def add_source(self, source, source_id: str | None = None) -> str:
        """Adds a source; once the graph runs it is opened and started at once. Thread-safe.

        Args:
            source: an unopened source (see ``Graph``).
            source_id: the id its frames carry; None: its name if unused, else the lowest free
                ``camN``. An id may be used again once the source that had it has drained.

        Returns:
            The source's id.

        Raises:
            ValueError: the id is in use. SegstreamError: the graph is stopping or has ended.
            SourceError (or what ``open`` raises): the source cannot be opened.
        """
        with self._sources_lock:
            if self._stop_source.is_set() or self._mux.closed:
                raise SegstreamError("the graph is stopping or has ended; no source can be added")
            started = self._started
        if not started:
            return self._register(source, source_id).source_id
        opened = getattr(source, "open", None)
        if opened is not None:
            opened()
        try:
            node = self._register(source, source_id)
        except BaseException:
            source.close()
            raise
        node.start(node.run)
        log.info("source '%s' added (%s)", node.source_id, getattr(source, "name", "?"))
        return node.source_id

    def remove_source(self, source_id: str, timeout: float | None = None) -> bool:
        """Stops one source; its frames already read drain through the graph and its per-source
        sinks are finalised after its last frame. The others go on. Thread-safe.

        Args:
            source_id: the source's id.
            timeout: wait up to this many seconds for its frames to reach the sinks (None: don't).

        Returns:
            True when its last frame has passed the sinks.

        Raises:
            KeyError: no such source (or it has already ended and drained).
        """
        with self._sources_lock:
            node = self._source_nodes.get(source_id)
            if node is None:
                raise KeyError(f"no source '{source_id}'; sources: {', '.join(self._source_nodes) or 'none'}")
            node.removed = True
            if not self._started:
                del self._source_nodes[source_id]
                self._mux.discard(source_id)
                self._nodes.remove(node)
                self.metrics.source_ended(source_id, "removed")
                node.drained.set()
                return True
        self.metrics.source_ended(source_id, "removing")
        node.stop.set()
        return node.drained.wait(timeout) if timeout is not None else node.drained.is_set()

    def source_ids(self) -> list[str]:
        """The ids of the sources whose frames have not all reached the sinks yet."""
        with self._sources_lock:
            return list(self._source_nodes)

    def _release(self, frame: Frame) -> None:
        """One frame of its source is no longer in flight (written, filtered or dropped)."""
        node = self._source_nodes.get(frame.source_id)
        if node is not None and node.token is not None:
            node.token.release()
        if self._shared_token is not None:
            self._shared_token.release()
            self._mux.notify()

    def _source_failed(self, node: _SourceNode, error: SegstreamError, cause: BaseException | None) -> None:
        node.error = error
        if self.on_source_error == "fail":
            self._fail(error, cause)
            return
        with self._sources_lock:
            self._source_errors[node.source_id] = error
        self.metrics.source_ended(node.source_id, "failed", str(error))
        log.warning("source '%s' failed and was removed, the other sources go on: %s", node.source_id, error)
        log.debug("source '%s' failure", node.source_id, exc_info=cause)

    def _source_drained(self, source_id: str) -> None:
        """The source's end has passed the sinks: its id is free again."""
        with self._sources_lock:
            node = self._source_nodes.pop(source_id, None)
        if node is None:
            return
        if node.error is None:
            self.metrics.source_ended(source_id, "removed" if node.removed else "ended")
        node.drained.set()

    def stages(self) -> list[Stage]:
        """Every stage of the graph in step order, the branches of a ``Parallel`` in branch order."""
        out: list[Stage] = []
        for step in self.steps:
            if isinstance(step, Parallel):
                for stages in step.branches.values():
                    out.extend(stages)
            else:
                out.append(step)
        return out

    # -- control ------------------------------------------------------------------------
    def _stop_sources(self) -> None:
        self._stop_source.set()
        for node in list(self._source_nodes.values()):
            node.stop.set()

    def _fail(self, error: SegstreamError, cause: BaseException | None = None) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = error
                self._error_cause = cause
                log.debug("graph failing: %s", error, exc_info=cause)
        self._stop_reason = "error"
        self._stop_sources()

    def stop(self, reason: str = "stop") -> None:
        """Asks the graph to finish: the sources stop, stages drain, sinks are finalised.

        Safe to call from a signal handler. A second call discards what is still queued.
        """
        if self._stop_source.is_set() and self._stop_reason == reason:
            self._discarding.set()
            return
        self._stop_reason = self._stop_reason or reason
        self._stop_sources()

    @property
    def error(self) -> SegstreamError | None:
        return self._error

    @property
    def error_cause(self) -> BaseException | None:
        return self._error_cause

    def report(self) -> dict:
        """The metrics document, with each stage's own figures under "extra"."""
        doc = self.metrics.report()
        if not self._multi and self._first_node.token is not None:
            doc["in_flight"] = {"limit": self._first_node.token.limit, "peak": self._first_node.token.peak}
        if self._multi:
            if self._shared_token is not None:
                doc["in_flight"] = {"limit": self._shared_token.limit, "peak": self._shared_token.peak}
            for node in [n for n in list(self._nodes) if isinstance(n, _SourceNode)]:
                entry = doc.get("sources", {}).get(node.source_id)
                if entry is not None and node.token is not None:
                    entry["in_flight"] = {"limit": node.token.limit, "peak": node.token.peak}
        extras = {st.name: st.metrics() for st in self.stages()}
        extras = {k: v for k, v in extras.items() if v}
        if extras:
            doc.setdefault("extra", {}).update(extras)
        return doc

    def queue_depths(self) -> dict[str, int]:
        return {q.name: q.depth() for q in list(self._queues)}

    def _open_sources(self) -> None:
        """Opens every source before the threads start; with "isolate" one that cannot be
        opened is reported and left out (if none can, the first error is raised)."""
        with self._sources_lock:
            nodes = list(self._source_nodes.values())
        first: BaseException | None = None
        for node in nodes:
            opened = getattr(node.source, "open", None)
            if opened is None:
                continue
            try:
                opened()
            except Exception as exc:
                if self.on_source_error == "fail":
                    raise
                first = first or exc
                error = (
                    exc
                    if isinstance(exc, SegstreamError)
                    else SourceError(f"source '{node.source_id}' cannot be opened: {type(exc).__name__}: {exc}")
                )
                self._source_failed(node, error, exc)
                with self._sources_lock:
                    del self._source_nodes[node.source_id]
                    self._mux.discard(node.source_id)
                    self._nodes.remove(node)
                node.drained.set()
        if not self._source_nodes and first is not None:
            raise first

    def start(self) -> None:
        """Sets up stages and sinks (errors surface here, before any thread starts), then starts."""
        for st in self.stages():
            try:
                st.setup()
            except SegstreamError:
                raise
            except Exception as exc:
                raise StageError(st.name, None, None, exc) from exc
        for sink in self.sinks:
            open_fn = getattr(sink, "open", None)
            if open_fn is not None:
                open_fn()
        self._open_sources()
        self.metrics.start()
        with self._sources_lock:
            self._started = True
            nodes = list(self._nodes)
        for node in nodes:
            if isinstance(node, _SourceNode):
                node.start(node.run)
            elif isinstance(node, _StageNode):
                node.start(node.run, max(1, int(node.stage.workers)))
            elif isinstance(node, (_JoinNode, _SinkNode)):
                node.start(node.run)

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the sinks to finish; returns True when they have. Signal-friendly."""
        deadline = None if timeout is None else time.monotonic() + timeout
        stop_seen_at: float | None = None
        while True:
            if self._sink_node.dead or all(not t.is_alive() for t in self._sink_node.threads):
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            if self._stop_source.is_set():
                stop_seen_at = stop_seen_at or time.monotonic()
                if time.monotonic() - stop_seen_at > self.settings.drain_timeout_s and self._stop_reason != "error":
                    self._discarding.set()
            self._check_watchdog()
            self.metrics.queue_depths = self.queue_depths()
            time.sleep(_POLL_S)

    def _check_watchdog(self) -> None:
        limit = self.settings.watchdog_s
        if not limit:
            return
        now = time.monotonic()
        for node in list(self._nodes):
            if node.dead:
                continue
            for t0, seq in list(node.busy_since.values()):
                if now - t0 > limit:
                    self._fail(
                        WatchdogError(
                            f"stage '{node.name}' has held frame {seq} for {now - t0:.1f} s (watchdog {limit:g} s); "
                            "the run was stopped"
                        )
                    )
                    node.dead = True
                    self._discarding.set()
                    self._abort.set()
                    if isinstance(node, _SinkNode):
                        return
                    # Let everything downstream of the stuck thread finish and finalise.
                    assert node.outlet is not None
                    node.outlet.put(EndOfStream("error"), threading.Event())
                    break

    def close(self) -> None:
        for st in self.stages():
            try:
                st.close()
            except Exception as exc:
                log.warning("stage '%s' close failed: %s", st.name, exc)

    def run(self, timeout: float | None = None, *, progress: bool = False, total: int | None = None) -> RunReport:
        """Starts, waits for the end, closes. Returns the report; does not raise run errors.

        Args:
            timeout: seconds to wait for the end; past it the run fails and is aborted (None: no limit).
            progress: print the run's progress on stderr while it runs (``ProgressReporter``).
            total: frames expected, for the progress bar (None: a status line without a bar).
        """
        self.start()
        reporter = _SourcesProgress(self, total) if progress else None
        if reporter is not None:
            reporter.start()
        try:
            finished = self.wait(timeout)
            if not finished:
                self._fail(SegstreamError(f"the run did not finish within {timeout} s"))
                self._discarding.set()
                self._abort.set()
                self._sink_node.dead = True
                for t in self._sink_node.threads:
                    t.join(2.0)
        finally:
            if reporter is not None:
                reporter.stop()
            self._abort.set()
            for node in list(self._nodes):
                for t in node.threads:
                    t.join(0.5 if not node.dead else 0.0)
            self.close()
        with self._error_lock:
            if self._error is None and self._source_errors and len(self._source_errors) >= self._sources_seen:
                self._error = next(iter(self._source_errors.values()))  # every source failed: so did the run
        stuck = [t.name for n in self._nodes for t in n.threads if t.is_alive()]
        reason = "error" if self._error is not None else (self._stop_reason or "eos")
        return RunReport(
            reason=reason,
            error=self._error,
            metrics=self.report(),
            stuck_threads=stuck,
            source_errors=dict(self._source_errors),
        )
