"""Live progress on stderr: a bar for sources with a known length, a status line otherwise."""

from __future__ import annotations

import sys
import threading
from typing import TextIO


def bar(fraction: float, width: int = 24) -> str:
    """``[#####-----]``: a fraction in [0, 1] as a bar of ``width`` cells."""
    n = int(min(1.0, max(0.0, fraction)) * width)
    return "[" + "#" * n + "-" * (width - n) + "]"


def count_line(label: str, done: int, total: int, details: str = "", eta_s: float | None = None) -> str:
    """``train [####----] 120/1800 loss 0.41 eta 12 min``: one line for any counted job."""
    text = f"{label} {bar(done / total if total else 1.0, 30)} {done}/{total}"
    if details:
        text += f" {details}"
    if eta_s is not None:
        text += f" eta {eta_s / 60:.0f} min"
    return text


def write_line(text: str, stream: TextIO | None = None, final: bool = False) -> None:
    """Redraws ``text`` in place (a carriage return; a newline when ``final``)."""
    out = stream or sys.stderr
    out.write("\r" + text + ("\n" if final else ""))
    out.flush()


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
            text = f"{bar(m.frames_out / self.total)} {m.frames_out}/{self.total} " + text.split(" ", 2)[2]
        return text

    def _print(self, final: bool = False) -> None:
        text = self.line()
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
