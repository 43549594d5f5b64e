"""The graph with real threads, queues, sources and sinks (no mocks)."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from segstream.stream.errors import StageError, WatchdogError
from segstream.stream.frame import Frame
from segstream.stream.graph import FunctionStage, Graph, GraphSettings, Parallel, Stage
from segstream.stream.sinks import CallbackSink, VideoFileSink
from segstream.stream.sources import open_source
from tests.conftest import count_video_frames


class Collect(CallbackSink):
    def __init__(self):
        self.frames: list[Frame] = []
        self.closed = False
        super().__init__(self.frames.append, name="collect")

    def close(self):
        self.closed = True


def _delay_stage(name, max_ms, seed, workers=1):
    rng = random.Random(seed)
    lock = threading.Lock()

    def fn(frame):
        with lock:
            d = rng.uniform(0, max_ms) / 1e3
        time.sleep(d)
        frame.results[name] = frame.seq
        return frame

    return FunctionStage(name, fn, workers=workers)


def test_file_source_random_delays_all_frames_in_order_and_video_complete(tmp_path, video_file):
    out = str(tmp_path / "out.avi")
    collect = Collect()
    steps = [_delay_stage("a", 4, 1), _delay_stage("b", 4, 2, workers=3), _delay_stage("c", 4, 3)]
    g = Graph(open_source(video_file), steps, [VideoFileSink(out, fps=25), collect], GraphSettings(queue_size=2))
    report = g.run(timeout=60)
    assert report.reason == "eos" and report.error is None
    seqs = [f.seq for f in collect.frames]
    assert seqs == list(range(40))
    assert all(f.results["a"] == f.results["b"] == f.results["c"] == f.seq for f in collect.frames)
    assert report.metrics["frames_in"] == report.metrics["frames_out"] == 40
    assert report.metrics["frames_dropped"] == 0
    assert set(report.metrics["stages"]) >= {"a", "b", "c", "sink"}
    assert collect.closed
    assert count_video_frames(out) == 40


def test_image_is_read_only_for_stages():
    seen = []

    def writer(frame):
        try:
            frame.image_bgr[0, 0, 0] = 1
        except ValueError:
            seen.append("read-only")
        return frame

    g = Graph(open_source("synthetic://?width=32&height=16&frames=3"), [FunctionStage("w", writer)], [Collect()])
    g.run(timeout=10)
    assert seen == ["read-only"] * 3


def test_live_source_faster_than_slow_stage_keeps_latency_bounded_and_counts_drops():
    stage_s, fps = 0.05, 100.0
    collect = Collect()
    src = open_source(f"synthetic://?width=64&height=48&fps={fps:g}&frames=300&live=1")
    g = Graph(
        src,
        [FunctionStage("slow", lambda f: (time.sleep(stage_s), f)[1])],
        [collect],
        GraphSettings(queue_size=4, max_in_flight=1),
    )
    report = g.run(timeout=30)
    m = report.metrics
    assert report.error is None
    assert m["frames_dropped"] > 100  # the stage takes 1 in ~5 frames
    assert m["frames_in"] == 300 and m["frames_out"] + m["frames_dropped"] == 300
    # Latency of each frame: sink time - capture time. Bounded by about one stage time plus
    # one frame interval, and not growing over the run.
    ages = np.array([f.timings_ms["slow"] for f in collect.frames])
    assert np.all(ages > stage_s * 1e3 * 0.8)
    e2e = m["latency_ms"]
    assert e2e["p95"] < (stage_s + 1 / fps) * 1e3 * 2.5, e2e


def test_live_latency_does_not_grow():
    stage_s = 0.03
    lat = []
    src = open_source("synthetic://?width=64&height=48&fps=200&frames=400&live=1")
    sink = CallbackSink(lambda f: lat.append(f.age_ms()))
    g = Graph(
        src,
        [FunctionStage("slow", lambda f: (time.sleep(stage_s), f)[1])],
        [sink],
        GraphSettings(queue_size=8, max_in_flight=2),
    )
    g.run(timeout=30)
    first, last = np.median(lat[: len(lat) // 3]), np.median(lat[-len(lat) // 3 :])
    assert last < first * 1.5 + 10, (first, last)
    assert max(lat) < stage_s * 1e3 * 4 + 50


def test_fan_out_join_merges_results_of_the_same_frame():
    def branch(name, seed):
        rng = random.Random(seed)

        def fn(frame):
            time.sleep(rng.uniform(0, 0.006))
            frame.results[name] = (frame.seq, float(frame.image_bgr.mean()))
            return frame

        return FunctionStage(name, fn)

    collect = Collect()
    steps = [
        FunctionStage("pre", lambda f: f),
        Parallel({"left": [branch("l1", 1), branch("l2", 2)], "right": [branch("r1", 3)]}),
        FunctionStage("after", lambda f: f),
    ]
    g = Graph(open_source("synthetic://?width=64&height=48&frames=60"), steps, [collect])
    report = g.run(timeout=30)
    assert report.error is None and report.metrics["join_timeouts"] == 0
    assert [f.seq for f in collect.frames] == list(range(60))
    for f in collect.frames:
        mean = float(f.image_bgr.mean())
        assert f.results["l1"] == f.results["l2"] == f.results["r1"] == (f.seq, mean)
        assert {"l1", "l2", "r1", "pre", "after"} <= set(f.timings_ms)


def test_join_timeout_is_reported_not_swallowed():
    def late(frame):
        if frame.seq == 2:
            time.sleep(0.6)
        frame.results["slow"] = True
        return frame

    collect = Collect()
    steps = [
        FunctionStage("pre", lambda f: f),
        Parallel({"fast": [FunctionStage("fast", lambda f: f)], "slow": [FunctionStage("late", late)]}),
    ]
    g = Graph(
        open_source("synthetic://?width=32&height=32&frames=5"), steps, [collect], GraphSettings(join_timeout_s=0.2)
    )
    report = g.run(timeout=20)
    assert report.metrics["join_timeouts"] >= 1
    assert report.metrics["join_late"] >= 1
    frame2 = [f for f in collect.frames if f.seq == 2][0]
    assert frame2.results["missing_branches"] == ["slow"]
    assert [f.seq for f in collect.frames] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("workers", [1, 3])
def test_stage_raising_at_frame_k_stops_cleanly_and_keeps_earlier_frames(tmp_path, workers):
    k = 17
    out = str(tmp_path / "out.avi")
    collect = Collect()

    def boom(frame):
        time.sleep(0.002)
        if frame.seq == k:
            raise RuntimeError("model exploded")
        return frame

    steps = [
        FunctionStage("pre", lambda f: f),
        FunctionStage("infer", boom, workers=workers),
        FunctionStage("post", lambda f: f),
    ]
    g = Graph(open_source("synthetic://?width=64&height=48&frames=100"), steps, [VideoFileSink(out, fps=10), collect])
    t0 = time.monotonic()
    report = g.run(timeout=20)
    assert time.monotonic() - t0 < 5
    assert report.reason == "error"
    assert isinstance(report.error, StageError)
    assert (
        str(report.error)
        == "stage 'infer' failed on frame 17 of source 'synthetic://64x48': RuntimeError: model exploded"
    )
    assert [f.seq for f in collect.frames] == list(range(k))
    assert collect.closed
    assert count_video_frames(out) == k


def test_error_in_setup_surfaces_before_any_thread():
    class Broken(Stage):
        name = "broken"

        def setup(self):
            raise FileNotFoundError("weights.onnx")

    g = Graph(open_source("synthetic://?width=8&height=8&frames=2"), [Broken()], [Collect()])
    with pytest.raises(StageError, match="stage 'broken' failed on start-up: FileNotFoundError"):
        g.run()


def test_watchdog_stops_a_hung_stage_and_finalises_sinks(tmp_path):
    out = str(tmp_path / "out.avi")
    release = threading.Event()

    def hang(frame):
        if frame.seq == 5:
            release.wait(30)
        return frame

    g = Graph(
        open_source("synthetic://?width=64&height=48&frames=50"),
        [FunctionStage("hang", hang)],
        [VideoFileSink(out, fps=10)],
        GraphSettings(watchdog_s=0.5),
    )
    t0 = time.monotonic()
    report = g.run(timeout=20)
    release.set()
    assert time.monotonic() - t0 < 5
    assert isinstance(report.error, WatchdogError)
    assert "stage 'hang' has held frame 5" in str(report.error)
    assert count_video_frames(out) == 5


def test_stop_drains_and_finalises(tmp_path):
    out = str(tmp_path / "out.avi")
    src = open_source("synthetic://?width=64&height=48&fps=50&frames=0&live=1")
    g = Graph(src, [FunctionStage("s", lambda f: f)], [VideoFileSink(out, fps=50)])
    g.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    g.stop()
    assert g.wait(timeout=3)
    assert time.monotonic() - t0 < 2
    g.close()
    n = g.metrics.frames_out
    assert n > 5
    assert count_video_frames(out) == n


def test_filtered_frames_are_counted():
    collect = Collect()
    g = Graph(
        open_source("synthetic://?width=8&height=8&frames=10"),
        [FunctionStage("odd", lambda f: f if f.seq % 2 else None)],
        [collect],
    )
    report = g.run(timeout=10)
    assert [f.seq for f in collect.frames] == [1, 3, 5, 7, 9]
    assert report.metrics["frames_filtered"] == 5


def test_watchdog_reports_a_blocked_sink():
    release = threading.Event()

    class Blocking(CallbackSink):
        def __init__(self):
            super().__init__(lambda f: release.wait(30) if f.seq == 3 else None, name="blocking")

    g = Graph(
        open_source("synthetic://?width=16&height=16&frames=20"),
        [FunctionStage("s", lambda f: f)],
        [Blocking()],
        GraphSettings(watchdog_s=0.5),
    )
    t0 = time.monotonic()
    report = g.run(timeout=20)
    release.set()
    assert time.monotonic() - t0 < 5
    assert isinstance(report.error, WatchdogError) and "stage 'sink' has held frame 3" in str(report.error)


def test_stage_cpu_time_is_reported_apart_from_waiting():
    """A stage that sleeps takes wall time but no CPU; one that computes takes both."""

    def spin(frame):
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
        return frame

    stages = [FunctionStage("sleepy", lambda f: (time.sleep(0.02), f)[1]), FunctionStage("busy", spin)]
    report = Graph(open_source("synthetic://?width=32&height=16&frames=5"), stages, [Collect()]).run(timeout=30)
    st = report.metrics["stages"]
    assert st["sleepy"]["p50_ms"] >= 19 and st["sleepy"]["cpu_mean_ms"] < 5
    assert st["busy"]["cpu_mean_ms"] >= 19


def test_run_with_progress_prints_the_bar_on_stderr_and_reports_the_same(capsys):
    collect = Collect()
    g = Graph(open_source("synthetic://?width=64&height=48&frames=10"), [FunctionStage("a", lambda f: f)], [collect])
    report = g.run(timeout=30, progress=True, total=10)
    assert report.reason == "eos" and report.error is None and report.stuck_threads == []
    assert report.metrics["frames_out"] == 10 and len(collect.frames) == 10
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("[" + "#" * 24 + "] 10/10 "), lines


def test_stages_lists_every_stage_in_step_then_branch_order():
    a, b, c, d, e = (FunctionStage(n, lambda f: f) for n in "abcde")
    g = Graph(
        open_source("synthetic://?width=64&height=48&frames=1"), [a, Parallel({"x": [b, c], "y": [d]}), e], [Collect()]
    )
    assert g.stages() == [a, b, c, d, e]


def test_one_progress_line_format_for_every_counted_job():
    import io

    from segstream.stream.progress import bar, count_line, write_line

    assert bar(0.5, 10) == "[#####-----]"
    assert bar(2.0, 4) == "[####]" and bar(-1, 4) == "[----]"
    line = count_line("train", 15, 60, "loss 0.5", eta_s=120)
    assert line == "train [#######-----------------------] 15/60 loss 0.5 eta 2 min"
    out = io.StringIO()
    write_line("a", out)
    write_line("b", out, final=True)
    assert out.getvalue() == "\ra\rb\n"
