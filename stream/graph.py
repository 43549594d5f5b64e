"""The runtime graph: a source, stages in threads joined by bounded queues, fan-out/join, sinks.

A graph is described by a list of steps: a ``Stage``, or a ``Parallel`` of named branches
(lists of stages) whose results are merged by (source id, sequence number). Every arrow is a
bounded queue. The source's queue carries the source's policy ("latest" for live sources,
"block" otherwise); every other queue blocks.

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
        join_timeout_s: how long a join waits for a branch before emitting the frame
            without that branch's results (counted in ``join_timeouts``).
        join_buffer: at most this many frames waiting in a join (its reorder buffer).
        drain_timeout_s: after stop(), how long stages keep processing before discarding.
        watchdog_s: a stage holding one frame longer than this fails the run (0: off).
    """

    queue_size: int = 4
    max_in_flight: int = 2
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
    """

    reason: str
    error: SegstreamError | None
    metrics: dict
    stuck_threads: list[str] = field(default_factory=list)


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
    def __init__(self, source, graph: Graph) -> None:
        super().__init__("source", graph)
        self.source = source

    def run(self) -> None:
        g = self.graph
        reason = "eos"
        seq = 0
        src_name = self.source.name
        try:
            while not g._stop_source.is_set():
                if g._live and g._token is not None and not g._token.available():
                    # Live: keep the camera buffer fresh, drop the frame before the heavy stages.
                    item = self.source.read(g._stop_source)
                    if item is None:
                        break
                    g.metrics.frame_in()
                    g._first_queue.dropped += 1
                    seq += 1  # the dropped frame keeps its number: gaps in seq mean drops
                    if g.max_frames is not None and seq >= g.max_frames:
                        break
                    continue
                item = self.source.read(g._stop_source)
                if item is None:
                    break
                frame = Frame(
                    source_id=src_name,
                    seq=seq,
                    pts_s=item.pts_s,
                    capture_ns=time.monotonic_ns(),
                    image_bgr=item.image_bgr,
                    metadata=getattr(item, "metadata", None) or {},
                )
                frame.image_bgr.flags.writeable = False
                seq += 1
                g.metrics.frame_in()
                if g._token is not None and not g._token.acquire(g._abort):
                    break
                dropped_before = g._first_queue.dropped
                if not self.emit(frame):
                    break
                if g._token is not None:
                    # A frame the "latest" policy pushed out of the queue is no longer in flight.
                    for _ in range(g._first_queue.dropped - dropped_before):
                        g._token.release()
                if g.max_frames is not None and seq >= g.max_frames:
                    break
            else:
                reason = g._stop_reason or "stop"
        except SegstreamError as exc:
            g._fail(exc, exc)
            reason = "error"
        except Exception as exc:  # decoder/library errors: name the source, keep the message
            g._fail(SourceError(f"source '{src_name}' failed after {seq} frames: {type(exc).__name__}: {exc}"), exc)
            reason = "error"
        finally:
            try:
                self.source.close()
            finally:
                self.emit(EndOfStream(reason))


class _StageNode(_Node):
    """Runs one stage in ``stage.workers`` threads with output order restored by ticket."""

    def __init__(self, stage: Stage, inq: BoundedQueue, graph: Graph) -> None:
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
                if out is None and g._token is not None and not self.graph._in_branch(self):
                    g._token.release()
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
                ended = len(self.eos) == n
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
    def __init__(self, sinks: list, inq: BoundedQueue, graph: Graph) -> None:
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
                g.metrics.frame_out(item.capture_ns)
                if g._token is not None:
                    g._token.release()
        finally:
            self.close_sinks()

    def close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self.graph._fail(SinkError(f"sink '{sink.name}' could not be finalised: {exc}"), exc)
        self.sinks = []


class Graph:
    """A source, steps and sinks, run with one thread per stage worker.

    Args:
        source: an object with ``name``, ``live``, ``read(stop_event)`` -> item with
            ``image_bgr``/``pts_s`` or None at the end, and ``close()`` (see stream.sources).
        steps: stages and ``Parallel`` groups in order.
        sinks: objects with ``name``, ``write(frame)`` and ``close()`` (see stream.sinks).
        settings: queue sizes, in-flight limit, timeouts.
        max_frames: stop after this many frames from the source.
    """

    def __init__(
        self,
        source,
        steps: Sequence[Stage | Parallel],
        sinks: Sequence,
        settings: GraphSettings | None = None,
        max_frames: int | None = None,
    ) -> None:
        self.source = source
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
        self._token: _Token | None = None
        self._started = False
        self._build()

    # -- construction -------------------------------------------------------------------
    def _queue(self, name: str, policy: str = "block", size: int | None = None) -> BoundedQueue:
        q = BoundedQueue(size or self.settings.queue_size, policy, name)
        self._queues.append(q)
        return q

    def _in_branch(self, node: _Node) -> bool:
        return id(node) in self._branch_nodes

    def _build(self) -> None:
        s = self.settings
        live = self._live = bool(getattr(self.source, "live", False))
        if s.max_in_flight:
            self._token = _Token(s.max_in_flight)
        names = [st.name for st in self.stages()]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"stage names must be unique, repeated: {sorted(dup)}")
        src = _SourceNode(self.source, self)
        self._nodes.append(src)
        steps = list(self.steps)
        if steps and isinstance(steps[0], Parallel):
            # The source's drop point must sit before the fan-out so branches see the same frames.
            steps.insert(0, FunctionStage("fanout", lambda f: f))
        # The first queue carries the source's policy: "latest" for live sources.
        self._first_queue = self._queue("source", "latest" if live else "block", 1 if live else None)
        self.metrics.watch_drops(self._first_queue)
        self.metrics.watch_source(self.source)
        producer: _Node = src
        producer.outlet = QueueOutlet(self._first_queue)
        inq = self._first_queue
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
    def _fail(self, error: SegstreamError, cause: BaseException | None = None) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = error
                self._error_cause = cause
                log.debug("graph failing: %s", error, exc_info=cause)
        self._stop_reason = "error"
        self._stop_source.set()

    def stop(self, reason: str = "stop") -> None:
        """Asks the graph to finish: the source stops, stages drain, sinks are finalised.

        Safe to call from a signal handler. A second call discards what is still queued.
        """
        if self._stop_source.is_set() and self._stop_reason == reason:
            self._discarding.set()
            return
        self._stop_reason = self._stop_reason or reason
        self._stop_source.set()

    @property
    def error(self) -> SegstreamError | None:
        return self._error

    @property
    def error_cause(self) -> BaseException | None:
        return self._error_cause

    def report(self) -> dict:
        """The metrics document, with each stage's own figures under "extra"."""
        doc = self.metrics.report()
        if self._token is not None:
            doc["in_flight"] = {"limit": self._token.limit, "peak": self._token.peak}
        extras = {st.name: st.metrics() for st in self.stages()}
        extras = {k: v for k, v in extras.items() if v}
        if extras:
            doc.setdefault("extra", {}).update(extras)
        return doc

    def queue_depths(self) -> dict[str, int]:
        return {q.name: q.depth() for q in self._queues}

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
        opened = getattr(self.source, "open", None)
        if opened is not None:
            opened()
        self.metrics.start()
        self._started = True
        for node in self._nodes:
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
        for node in self._nodes:
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
        reporter = ProgressReporter(self, total) if progress else None
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
            for node in self._nodes:
                for t in node.threads:
                    t.join(0.5 if not node.dead else 0.0)
            self.close()
        stuck = [t.name for n in self._nodes for t in n.threads if t.is_alive()]
        reason = "error" if self._error is not None else (self._stop_reason or "eos")
        return RunReport(reason=reason, error=self._error, metrics=self.report(), stuck_threads=stuck)
