"""Live progress on stderr: a bar for sources with a known length, a status line otherwise."""

from __future__ import annotations

import sys
import threading


class ProgressReporter:
    """Prints the graph's progress every ``interval_s`` seconds from a daemon thread.

    Args:
        graph: the running graph (its metrics are read, never written).
        total: frames expected (files), or None for live sources.
        interval_s: seconds between updates (a bar redraws in place on a terminal).
        stream: where to print.
    """

    def __init__(self, graph, total: int | None, interval_s: float = 1.0, stream=None) -> None:
        self.graph = graph
        self.total = total
        self.interval_s = interval_s
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self._print(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._print()

    def line(self) -> str:
        m = self.graph.metrics
        lat = m.report()["latency_ms"]
        text = (
            f"{m.frames_out} out, {m.frames_dropped} dropped, {m.fps():.1f} fps, "
            f"latency p50 {lat['p50']:.0f} ms p95 {lat['p95']:.0f} ms"
        )
        if self.total:
            done = min(1.0, m.frames_out / self.total)
            width = 24
            bar = "#" * int(done * width) + "-" * (width - int(done * width))
            text = f"[{bar}] {m.frames_out}/{self.total} " + text.split(" ", 2)[2]
        return text

    def _print(self, final: bool = False) -> None:
        text = self.line()
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
