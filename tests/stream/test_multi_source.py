"""Several sources in one graph: per-source order and state under random delays, a failing
source isolated, sources added and removed while running, per-source metrics and outputs."""

from __future__ import annotations

import json
import random
import threading
import time

import cv2
import pytest

from segstream.stream.errors import SegstreamError, SourceError
from segstream.stream.graph import FunctionStage, Graph, GraphSettings, Parallel, Stage
from segstream.stream.sinks import CallbackSink, PerSourceSink, open_sink
from segstream.stream.sources import open_source


def synth(frames: int = 12, live: bool = False, fps: float = 30.0, seed: int = 0):
    return open_source(f"synthetic://?width=32&height=24&frames={frames}&live={int(live)}&fps={fps}&seed={seed}")


def jitter(name: str, rng: random.Random, top_s: float = 0.004, workers: int = 1) -> FunctionStage:
    lock = threading.Lock()

    def fn(frame):
        with lock:
            delay = rng.random() * top_s
        time.sleep(delay)
        frame.results[name] = frame.seq
        return frame

    return FunctionStage(name, fn, workers=workers)


class PerSourceCounter(Stage):
    """State kept per source, as the tracker and scheduler keep theirs: the frames seen so far."""

    name = "count"

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.ended: list[str] = []

    def process(self, frame):
        n = self.seen.get(frame.source_id, 0)
        frame.results["count"] = n
        self.seen[frame.source_id] = n + 1
        return frame

    def source_ended(self, source_id: str) -> None:
        self.ended.append(source_id)
        self.seen.pop(source_id, None)


class Collect:
    """Frames by source, and the order of per-source ends the sink heard, checked against frames."""

    def __init__(self) -> None:
        self.by_source: dict[str, list] = {}
        self.ends: list[str] = []
        self.name = "collect"
        self.lock = threading.Lock()
        self._ended: set[str] = set()

    def write(self, frame) -> None:
        with self.lock:
            if frame.source_id in self._ended:  # only a new stream under the same id may follow an end
                assert frame.seq == 0, f"frame {frame.seq} of '{frame.source_id}' arrived after its end"
                self._ended.discard(frame.source_id)
            self.by_source.setdefault(frame.source_id, []).append(frame)

    def end_source(self, source_id: str) -> None:
        with self.lock:
            self.ends.append(source_id)
            self._ended.add(source_id)

    def close(self) -> None:
        pass


class FailingSource:
    """A real source object that breaks after ``after`` frames (a camera whose decoder dies)."""

    live = False
    fps = 30.0
    frame_count = None

    def __init__(self, after: int, name: str = "broken") -> None:
        self.inner = synth(frames=100)
        self.after = after
        self.name = name
        self.closed = False

    def open(self) -> None:
        self.inner.open()

    def read(self, stop):
        if self.after == 0:
            raise RuntimeError("decoder lost sync")
        self.after -= 1
        return self.inner.read(stop)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("seed", [1, 2])
def test_every_source_keeps_its_order_and_its_own_state_under_random_delays(seed):
    rng = random.Random(seed)
    counter = PerSourceCounter()
    steps = [
        jitter("pre", rng, workers=2),
        Parallel({"a": [jitter("a1", rng), jitter("a2", rng)], "b": [jitter("b1", rng, workers=2)]}),
        counter,
        jitter("post", rng),
    ]
    frames = {"cam0": 14, "cam1": 9, "cam2": 11}
    sources = {sid: synth(n, seed=i) for i, (sid, n) in enumerate(frames.items())}
    sink = Collect()
    report = Graph(sources, steps, [sink], GraphSettings(queue_size=2, max_in_flight=2)).run(timeout=60)
    assert report.error is None and report.reason == "eos"
    assert report.metrics["join_timeouts"] == 0
    for sid, n in frames.items():
        got = sink.by_source[sid]
        assert [f.seq for f in got] == list(range(n))
        assert [f.results["count"] for f in got] == list(range(n))  # state never mixed across sources
        assert all(f.results["a2"] == f.results["b1"] == f.seq for f in got)
    assert sorted(sink.ends) == sorted(frames) and sorted(counter.ended) == sorted(frames)
    per = report.metrics["sources"]
    assert {sid: per[sid]["frames_out"] for sid in frames} == frames
    assert sum(p["frames_in"] for p in per.values()) == report.metrics["frames_in"] == sum(frames.values())
    assert all(p["state"] == "ended" and p["latency_ms"]["p95"] > 0 for p in per.values())


def test_sources_take_turns_so_a_long_file_does_not_starve_a_short_one():
    order: list[str] = []
    sink = CallbackSink(lambda f: order.append(f.source_id))
    g = Graph({"long": synth(40), "short": synth(5)}, [FunctionStage("s", lambda f: f)], [sink])
    assert g.run(timeout=30).error is None
    assert order.index("short") < 4 and order[:16].count("short") == 5


def test_a_failing_source_is_reported_and_removed_while_the_others_finish():
    sink = Collect()
    broken = FailingSource(after=3)
    g = Graph({"ok0": synth(10), "bad": broken, "ok1": synth(10, seed=3)}, [jitter("s", random.Random(0))], [sink])
    report = g.run(timeout=30)
    assert report.error is None and report.reason == "eos"
    assert [f.seq for f in sink.by_source["ok0"]] == list(range(10))
    assert [f.seq for f in sink.by_source["ok1"]] == list(range(10))
    assert [f.seq for f in sink.by_source["bad"]] == [0, 1, 2]  # its frames before the failure are kept
    assert set(report.source_errors) == {"bad"} and isinstance(report.source_errors["bad"], SourceError)
    assert "decoder lost sync" in str(report.source_errors["bad"])
    bad = report.metrics["sources"]["bad"]
    assert bad["state"] == "failed" and "decoder lost sync" in bad["error"] and broken.closed
    assert sorted(sink.ends) == ["bad", "ok0", "ok1"]


def test_one_source_given_alone_still_fails_the_run():
    report = Graph(FailingSource(after=2), [FunctionStage("s", lambda f: f)], [Collect()]).run(timeout=30)
    assert report.reason == "error" and isinstance(report.error, SourceError)


def test_when_every_source_fails_the_run_fails():
    report = Graph([FailingSource(1, "x"), FailingSource(2, "y")], [FunctionStage("s", lambda f: f)], []).run(
        timeout=30
    )
    assert report.reason == "error" and set(report.source_errors) == {"x", "y"}


def test_a_source_that_cannot_be_opened_is_left_out_when_others_can(tmp_path):
    sink = Collect()
    g = Graph({"ok": synth(4), "gone": open_source(str(tmp_path / "missing.mp4"))}, [], [sink])
    report = g.run(timeout=30)
    assert report.error is None and len(sink.by_source["ok"]) == 4
    assert report.metrics["sources"]["gone"]["state"] == "failed" and "gone" in report.source_errors


def test_ids_are_names_when_unique_else_cam_n_and_must_be_unique():
    a, b = synth(), synth()
    assert a.name == b.name
    g = Graph([a, b], [], [])
    assert g.source_ids() == ["cam0", "cam1"]
    assert g.add_source(synth()) == "synthetic://32x24"  # its name is free
    assert g.add_source(synth()) == "cam2"
    with pytest.raises(ValueError, match="in use"):
        g.add_source(synth(), "cam0")
    assert Graph([synth(), open_source("synthetic://?width=16&height=16&frames=2")], [], []).source_ids() == [
        "synthetic://32x24",
        "synthetic://16x16",
    ]


def test_sources_added_and_removed_while_running():
    counter = PerSourceCounter()
    sink = Collect()
    steps = [
        FunctionStage("pre", lambda f: f),
        Parallel({"a": [jitter("a", random.Random(1))], "b": [jitter("b", random.Random(2))]}),
        counter,
    ]
    live = {"cam0": synth(0, live=True, fps=60), "cam1": synth(0, live=True, fps=60, seed=1)}
    g = Graph(live, steps, [sink], GraphSettings(max_in_flight=2))
    g.start()
    try:
        _wait_for(lambda: len(sink.by_source.get("cam1", ())) >= 5)
        added = g.add_source(synth(0, live=True, fps=60, seed=2), "door")
        _wait_for(lambda: len(sink.by_source.get("door", ())) >= 5)
        assert g.remove_source("cam1", timeout=10) is True  # its frames drained to the sinks
        assert "cam1" in sink.ends and "cam1" not in g.source_ids()
        n_cam1 = len(sink.by_source["cam1"])
        # The id is free again: a new stream under it starts at frame 0 with fresh state.
        g.add_source(synth(0, live=True, fps=60, seed=5), "cam1")
        _wait_for(lambda: len(sink.by_source["cam1"]) >= n_cam1 + 3)
        with pytest.raises(KeyError, match="no source 'nope'"):
            g.remove_source("nope")
    finally:
        g.stop()
        finished = g.wait(10)
        g.close()
    assert finished and g.error is None and added == "door"
    again = sink.by_source["cam1"][n_cam1:]
    assert again[0].seq == 0 and again[0].results["count"] == 0
    assert all("a" in f.results and "b" in f.results for f in sink.by_source["cam1"])  # the join forgot the old stream
    streams = [sink.by_source["cam0"], sink.by_source["door"], sink.by_source["cam1"][:n_cam1], again]
    for frames in streams:
        seqs = [f.seq for f in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert sorted(sink.ends) == ["cam0", "cam1", "cam1", "door"]
    with pytest.raises(SegstreamError, match="no source can be added"):
        g.add_source(synth())


def test_removing_every_source_ends_the_graph():
    g = Graph({"a": synth(0, live=True, fps=50), "b": synth(0, live=True, fps=50)}, [], [Collect()])
    g.start()
    g.remove_source("a")
    g.remove_source("b")
    assert g.wait(10)
    g.close()


def test_live_drops_and_latency_are_counted_per_source():
    slow = FunctionStage("slow", lambda f: (time.sleep(0.02), f)[1])
    g = Graph(
        {"fast": synth(60, live=True, fps=200), "calm": synth(8, live=True, fps=20)},
        [slow],
        [],
        GraphSettings(max_in_flight=1),
    )
    report = g.run(timeout=30)
    per = report.metrics["sources"]
    assert report.error is None
    assert per["fast"]["frames_in"] == 60 and per["fast"]["frames_dropped"] > 10
    assert per["fast"]["frames_in"] == per["fast"]["frames_out"] + per["fast"]["frames_dropped"]
    assert report.metrics["frames_dropped"] == per["fast"]["frames_dropped"] + per["calm"]["frames_dropped"]
    assert per["calm"]["fps"] > 0 and per["fast"]["in_flight"]["limit"] == 1


def test_per_source_outputs_are_opened_and_finalised_per_source(tmp_path):
    video = open_sink(str(tmp_path / "out" / "{source}.avi"), fps=10)
    jsonl = open_sink(str(tmp_path / "out" / "{source}.jsonl"))
    everything = open_sink(str(tmp_path / "all.jsonl"))
    assert isinstance(video, PerSourceSink) and isinstance(jsonl, PerSourceSink)
    sources = {"cam0": synth(7), "cam/1": synth(4, seed=2)}
    report = Graph(sources, [FunctionStage("s", lambda f: f)], [video, jsonl, everything]).run(timeout=30)
    assert report.error is None
    assert sorted(video.finalised) == ["cam/1", "cam0"]
    for sid, name, n in (("cam0", "cam0", 7), ("cam/1", "cam_1", 4)):
        cap = cv2.VideoCapture(str(tmp_path / "out" / f"{name}.avi"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        cap.release()
        lines = [json.loads(x) for x in (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()]
        assert [(r["source"], r["frame"]) for r in lines] == [(sid, i) for i in range(n)]
    rows = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert sorted((r["source"], r["frame"]) for r in rows) == sorted(
        [("cam0", i) for i in range(7)] + [("cam/1", i) for i in range(4)]
    )


def test_a_per_source_output_of_an_unknown_type_fails_before_frames_flow(tmp_path):
    from segstream.stream.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown output type"):
        open_sink(str(tmp_path / "{source}.xyz"))


def _wait_for(cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_a_graph_wide_limit_bounds_frames_in_flight_and_serves_cameras_in_turn():
    probe = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def enter(frame):
        with lock:
            probe["now"] += 1
            probe["peak"] = max(probe["peak"], probe["now"])
        time.sleep(0.01)
        return frame

    def leave(frame):
        with lock:
            probe["now"] -= 1

    cams = {f"cam{i}": synth(30, live=True, fps=100, seed=i) for i in range(3)}
    g = Graph(
        cams,
        [FunctionStage("enter", enter), FunctionStage("work", lambda f: (time.sleep(0.01), f)[1])],
        [CallbackSink(leave)],
        GraphSettings(max_in_flight=2, max_in_flight_total=2),
    )
    report = g.run(timeout=30)
    per = report.metrics["sources"]
    outs = [per[c]["frames_out"] for c in cams]
    assert report.error is None and probe["peak"] <= 2 and report.metrics["in_flight"]["peak"] <= 2
    assert min(outs) >= 0.5 * max(outs) and min(outs) > 0, outs  # no camera starves
    assert all(p["frames_in"] == p["frames_out"] + p["frames_dropped"] for p in per.values())
