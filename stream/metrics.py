"""Run metrics: per-stage latency percentiles, frame counts, fps, end-to-end latency, queue depths.

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

    def frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1

    def frame_out(self, capture_ns: int, now_ns: int | None = None) -> None:
        now = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            self.frames_out += 1
            self.e2e_ms.append((now - capture_ns) / 1e6)
            if self.first_out_ns is None:
                self.first_out_ns = now
            self.last_out_ns = now

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
        return doc
