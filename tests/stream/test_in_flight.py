"""Throughput mode for files: a bounded number of frames in flight, so latency stays a few
frame times instead of the depth of every queue, and no frame is ever dropped."""

from __future__ import annotations

import threading
import time

import pytest

from segstream.stream.graph import FunctionStage, Graph, GraphSettings, Parallel
from segstream.stream.sinks import CallbackSink
from segstream.stream.sources import open_source


class InFlightProbe:
    """Counts frames between the first stage and the sink, and the most at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.seqs: list[int] = []

    def enter(self, frame):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        return frame

    def leave(self, frame):
        with self.lock:
            self.now -= 1
            self.seqs.append(frame.seq)


def _slow(name, s):
    return FunctionStage(name, lambda f: (time.sleep(s), f)[1])


def _run(limit: int, parallel: bool = False):
    probe = InFlightProbe()
    src = open_source("synthetic://?width=64&height=48&frames=40")  # a file-like source: never drops
    steps = [FunctionStage("enter", probe.enter)]
    if parallel:
        steps.append(Parallel({"a": [_slow("a1", 0.004), _slow("a2", 0.002)], "b": [_slow("b1", 0.006)]}))
    steps += [_slow("s1", 0.003), _slow("s2", 0.005)]
    g = Graph(src, steps, [CallbackSink(probe.leave)], GraphSettings(queue_size=8, max_in_flight=limit))
    report = g.run(timeout=60)
    assert report.error is None
    return probe, report.metrics


@pytest.mark.parametrize("limit", [1, 2, 3])
@pytest.mark.parametrize("parallel", [False, True])
def test_file_source_never_has_more_frames_in_flight_than_the_limit(limit, parallel):
    probe, m = _run(limit, parallel)
    assert probe.seqs == list(range(40))  # every frame, in order: files never drop
    assert m["frames_dropped"] == 0
    assert probe.peak <= limit
    assert m["in_flight"] == {"limit": limit, "peak": m["in_flight"]["peak"]} and m["in_flight"]["peak"] <= limit


def test_without_a_limit_frames_pile_up_in_the_queues():
    probe, m = _run(0)
    assert probe.seqs == list(range(40))
    assert probe.peak > 3  # the queues fill: the latency a limit prevents
    assert "in_flight" not in m


def test_live_drops_leave_gaps_in_sequence_numbers():
    """A dropped frame keeps its number, so seq is the source's frame index (results can be
    matched to per-frame ground truth, and a gap says how many frames were lost)."""
    seqs = []
    src = open_source("synthetic://?width=64&height=48&fps=100&frames=120&live=1")
    g = Graph(
        src,
        [_slow("slow", 0.03)],
        [CallbackSink(lambda f: seqs.append((f.seq, f.pts_s)))],
        GraphSettings(queue_size=4, max_in_flight=1),
    )
    m = g.run(timeout=60).metrics
    assert m["frames_dropped"] > 0 and m["frames_in"] == 120
    assert [s for s, _ in seqs] == sorted({s for s, _ in seqs}) and seqs[-1][0] < 120
    assert all(pts == pytest.approx(s / 100) for s, pts in seqs)  # seq is the source's frame index
    assert len(seqs) + m["frames_dropped"] == 120
