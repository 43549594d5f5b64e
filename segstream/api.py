"""The public API for embedding segstream in a program: a whole pipeline, or one model.

    pipe = segstream.open_pipeline("config.toml", source="clip.mp4", sinks=["out/overlay.mp4"])
    report = pipe.run()                                   # blocks; report.frames, report.fps
    runner = segstream.load_runner("weights/deeplabv3plus_lite0_camvid.onnx")
    result = runner(cv2.imread("frame.png"))              # SemanticMap or Instances

``open_pipeline`` builds what ``segstream run`` builds (the same config loader, graph and
sinks, ``pipelines/apps/app.py``); ``load_runner`` opens an exported artifact and returns the
torch-free runner its metadata calls for. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segstream.pipelines.apps.app import make_graph, run_graph
from segstream.pipelines.apps.config import AppConfig, load_config
from segstream.pipelines.tasks.families import RUNTIME_FAMILIES, RuntimeFamily, family_of_model
from segstream.pipelines.tasks.results import Instances, SemanticMap
from segstream.stream.backends import ArtifactMetadata, Backend, open_backend
from segstream.stream.backends.factory import BACKENDS_BY_SUFFIX, is_remote
from segstream.stream.config import from_dict
from segstream.stream.errors import ConfigError, ModelError, SegstreamError
from segstream.stream.graph import Graph, RunReport

__all__ = ["open_pipeline", "Pipeline", "PipelineReport", "load_runner", "Runner"]


# --------------------------------------------------------------------------- pipelines


class PipelineReport(RunReport):
    """The run report of ``segstream run`` (``RunReport``: reason, error, metrics, stuck
    threads), with its headline figures as attributes. All come from ``metrics``.

    Attributes:
        frames: frames that reached the sinks.
        frames_in: frames read from the source.
        frames_dropped: frames a live source dropped (0 for files).
        fps: frames out per second of wall time, from the graph's start to the last frame out.
        latency_ms: end-to-end latency (sink time minus capture time), {"p50", "p95", "p99"} in ms.
    """

    @property
    def frames(self) -> int:
        return int(self.metrics["frames_out"])

    @property
    def frames_in(self) -> int:
        return int(self.metrics["frames_in"])

    @property
    def frames_dropped(self) -> int:
        return int(self.metrics["frames_dropped"])

    @property
    def fps(self) -> float:
        return float(self.metrics["fps"])

    @property
    def latency_ms(self) -> dict[str, float]:
        return dict(self.metrics["latency_ms"])


class Pipeline:
    """A built pipeline: source, stages (models loaded) and sinks, run once with ``run``.

    Made by ``open_pipeline``. A context manager: leaving the block closes it (releases the
    models if it never ran).

    Attributes:
        config: the AppConfig it was built from (source and sinks applied).
        report: the report of the run, once it has run (also after a failed run).
    """

    def __init__(self, config: AppConfig, graph: Graph, max_frames: int | None) -> None:
        self.config = config
        self.report: PipelineReport | None = None
        self._graph = graph
        self._max_frames = max_frames
        self._state = "ready"  # -> "ran" | "closed"

    def run(self, *, progress: bool | None = None) -> PipelineReport:
        """Runs the graph until the source ends, ``max_frames`` frames, ``stop()`` or a signal.

        Blocks. Every sink is finalised before it returns or raises. In the main thread,
        SIGINT/SIGTERM drain the graph as ``segstream run`` does; the signal is raised again
        once the sinks are finalised (SIGINT: KeyboardInterrupt).

        Args:
            progress: a progress line on stderr; None: the config's ``runtime.progress``.

        Returns:
            The report (``reason`` "eos" or "stop").

        Raises:
            SegstreamError: the run failed (its first error; ``self.report`` holds the figures
                of the frames written before it). Also: it has run already, or was closed.
        """
        if self._state != "ready":
            raise SegstreamError(
                f"this pipeline {'has run' if self._state == 'ran' else 'is closed'}; "
                "a pipeline runs once: call open_pipeline again for another run"
            )
        self._state = "ran"
        graph = self._graph
        total = None if graph.source.live else graph.source.frame_count
        if total is not None and self._max_frames:
            total = min(total, self._max_frames)
        show = self.config.runtime.progress if progress is None else bool(progress)
        try:
            report, signum = run_graph(graph, progress=show, total=total)
        except BaseException:  # it failed to start (a sink that cannot open): release the models
            graph.close()
            raise
        self.report = PipelineReport(**{f.name: getattr(report, f.name) for f in dataclasses.fields(RunReport)})
        if self.report.error is not None:
            raise self.report.error
        if signum is not None:
            signal.raise_signal(signum)
        return self.report

    def stop(self) -> None:
        """Asks a running pipeline to finish: the source stops, queued frames drain, sinks are
        finalised, and ``run`` returns a report with reason "stop". Safe from any thread; a
        second call discards what is still queued."""
        self._graph.stop("stop")

    def close(self) -> None:
        """Releases the models of a pipeline that never ran (a run releases everything itself).
        Safe to call twice."""
        if self._state == "ready":
            self._graph.close()
        if self._state != "ran":
            self._state = "closed"

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_pipeline(
    config: str | os.PathLike | dict | AppConfig = "config.toml",
    *,
    source: str | os.PathLike | Sequence[str] | None = None,
    sinks: Sequence[str] | None = None,
    max_frames: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Pipeline:
    """Builds the pipeline a config describes, as ``segstream run`` does (nothing runs yet).

    Models are loaded and every setting is checked here, so errors come before any output.

    Args:
        config: a TOML file (``segstream run --config``), a dict of the same tables
            (``{"pipeline": {"name": "road"}}``), or an AppConfig (not modified).
        source: source URI (file, folder, camera, rtsp://, synthetic://, ...), or a list of them for
            several cameras in one graph (ids cam0, cam1, ...); None: the config's.
        sinks: sink URIs (video file, .jsonl, folder/, ws://, display://0, null://); None: the config's.
        max_frames: stop after this many frames from the source (>= 1); None: until it ends.
        overrides: settings applied over the config, as ``--set`` does: dotted keys
            (``{"runtime.queue_size": 8}``) or whole tables (``{"semantic": {"smoothing": "ema"}}``,
            merged key by key).

    Raises:
        ConfigError: a missing or wrong config file, an unknown key, a bad value or argument.
        SegstreamError: a model, source or sink that cannot be built.
    """
    cfg, origin = _load_config(config)
    cfg = _with_overrides(cfg, overrides, origin)
    if source is not None:
        if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
            cfg.source.uris = [os.fspath(s) for s in source]  # several cameras in one graph
        elif isinstance(source, (str, os.PathLike)):
            cfg.source.uri, cfg.source.uris = os.fspath(source), []
        else:
            raise ConfigError(f"source must be a URI string or a list of them, got {source!r}")
    if sinks is not None:
        if isinstance(sinks, (str, os.PathLike)) or not all(isinstance(s, (str, os.PathLike)) for s in sinks):
            raise ConfigError(f"sinks must be a list of URIs, e.g. ['out/overlay.mp4'], got {sinks!r}")
        cfg.output.uris = [os.fspath(s) for s in sinks]
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ConfigError(f"max_frames must be an integer >= 1 (or None), got {max_frames!r}")
    graph = make_graph(cfg, max_frames=max_frames)
    return Pipeline(cfg, graph, max_frames)


def _load_config(config) -> tuple[AppConfig, str]:
    """The AppConfig (a copy) and where it came from, for error messages."""
    if isinstance(config, AppConfig):
        return copy.deepcopy(config), "AppConfig"
    if isinstance(config, dict):
        return from_dict(AppConfig, copy.deepcopy(config), "config dict"), "config dict"
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        return load_config(path), path
    raise ConfigError(f"config must be a TOML path, a dict or an AppConfig, got {type(config).__name__}")


def _with_overrides(config: AppConfig, overrides: Mapping[str, Any] | None, origin: str) -> AppConfig:
    """The config with ``overrides`` applied, checked again as a whole (unknown keys, ranges)."""
    if not overrides:
        return config
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides must be a dict of settings, got {type(overrides).__name__}")
    data = dataclasses.asdict(config)
    for key, value in overrides.items():
        if not isinstance(key, str) or not key.strip("."):
            raise ConfigError(f"overrides: keys are 'section.key' strings, got {key!r}")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"overrides: {key!r}: {part} is not a section")
        _merge(node, parts[-1], copy.deepcopy(value))
    return from_dict(AppConfig, data, f"{origin} with overrides")


def _merge(node: dict, key: str, value: Any) -> None:
    """Sets ``node[key] = value``; a table merges into a table key by key."""
    if isinstance(value, Mapping) and isinstance(node.get(key), dict):
        for k, v in value.items():
            _merge(node[key], k, v)
    else:
        node[key] = value


# --------------------------------------------------------------------------- one model

#: The settings ``load_runner`` passes on to each family's runner (checked against the runners'
#: signatures in tests/test_api.py). A family not listed here gets its settings unchecked.
SETTINGS_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "yolact": ("score_threshold", "max_detections", "mask_threshold", "nms_method"),
    "maskrcnn": ("score_threshold", "max_detections", "mask_threshold"),
    "semantic": (
        "input_size_hw",
        "smoothing",
        "ema_alpha",
        "hysteresis_frames",
        "drivable",
        "drivable_classes",
        "keep_probabilities",
    ),
}

# Backend name -> the artifact suffixes it opens (open_backend picks the class by suffix).
_BACKEND_SUFFIXES = {"onnxruntime": (".onnx",), "tensorrt": (".engine", ".plan"), "triton": ()}


def _family_of(meta: ArtifactMetadata, path: str) -> RuntimeFamily:
    """The family an artifact belongs to, from its metadata's task and model name."""
    family = family_of_model(meta.model, meta.task)
    if family is None:
        known = [f.name for f in RUNTIME_FAMILIES if f.task == meta.task]
        raise ModelError(
            f"{path}: no runner for {meta.task} model {meta.model!r}; known {meta.task} families: {', '.join(known)}"
        )
    return family


def _check_settings(family: RuntimeFamily, model: str, settings: Mapping[str, Any]) -> None:
    accepted = SETTINGS_BY_FAMILY.get(family.name)
    unknown = sorted(set(settings) - set(accepted or settings))
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"load_runner: unknown setting {unknown[0]!r} for {model!r}; {hint}accepted: {', '.join(accepted)}"
        )


class Runner:
    """One exported model on one image at a time: preprocess, backend call, postprocess.
    No threads. Made by ``load_runner``; a context manager that releases the model.

    Attributes:
        metadata: what the artifact says about itself (model, task, class names, input size).
        runner: the task-library runner doing the work, the family's (``pipelines/tasks/families.py``):
            YolactRunner, MaskRCNNRunner, SemanticRunner.
    """

    def __init__(self, runner, backend: Backend) -> None:
        self.runner = runner
        self.backend = backend
        self.metadata: ArtifactMetadata = backend.metadata

    @property
    def task(self) -> str:
        """ "instances" or "semantic"."""
        return self.metadata.task

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    def __call__(self, image_bgr: np.ndarray) -> Instances | SemanticMap:
        """Args:
            image_bgr: (H, W, 3) uint8 BGR image, as ``cv2.imread`` gives (not modified).

        Returns:
            Instances (boxes_xyxy, scores, labels, masks in the image's pixels) for an instance
            model, SemanticMap (class_ids (H, W) uint8) for a semantic one.

        Raises:
            ConfigError: not a (H, W, 3) uint8 array (the message says what was found).
        """
        _check_image(image_bgr)
        return self.runner(image_bgr)

    def close(self) -> None:
        """Releases the model. Safe to call twice."""
        self.backend.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Runner({self.metadata.model!r}, task={self.task!r}, artifact={self.backend.path!r})"


def _check_image(image) -> None:
    want = "expected a (H, W, 3) uint8 BGR image"
    if image is None:
        raise ConfigError(f"{want}, got None (cv2.imread returns None for a file it cannot read)")
    if not isinstance(image, np.ndarray):
        raise ConfigError(f"{want}, got {type(image).__name__}")
    found = f"{tuple(image.shape)} {image.dtype}"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise ConfigError(f"{want}, got a grey image {found}; convert it with cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)")
    if image.ndim == 3 and image.shape[2] == 4:
        raise ConfigError(f"{want}, got 4 channels {found}; convert it with cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"{want}, got {found}")
    if image.dtype != np.uint8:
        raise ConfigError(f"{want}, got {found}; scale it to 0-255 and convert with image.astype(np.uint8)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ConfigError(f"{want}, got an empty image {found}")


def load_runner(
    artifact: str | os.PathLike, *, backend: str = "onnxruntime", providers: Sequence[str] = ("cpu",), **settings: Any
) -> Runner:
    """Opens an exported model and returns the runner its metadata calls for.

    Args:
        artifact: a file ``segstream export`` wrote (.onnx; .engine/.plan for TensorRT); its
            metadata says the task, model and classes.
        backend: "onnxruntime" (.onnx) or "tensorrt" (.engine, .plan); a triton://host:port/model URI
            is served by Triton whatever this says.
        providers: ONNX Runtime execution providers in order of preference ("cpu", "cuda",
            "tensorrt"); a missing one falls back to the next with a warning.
        **settings: the runner's own settings over the artifact's. Instances: score_threshold,
            max_detections, mask_threshold (and nms_method for YOLACT). Semantic: input_size_hw,
            smoothing ("off", "ema", "hysteresis"), ema_alpha, hysteresis_frames, drivable,
            drivable_classes, keep_probabilities.

    Raises:
        ConfigError: a missing file, an unknown backend or setting, a file of another backend.
        ModelError: a file without segstream metadata, or one no runner reads.
    """
    path = os.fspath(artifact)
    if is_remote(path):  # triton://host:port/model: the server holds the model and its metadata
        backend = "triton"
    suffixes = _BACKEND_SUFFIXES.get(backend)
    if suffixes is None:
        close = difflib.get_close_matches(str(backend), _BACKEND_SUFFIXES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown backend {backend!r}; {hint}use one of {', '.join(_BACKEND_SUFFIXES)}")
    suffix = os.path.splitext(path)[1].lower()
    if backend == "triton":
        if not is_remote(path):
            raise ConfigError(f"{path}: the triton backend opens triton://host:port/model URIs")
    elif suffix not in suffixes:
        other = next((name for name, s in _BACKEND_SUFFIXES.items() if suffix in s), None)
        hint = f"pass backend={other!r}" if other else f"expected {' or '.join(suffixes)}"
        raise ConfigError(f"{path}: the {backend} backend does not open {suffix or 'files without a suffix'}; {hint}")
    if backend != "triton" and not os.path.isfile(path):
        raise ConfigError(
            f"{path}: no such model file; give an artifact written by 'segstream export' "
            f"({', '.join(sorted(BACKENDS_BY_SUFFIX))})"
        )
    options = {"providers": tuple(providers)} if backend == "onnxruntime" else {}
    opened = open_backend(path, **options)
    try:
        if opened.metadata is None:
            raise ModelError(
                f"{path}: the file has no segstream metadata, so nothing says what it is; export it "
                "with 'segstream export' (or run it yourself through segstream.stream.backends.open_backend)"
            )
        family = _family_of(opened.metadata, path)
        _check_settings(family, opened.metadata.model, settings)
        return Runner(family.runner_class()(opened, **settings), opened)
    except BaseException:
        opened.close()
        raise
