"""The applications behind ``segstream run``, ``bench pipeline`` and ``demo``: assemble a
source, a pipeline and sinks from the config, run the graph, report."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from segstream.pipelines.apps.config import AppConfig, load_config
from segstream.pipelines.apps.registry import build_pipeline
from segstream.stream.control import ControlServer
from segstream.stream.errors import ConfigError
from segstream.stream.graph import FunctionStage, Graph, RunReport
from segstream.stream.io import write_json
from segstream.stream.sinks import open_sink
from segstream.stream.sources import open_source
from segstream.stream.sources.base import wait_for_frame_time

log = logging.getLogger(__name__)


def make_source(config: AppConfig, uri: str | None = None):
    """The (unopened) source for ``uri`` (default: ``source.uri``) with the configured network
    options and policy."""
    src = open_source(config.source.uri if uri is None else uri, network_options=vars(config.network).copy())
    if config.source.policy != "auto":
        src.live = config.source.policy == "latest"
    return src


class PacedSource:
    """A recorded source played as a live camera: frame i is released at ``i / fps`` seconds
    after the first, and the graph treats it as live (it keeps the newest frame and drops what
    it cannot take, counted). What a pipeline shows on it (latency, drops, the HUD's age) is
    what it would show on a camera of that rate.

    Args:
        inner: the source (a file, a folder, generated frames).
        fps: the rate to play at (None: the source's own, else 30).
    """

    live = True

    def __init__(self, inner, fps: float | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self._fps = fps
        self._t0: float | None = None
        self._index = 0

    @property
    def fps(self) -> float:
        return float(self._fps or getattr(self.inner, "fps", None) or 30.0)

    @property
    def frame_count(self):
        return getattr(self.inner, "frame_count", None)

    def open(self) -> None:
        opened = getattr(self.inner, "open", None)
        if opened is not None:
            opened()

    def read(self, stop: threading.Event):
        if self._t0 is None:
            self._t0 = time.monotonic()
        if not wait_for_frame_time(self._t0, self._index, self.fps, stop):
            return None
        self._index += 1
        return self.inner.read(stop)

    def close(self) -> None:
        self.inner.close()

    def stats(self) -> dict:
        inner = getattr(self.inner, "stats", None)
        return {"paced_fps": self.fps, **(inner() if inner is not None else {})}


def source_factory(config: AppConfig, pace_fps: float | None = None) -> Callable[[str], object]:
    """Builds sources from URIs as the config says (network options, policy, pacing); the
    graph's own sources and those added while it runs (the control interface) come from it.

    Args:
        pace_fps: play each source as a live camera of this rate (``PacedSource``); None:
            ``source.pace_fps`` when > 0, else as it is.
    """
    if pace_fps is None and config.source.pace_fps > 0:
        pace_fps = config.source.pace_fps

    def build(uri: str):
        source = make_source(config, uri)
        return PacedSource(source, pace_fps or None) if pace_fps is not None else source

    return build


def make_graph(
    config: AppConfig, max_frames: int | None = None, extra_sinks=(), pace_fps: float | None = None
) -> Graph:
    """Builds the graph the config describes (nothing runs until ``run``).

    One source (``source.uri``, or ``source.uris`` with one entry) gives the one-source graph,
    whose source errors fail the run; several give ids ``cam0``, ``cam1``, ... in order, each
    with its own drop policy and in-flight limit, and a source that fails is removed while
    the others go on. ``max_frames`` counts per source.

    Args:
        pace_fps: play the sources as live cameras of this rate (``PacedSource``); None: as they are.
    """
    build = source_factory(config, pace_fps)
    uris = config.source.all_uris()
    steps = build_pipeline(config)
    sinks = [open_sink(u, fps=config.output.fps or None) for u in config.output.uris]
    sinks.extend(extra_sinks)
    if len(uris) == 1:
        source = build(uris[0])
        graph = Graph(source, steps, sinks, config.graph_settings(source.live), max_frames=max_frames)
    else:
        sources = {f"cam{i}": build(u) for i, u in enumerate(uris)}
        settings = replace(
            config.graph_settings(True),
            max_in_flight_file=config.source.max_in_flight_file,
            max_in_flight_total=config.source.max_in_flight_total,
        )
        graph = Graph(sources, steps, sinks, settings, max_frames=max_frames)
        for u in config.output.uris:
            if "{source}" not in u and os.path.splitext(u)[1].lower() in (".mp4", ".avi", ".mov", ".mkv", ".m4v"):
                log.warning("%s receives the frames of every source; use %s for one video per source", u, _per(u))
    _fix_output_fps(config, graph)
    return graph


def _per(uri: str) -> str:
    stem, ext = os.path.splitext(uri)
    return os.path.join(os.path.dirname(stem), "{source}" + ext)


def control_for(config: AppConfig, graph: Graph, pace_fps: float | None = None) -> ControlServer | None:
    """The control interface the config asks for (``[control] port`` > 0), unopened; else None."""
    c = config.control
    if not c.port:
        return None
    return ControlServer(
        graph,
        source_factory(config, pace_fps),
        host=c.host,
        port=c.port,
        token=c.token or None,
        remove_timeout_s=config.runtime.drain_timeout_s + 5.0,
    )


class _SignalStop:
    """SIGINT/SIGTERM ask the graph to drain and stop; a second signal discards the rest."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.signum = signum
        self.graph.stop("stop")

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _fix_output_fps(config: AppConfig, graph: Graph) -> None:
    """Video sinks write at ``output.fps``, else the source's rate (``make_graph`` does this)."""
    fps = config.output.fps or graph.source.fps
    for sink in graph.sinks:
        if hasattr(sink, "fps") and fps:
            sink.fps = float(fps)


def run_graph(graph: Graph, *, progress: bool, total: int | None) -> tuple[RunReport, int | None]:
    """Runs a graph with signal handling and progress; returns the report and the signal seen."""
    with _SignalStop(graph) as sig:
        report = graph.run(progress=progress, total=total)
    return report, sig.signum


@dataclass(frozen=True)
class RunOptions:
    """What ``segstream run`` (and ``bench pipeline`` with a config) is asked for.

    Attributes:
        config: TOML file; None: ./config.toml when it exists, else the built-in defaults.
        overrides: ``section.key=value`` assignments applied after the file.
        source: one URI replaces ``source.uri`` (and clears ``source.uris``); several replace
            ``source.uris`` (a string is taken as one).
        outputs / pipeline: replace ``output.uris`` / ``pipeline.name``.
        max_frames: stop after this many frames (None: the whole source).
        quiet: no progress display. metrics_json: write the run's metrics here.
        debug: print the traceback of a failure's cause.
    """

    config: str | None = None
    overrides: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    pipeline: str | None = None
    max_frames: int | None = None
    quiet: bool = False
    metrics_json: str | None = None
    debug: bool = False

    def __post_init__(self) -> None:
        if self.source is None or isinstance(self.source, str):
            object.__setattr__(self, "source", (self.source,) if self.source else ())
        else:
            object.__setattr__(self, "source", tuple(self.source))


def config_for(opts: RunOptions) -> AppConfig:
    """The configuration a run with ``opts`` uses: the file, the overrides, then the options."""
    config = load_config(opts.config, list(opts.overrides))
    if len(opts.source) == 1:
        config.source.uri = opts.source[0]
        config.source.uris = []
    elif opts.source:
        config.source.uris = list(opts.source)
    if opts.outputs:
        config.output.uris = list(opts.outputs)
    if opts.pipeline:
        config.pipeline.name = opts.pipeline
    if opts.max_frames is not None and opts.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {opts.max_frames}")
    return config


def run_command(opts: RunOptions) -> int:
    """``segstream run``: 0 on success, 1 on a runtime failure, 128+N after signal N."""
    config = config_for(opts)
    graph = make_graph(config, max_frames=opts.max_frames)
    several = len(config.source.all_uris()) > 1
    total = graph.source.frame_count if not graph.source.live and not several else None
    if total is not None and opts.max_frames:
        total = min(total, opts.max_frames)
    control = control_for(config, graph)
    if control is not None:
        control.open()
        if not opts.quiet:
            print(f"segstream: control interface on {control.url}/sources", file=sys.stderr)
    try:
        report, signum = run_graph(graph, progress=config.runtime.progress and not opts.quiet, total=total)
    finally:
        if control is not None:
            control.close()
    for sid, err in report.source_errors.items():
        print(f"segstream: source '{sid}' failed and was removed (the others went on): {err}", file=sys.stderr)
    if opts.metrics_json:
        write_json(opts.metrics_json, report.metrics)
    if report.error is not None:
        if opts.debug and graph.error_cause is not None:
            import traceback

            traceback.print_exception(graph.error_cause, file=sys.stderr)
        print(f"segstream: error: {report.error}", file=sys.stderr)
        print(f"segstream: {report.metrics['frames_out']} frames were written before the failure", file=sys.stderr)
        return report.error.exit_code
    if report.stuck_threads:
        log.warning("threads still running at exit: %s", ", ".join(report.stuck_threads))
    if signum is not None:
        print(
            f"segstream: stopped by {signal.Signals(signum).name} after {report.metrics['frames_out']} frames",
            file=sys.stderr,
        )
        return 128 + signum
    return 1 if report.source_errors else 0


def bench_pipeline(source_uri: str, stages: int, max_frames: int | None, queue_size: int = 4) -> dict:
    """The runtime's own cost: a source through ``stages`` no-op stages to a null sink.

    Returns the metrics document plus ``per_hop_us``: wall time per frame divided by the hops
    (source->stage, stage->stage, stage->sink), and ``cpu_per_frame_us``.
    """
    from segstream.stream.graph import GraphSettings
    from segstream.stream.sinks import NullSink

    source = open_source(source_uri)
    steps = [FunctionStage(f"noop{i}", lambda f: f) for i in range(stages)]
    graph = Graph(
        source, steps, [NullSink()], GraphSettings(queue_size=queue_size, max_in_flight=0), max_frames=max_frames
    )
    t0, c0 = time.perf_counter(), time.process_time()
    report = graph.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    doc = dict(report.metrics)
    n = max(1, doc["frames_out"])
    hops = stages + 1
    doc["bench"] = {
        "stages": stages,
        "hops": hops,
        "wall_s": round(wall, 3),
        "frames_per_s": round(n / wall, 1),
        "per_hop_us": round(wall / n / hops * 1e6, 2),
        "cpu_per_frame_us": round(cpu / n * 1e6, 2),
        "cpu_per_hop_us": round(cpu / n / hops * 1e6, 2),
        "cpus": os.cpu_count(),
    }
    return doc


def model_only_fps(graph: Graph, iters: int = 15, warmup: int = 3) -> dict | None:
    """Frames per second of the graph's models alone: every inference stage's backend run one
    after the other on the same preprocessed frame, same backends and threads as the pipeline."""
    from segstream.pipelines.tasks.inference import InferStage, PreprocessStage

    stages = [getattr(st, "inner", st) for st in graph.stages()]  # scheduled stages wrap the model's
    pairs = []
    for st in stages:
        if isinstance(st, InferStage):
            pre = next((p for p in stages if isinstance(p, PreprocessStage) and p.key == st.key), None)
            if pre is not None:
                pairs.append((pre, st))
    if not pairs:
        return None
    src = make_source_like(graph)
    src.open()
    try:
        item = src.read(threading.Event())
    finally:
        src.close()
    if item is None:
        return None
    per_model = {}
    for pre, infer in pairs:
        feeds, _ = pre.preprocess(item.image_bgr)
        for _ in range(warmup):
            infer.backend.run(feeds)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            infer.backend.run(feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        per_model[infer.key] = round(float(sorted(times)[len(times) // 2]), 3)
    total_ms = sum(per_model.values())
    return {"fps": 1000.0 / total_ms if total_ms else 0.0, "per_model_ms": per_model}


def make_source_like(graph: Graph):
    """A fresh source with the same URI as the graph's (to take one frame for model-only timing)."""
    uri = getattr(graph.source, "path", None) or getattr(graph.source, "pattern", None) or graph.source.name
    return open_source(uri)


def _print_pipeline_bench(doc: dict) -> None:
    lat = doc["latency_ms"]
    src = doc.get("source") or {}
    print(
        f"pipeline: {doc['frames_out']} of {doc['frames_in']} frames out ({doc['frames_dropped']} dropped), "
        f"{doc['fps']:.2f} fps end to end, latency p50 {lat['p50']:.0f} ms p95 {lat['p95']:.0f} ms p99 {lat['p99']:.0f} ms"
        + (f"; source paced at {src['paced_fps']:g} fps" if "paced_fps" in src else "")
    )
    if "in_flight" in doc:
        print(f"  frames in flight: at most {doc['in_flight']['peak']} (limit {doc['in_flight']['limit']})")
    extra = doc.get("extra", {})
    sched, carry, tracks = extra.get("schedule"), extra.get("carry"), extra.get("track")
    if sched:
        print(
            f"  schedule: every {sched['every']} (fixed {sched['fixed'] or 'none'}), model CPU per run "
            f"{sched['cost_ms']} ms, rest {sched['base_ms']} ms per frame, budget {sched['budget_ms']} ms per frame "
            f"({sched['cores']} cores, {sched.get('cores_obtained')} obtained, at {sched['target_fps']:g} fps), "
            f"plan changes {sched['plan_changes']}"
        )
    if carry:
        total = {k: carry["fresh"][k] + carry["carried"][k] for k in carry["fresh"]}
        print(
            "  freshness: "
            + ", ".join(
                f"{k} fresh on {carry['fresh'][k]} of {total[k]} frames, carried on {carry['carried'][k]} "
                f"(oldest {carry['max_age_frames'][k]} frames)"
                for k in carry["fresh"]
            )
        )
    if tracks:
        print(
            f"  tracks: started {tracks['tracks_started']}, confirmed {tracks['tracks_confirmed']}, confirmed and ended "
            f"under 5 frames {tracks['confirmed_under_5_frames']} ({100 * tracks['confirmed_short_share']:.1f} %), "
            f"alive at the end {tracks['confirmed_alive_at_end']}"
        )
    print("  per-stage profile (wall p50/p95 per frame; CPU: the stage thread's own time per frame):")
    for name, st in doc["stages"].items():
        print(
            f"  {name:<18} p50 {st['p50_ms']:8.2f} ms  p95 {st['p95_ms']:8.2f} ms  CPU {st['cpu_mean_ms']:7.2f} ms/frame"
        )
    cpu = sum(st["cpu_mean_ms"] for st in doc["stages"].values())
    print(f"  {'all stages':<18} CPU {cpu:.1f} ms per frame (2 cores hold {2000 / max(cpu, 1e-9):.1f} fps of that)")
    if "model_only_fps" in doc:
        print(
            f"  models alone: {doc['model_only_fps']:.2f} fps ({doc['model_only_ms']} ms per frame); "
            f"efficiency {doc['efficiency']:.2f}"
        )


def plot_stages(doc: dict, path: str) -> None:
    """Per-stage p50 wall time and mean CPU time per frame as bars, with the run's fps, latency,
    drops and freshness in the title lines (PNG, OpenCV)."""
    import cv2
    import numpy as np

    stages = list(doc["stages"].items())
    w, h, left = 980, 110 + 34 * len(stages), 200
    img = np.full((h, w, 3), 255, np.uint8)
    lat = doc["latency_ms"]
    lines = [
        f"{doc['fps']:.1f} fps end to end, latency p50 {lat['p50']:.0f} ms p95 {lat['p95']:.0f} ms, "
        f"{doc['frames_out']}/{doc['frames_in']} frames out"
    ]
    carry = doc.get("extra", {}).get("carry")
    if carry:
        lines.append(
            "fresh/carried: "
            + ", ".join(f"{k} {carry['fresh'][k]}/{carry['carried'][k]}" for k in carry["fresh"])
            + "   bars: blue wall p50, orange CPU per frame"
        )
    for i, text in enumerate(lines):
        cv2.putText(img, text, (10, 24 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    top = max(max(st["p50_ms"], st["cpu_mean_ms"]) for _, st in stages) or 1.0
    for i, (name, st) in enumerate(stages):
        y = 74 + 34 * i
        scale = (w - left - 110) / top
        bar = int(scale * st["p50_ms"])
        cbar = int(scale * st["cpu_mean_ms"])
        cv2.rectangle(img, (left, y), (left + max(bar, 1), y + 12), (200, 140, 60), -1)
        cv2.rectangle(img, (left, y + 13), (left + max(cbar, 1), y + 25), (40, 140, 240), -1)
        cv2.putText(img, name, (10, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(
            img,
            f"{st['p50_ms']:.1f} / {st['cpu_mean_ms']:.1f} ms",
            (left + max(bar, cbar, 1) + 6, y + 18),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    cv2.imwrite(path, img)


@dataclass(frozen=True)
class BenchPipelineOptions:
    """``segstream bench pipeline``: without ``run.pipeline``/``run.config``, the runtime alone
    (``stages`` no-op stages); with them, that pipeline to a null sink (unless ``output.uris`` is
    overridden), its models alone first."""

    run: RunOptions = field(default_factory=RunOptions)
    stages: int = 4
    json_out: str | None = None
    plot: str | None = None


def bench_command(opts: BenchPipelineOptions) -> int:
    args = opts.run
    if args.pipeline is None and args.config is None:
        uri = args.source[0] if args.source else "synthetic://?width=1280&height=720&frames=5000"
        doc = bench_pipeline(uri, opts.stages, args.max_frames)
        b = doc["bench"]
        print(f"runtime: {b['stages']} no-op stages, {doc['frames_out']} frames of {uri}")
        print(
            f"  {b['frames_per_s']:.0f} frames/s, {b['per_hop_us']:.1f} us wall per hop, "
            f"{b['cpu_per_hop_us']:.1f} us CPU per hop, latency p50 {doc['latency_ms']['p50']:.2f} ms "
            f"p99 {doc['latency_ms']['p99']:.2f} ms"
        )
    else:
        config = config_for(args)
        if not any(o.startswith("output.uris") for o in args.overrides):
            config.output.uris = ["null://"]  # the pipeline's own cost; --set output.uris=[...] to include sinks
        graph = make_graph(config, max_frames=args.max_frames)
        # Models alone first (the run closes the backends), on the same backends and threads.
        model_only = model_only_fps(graph)
        report, _ = run_graph(graph, progress=False, total=None)
        doc = report.metrics
        if report.error is not None:
            raise report.error
        if model_only:
            doc["model_only_fps"] = round(model_only["fps"], 3)
            doc["model_only_ms"] = model_only["per_model_ms"]
            doc["efficiency"] = round(doc["fps"] / model_only["fps"], 3) if model_only["fps"] else None
        _print_pipeline_bench(doc)
        if opts.plot:
            plot_stages(doc, opts.plot)
    if opts.json_out:
        write_json(opts.json_out, doc)
    return 0
