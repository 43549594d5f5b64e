"""Run metrics: per-stage latency percentiles, frame counts, fps, end-to-end latency, queue depths,
in total and per source.

Latencies are kept in bounded windows (the most recent ``window`` samples) so that a run of
days does not grow memory; counts are exact.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


def percentiles_ms(samples) -> dict[str, float]:
    """p50/p95/p99 of a sequence of milliseconds (zeros when empty)."""
    if not samples:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    arr = np.fromiter(samples, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}


class StageStats:
    def __init__(self, window: int) -> None:
        self.count = 0
        self.samples: deque[float] = deque(maxlen=window)
        self.cpu_ms = 0.0  # summed CPU time of the stage's own thread (not the wall time above)


class SourceStats:
    """One source's share of a run.

    Attributes:
        state: "running", "removing", "ended", "removed" or "failed".
        error: why it failed, or None.
        queues: its queues (their ``dropped`` are its drops; more than one if its id came back).
        source: the source object, whose ``stats()`` (reconnects, gaps) go into the report.
    """

    def __init__(self, window: int, source, queue) -> None:
        self.state = "running"
        self.error: str | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.e2e_ms: deque[float] = deque(maxlen=window)
        self.added_ns = time.monotonic_ns()
        self.last_out_ns: int | None = None
        self.ended_ns: int | None = None
        self.queues = [queue] if queue is not None else []
        self.source = source

    @property
    def frames_dropped(self) -> int:
        return sum(int(q.dropped) for q in self.queues)

    def fps(self, started_ns: int | None) -> float:
        """Output frames per second since the source was added (or the run started, if later)."""
        t0 = max(self.added_ns, started_ns or 0)
        if self.last_out_ns is None or self.frames_out == 0:
            return 0.0
        elapsed = (self.last_out_ns - t0) / 1e9
        return self.frames_out / elapsed if elapsed > 0 else 0.0


class Metrics:
    """Thread-safe collector shared by every thread of one graph run.

    Args:
        window: how many recent samples each latency distribution keeps.
    """

    def __init__(self, window: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._window = window
        self.stages: dict[str, StageStats] = {}
        self.e2e_ms: deque[float] = deque(maxlen=window)
        self.frames_in = 0
        self.frames_out = 0
        self.frames_filtered = 0
        self.join_timeouts = 0
        self.join_late = 0
        self.started_ns: int | None = None
        self.first_out_ns: int | None = None
        self.last_out_ns: int | None = None
        self.queue_depths: dict[str, int] = {}
        self.extra: dict[str, float] = {}
        self._drop_sources: list = []
        self._source_stats = None
        self.sources: dict[str, SourceStats] = {}

    def start(self) -> None:
        self.started_ns = time.monotonic_ns()

    def add_stage_time(self, stage: str, ms: float, cpu_ms: float = 0.0) -> None:
        """One call of a stage: ``ms`` wall time, ``cpu_ms`` the CPU time its thread used (on a
        busy machine wall time includes waiting for a core or the GIL; CPU time does not). Work
        done on other threads, such as an ONNX Runtime thread pool with more than one thread, is
        not counted."""
        with self._lock:
            st = self.stages.get(stage)
            if st is None:
                st = self.stages[stage] = StageStats(self._window)
            st.count += 1
            st.samples.append(ms)
            st.cpu_ms += cpu_ms

    def frame_in(self, source_id: str | None = None) -> None:
        with self._lock:
            self.frames_in += 1
            src = self.sources.get(source_id) if source_id is not None else None
            if src is not None:
                src.frames_in += 1

    def frame_out(self, capture_ns: int, now_ns: int | None = None, source_id: str | None = None) -> None:
        now = time.monotonic_ns() if now_ns is None else now_ns
        ms = (now - capture_ns) / 1e6
        with self._lock:
            self.frames_out += 1
            self.e2e_ms.append(ms)
            if self.first_out_ns is None:
                self.first_out_ns = now
            self.last_out_ns = now
            src = self.sources.get(source_id) if source_id is not None else None
            if src is not None:
                src.frames_out += 1
                src.e2e_ms.append(ms)
                src.last_out_ns = now

    def add_source(self, source_id: str, source, queue) -> None:
        """Registers a source (its queue's drops count, in total and for it). An id that comes
        back keeps counting in the same entry."""
        with self._lock:
            entry = self.sources.get(source_id)
            if entry is None:
                self.sources[source_id] = SourceStats(self._window, source, queue)
            else:
                entry.state, entry.error, entry.ended_ns, entry.source = "running", None, None, source
                entry.queues.append(queue)
        self._drop_sources.append(queue)

    def source_ended(self, source_id: str, state: str, error: str | None = None) -> None:
        """A source's new state: "removing" (asked to stop), "ended", "removed" or "failed"."""
        with self._lock:
            entry = self.sources.get(source_id)
            if entry is None or entry.state == "failed":
                return
            entry.state = state
            if error is not None:
                entry.error = error
            if state != "removing":
                entry.ended_ns = time.monotonic_ns()

    def sources_report(self) -> dict[str, dict]:
        """Per source: state, frames in/out, drops, fps, latency percentiles, its own stats."""
        with self._lock:
            entries = list(self.sources.items())
            started = self.started_ns
            samples = {sid: list(e.e2e_ms) for sid, e in entries}
        out = {}
        for sid, e in entries:
            doc = {
                "state": e.state,
                "frames_in": e.frames_in,
                "frames_out": e.frames_out,
                "frames_dropped": e.frames_dropped,
                "fps": round(e.fps(started), 3),
                "latency_ms": percentiles_ms(samples[sid]),
            }
            if e.error is not None:
                doc["error"] = e.error
            stats = getattr(e.source, "stats", None)
            if stats is not None:
                doc["source"] = stats()
            out[sid] = doc
        return out

    def sources_line(self) -> str:
        """One short part per source for the live status line."""
        parts = []
        for sid, doc in self.sources_report().items():
            if doc["state"] in ("ended", "removed"):
                continue
            state = "" if doc["state"] == "running" else f" {doc['state']}"
            parts.append(
                f"{sid}{state}: {doc['fps']:.1f} fps, {doc['frames_dropped']} dropped, p95 {doc['latency_ms']['p95']:.0f} ms"
            )
        return "; ".join(parts)

    def count(self, name: str, inc: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + inc)

    def set_extra(self, name: str, value: float) -> None:
        """Records a pipeline-specific figure (for example a flicker measure)."""
        with self._lock:
            self.extra[name] = value

    def watch_drops(self, counter) -> None:
        """Registers an object with a ``dropped`` attribute (a queue) whose drops count."""
        self._drop_sources.append(counter)

    def watch_source(self, source) -> None:
        """Registers the source, whose ``stats()`` (reconnects, gaps) go into the report."""
        self._source_stats = source

    @property
    def frames_dropped(self) -> int:
        return sum(int(c.dropped) for c in self._drop_sources)

    def fps(self) -> float:
        """Output frames per second since the graph started."""
        if self.started_ns is None or self.last_out_ns is None or self.frames_out == 0:
            return 0.0
        elapsed = (self.last_out_ns - self.started_ns) / 1e9
        return self.frames_out / elapsed if elapsed > 0 else 0.0

    def report(self) -> dict:
        """The ``--metrics-json`` document."""
        with self._lock:
            stages = {
                name: {
                    "count": st.count,
                    **{f"{k}_ms": v for k, v in percentiles_ms(st.samples).items()},
                    "cpu_mean_ms": round(st.cpu_ms / st.count, 3) if st.count else 0.0,
                }
                for name, st in self.stages.items()
            }
            doc = {
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "frames_dropped": self.frames_dropped,
                "fps": round(self.fps(), 3),
                "latency_ms": percentiles_ms(self.e2e_ms),
                "stages": stages,
                "frames_filtered": self.frames_filtered,
                "join_timeouts": self.join_timeouts,
                "join_late": self.join_late,
                "queue_depths": dict(self.queue_depths),
            }
            if self.extra:
                doc["extra"] = dict(self.extra)
        if self._source_stats is not None:
            doc["source"] = self._source_stats.stats()
        if self.sources:
            per_source = self.sources_report()
            doc["sources"] = per_source
            if len(per_source) == 1 and self._source_stats is None:
                doc["source"] = next(iter(per_source.values())).get("source", {})
        return doc
