"""The pipeline configuration (``config.toml``): one dataclass per concern.

Every section and key is optional. The dataclasses below are the one source of the defaults:
their fields declare what they accept (``Range``, ``Literal``; see ``segstream.stream.validate``),
and the repository's ``config.toml`` lists every key with these defaults except the two it
chooses on purpose (``REPOSITORY_CHOICES``; tests/pipelines/test_config_defaults.py checks it).
The built-in defaults run the OpenCV-only "edges" pipeline to ``null://``, so ``segstream run``
works without model files. Unknown keys are rejected with a suggestion, bad values name the key
and the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from segstream.pipelines.tasks.batching import BatchSettings
from segstream.pipelines.tasks.families import family_of_model, instance_families
from segstream.stream.config import apply_override, from_dict, read_toml
from segstream.stream.errors import ConfigError
from segstream.stream.graph import GraphSettings
from segstream.stream.validate import Checked, Range

#: Shorthands for the declared ranges below.
NonNegInt = Annotated[int, Range(ge=0)]
NonNegFloat = Annotated[float, Range(ge=0)]
PosFloat = Annotated[float, Range(gt=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]
Workers = Annotated[int, Range(ge=1, le=64)]

DEFAULT_CONFIG = "config.toml"
#: Keys the repository's config.toml sets differently from the built-in defaults, on purpose.
REPOSITORY_CHOICES = {"pipeline.name": "dashcam", "output.uris": ["out/run.mp4", "out/run.jsonl"]}


@dataclass
class SourceConfig(Checked):
    """Attributes:
    uri: file, folder, camera, URL, gst:, csi:// or synthetic:// (see README).
    uris: several sources in one graph (ids cam0, cam1, ... in this order); when not empty it
        replaces ``uri``. Each source keeps its own drop policy, in-flight limit and counters.
    policy: "auto" (live sources keep the newest frame, files block), "block" or "latest".
    max_in_flight: live sources: frames between source and sinks at once; a frame read at
        the limit is dropped (0: no limit).
    max_in_flight_file: files and other sources that never drop: frames between source and
        sinks at once; the source waits at the limit, so latency stays a few frame times
        instead of the depth of every queue (0: no limit, queues fill).
    max_in_flight_total: several sources: frames between all of them and the sinks at once;
        live sources drop at the limit, others wait (0: only each source's own limit, so N
        cameras may hold N times the frames of one and their latency grows with N).
    pace_fps: > 0: play a recorded source (file, folder, generated frames) as a live camera
        of this rate: frames are released on the clock and those the pipeline cannot take
        in time are dropped and counted (benchmarks of live behaviour; 0: off).
    """

    SECTION: ClassVar[str] = "source"

    uri: str = "synthetic://?width=1280&height=720&fps=30&frames=300"
    uris: list[str] = field(default_factory=list)
    policy: Literal["auto", "block", "latest"] = "auto"
    max_in_flight: NonNegInt = 2
    max_in_flight_file: NonNegInt = 3
    max_in_flight_total: NonNegInt = 2
    pace_fps: NonNegFloat = 0.0

    def all_uris(self) -> list[str]:
        """The graph's sources: ``uris`` when given, else ``uri`` alone."""
        return list(self.uris) if self.uris else [self.uri]

    def check(self) -> None:
        if any(not str(u).strip() for u in self.uris):
            raise ValueError("source.uris: every entry must be a source URI, got an empty one")


@dataclass
class ControlConfig(Checked):
    """The local HTTP control interface (list, add and remove sources while running; see
    docs/running.md).

    Attributes:
        port: TCP port on ``host`` (0: off).
        host: interface to bind; anything but a loopback address requires a token.
        token: required as ``Authorization: Bearer`` or ``?token=`` (empty: none, or
            $SEGSTREAM_CONTROL_TOKEN).
    """

    SECTION: ClassVar[str] = "control"

    port: Annotated[int, Range(ge=0, le=65535)] = 0
    host: str = "127.0.0.1"
    token: str = ""


@dataclass
class NetworkConfig(Checked):
    """Timeouts and reconnect backoff for rtsp/http sources, in seconds."""

    SECTION: ClassVar[str] = "network"

    open_timeout_s: PosFloat = 5.0
    read_timeout_s: PosFloat = 5.0
    backoff_initial_s: PosFloat = 0.25
    backoff_max_s: PosFloat = 8.0
    give_up_after_s: PosFloat = 60.0

    def check(self) -> None:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("network.backoff_max_s must be >= network.backoff_initial_s")


@dataclass
class OutputConfig(Checked):
    """Attributes:
    uris: sinks (video file, folder/, .jsonl, display://0, gst:..., null://).
    fps: frame rate written into video outputs (0: the source's, else 30).
    """

    SECTION: ClassVar[str] = "output"

    uris: list[str] = field(default_factory=lambda: ["null://"])
    fps: NonNegFloat = 0.0


@dataclass
class PipelineConfig(Checked):
    """Attributes:
    name: which pipeline to build (see ``segstream run --help``).
    edges_low / edges_high: Canny thresholds of the OpenCV-only "edges" demo pipeline.
    """

    SECTION: ClassVar[str] = "pipeline"

    name: str = "edges"
    edges_low: int = 80
    edges_high: int = 160


@dataclass
class RuntimeConfig(Checked):
    """Attributes:
    queue_size: capacity of each inter-stage queue.
    join_timeout_s: how long a join waits for a late branch (reported, never silent).
    join_buffer: frames a join may hold while waiting.
    drain_timeout_s: after SIGINT/SIGTERM, how long stages may finish queued frames.
    watchdog_s: a stage holding one frame longer fails the run (0: off).
    workers: worker threads per heavy stage (model inference).
    progress: show a progress bar (files) or a periodic status line (live).
    """

    SECTION: ClassVar[str] = "runtime"

    queue_size: Annotated[int, Range(ge=1, le=1024)] = 4
    join_timeout_s: PosFloat = 5.0
    join_buffer: Annotated[int, Range(ge=1)] = 32
    drain_timeout_s: NonNegFloat = 1.0
    watchdog_s: NonNegFloat = 0.0
    workers: Workers = 1
    progress: bool = True


@dataclass
class BackendConfig(Checked):
    """How exported models run.

    Attributes:
        providers: ONNX Runtime execution providers in order of preference ("cpu", "cuda", "tensorrt").
        allow_fallback: use the next provider (finally CPU) when one is missing, with a warning.
        intra_op_threads: threads inside one model call (per model; two models run side by side).
        inter_op_threads: threads across operators (0: ONNX Runtime's default).
        optimization: "disable", "basic", "extended" or "all".
        allow_spinning: ONNX Runtime threads spin-wait between operators (its default); off
            they sleep, which is faster when the models and stages share the cores.
    """

    SECTION: ClassVar[str] = "backend"

    providers: list[str] = field(default_factory=lambda: ["cpu"])
    allow_fallback: bool = True
    intra_op_threads: NonNegInt = 1
    inter_op_threads: NonNegInt = 1
    optimization: Literal["disable", "basic", "extended", "all"] = "all"
    allow_spinning: bool = False

    def check(self) -> None:
        known = (
            "cpu",
            "cuda",
            "tensorrt",
            "CPUExecutionProvider",
            "CUDAExecutionProvider",
            "TensorrtExecutionProvider",
        )
        for p in self.providers:
            if p not in known:
                raise ValueError(f"backend.providers: unknown provider {p!r}; use cpu, cuda or tensorrt")

    def options(self) -> dict:
        return {
            "providers": list(self.providers),
            "allow_fallback": self.allow_fallback,
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "optimization": self.optimization,
            "allow_spinning": self.allow_spinning,
        }


@dataclass
class InstancesConfig(Checked):
    """The instance model (YOLACT by default).

    Attributes:
        model: which runner reads the artifact: "yolact" or "maskrcnn" (any model of the
            family), or one model name ("yolact_mobilenetv3", "maskrcnn_resnet50_fpn_v2"); the
            artifact's metadata must agree.
        artifact: exported model (.onnx, or a TensorRT .engine) that describes itself.
        score_threshold: detections below are dropped. top_k: at most this many per frame.
        mask_format: how masks go into JSON outputs: "rle", "polygon" or "none".
        workers: inference threads for this model.
    """

    SECTION: ClassVar[str] = "instances"

    model: str = "yolact"
    artifact: str = "weights/yolact_lite0_camvid.onnx"
    score_threshold: Fraction = 0.3
    top_k: Annotated[int, Range(ge=1, le=1000)] = 50
    mask_format: Literal["rle", "polygon", "none"] = "rle"
    workers: Workers = 1

    def check(self) -> None:
        if family_of_model(self.model, "instances") is None:
            raise ValueError(
                f"instances.model must be {', '.join(f.name for f in instance_families())} or a model "
                f"name of those families "
                f"(e.g. maskrcnn_resnet50_fpn_v2), got {self.model!r}"
            )


@dataclass
class SemanticConfig(Checked):
    """The road-semantics model (DeepLab by default).

    Attributes:
        artifact: exported model (.onnx or .engine).
        input_size: [H, W] the frame is resized to for the model (models exported with dynamic
            size); empty: the artifact's own size.
        smoothing: temporal smoothing for video: "off", "ema" (probabilities) or "hysteresis" (labels).
        ema_alpha: weight of the newest frame for "ema".
        drivable: compute the drivable-area mask (road connected to the bottom centre).
        workers: inference threads for this model.
    """

    SECTION: ClassVar[str] = "semantic"

    artifact: str = "weights/deeplabv3plus_lite0_camvid.onnx"
    input_size: list[int] = field(default_factory=list)
    smoothing: Literal["off", "ema", "hysteresis"] = "off"
    ema_alpha: Annotated[float, Range(gt=0, le=1)] = 0.6
    drivable: bool = True
    workers: Workers = 1

    def check(self) -> None:
        _check_input_size("semantic", self.input_size)


@dataclass
class BatchingConfig(Checked):
    """Batching across sources (``pipelines/tasks/batching.py``): frames of any camera waiting for
    the same model go through it in one call. Applies to every model branch of the pipeline.

    Attributes:
        max_batch: most frames per model call (1: no batching, each frame calls the model). More
            than 1 needs an artifact exported with ``--dynamic-batch``; it pays on GPUs and
            Triton, hardly on CPU.
        timeout_ms: a batch leaves this long after its first frame arrived, full or not.
        max_age_ms: a batch leaves at once when one of its frames is this old (capture to now).
    """

    SECTION: ClassVar[str] = "batching"

    max_batch: Annotated[int, Range(ge=1, le=64)] = 1
    timeout_ms: Annotated[float, Range(ge=0, le=1000)] = 10.0
    max_age_ms: Annotated[float, Range(ge=0, le=10000)] = 100.0

    def settings(self) -> BatchSettings:
        return BatchSettings(max_batch=self.max_batch, timeout_ms=self.timeout_ms, max_age_ms=self.max_age_ms)


@dataclass
class TrackingConfig(Checked):
    """Attributes:
    iou_threshold: least IoU to continue a track.
    max_age: instance-model frames a lost confirmed track is kept at most.
    min_hits: matches that confirm a track; tentative tracks are not drawn or sent.
    coast_s: seconds (media time) a lost confirmed track coasts before it ends.
    report_tentative: also draw and send tracks not yet confirmed.
    """

    SECTION: ClassVar[str] = "tracking"

    enabled: bool = True
    iou_threshold: Annotated[float, Range(gt=0, lt=1)] = 0.3
    max_age: NonNegInt = 30
    min_hits: Annotated[int, Range(ge=1)] = 3
    coast_s: NonNegFloat = 1.0
    report_tentative: bool = False


@dataclass
class ScheduleConfig(Checked):
    """How often each model runs on video (``pipelines/tasks/schedule.py``); results are carried,
    warped by optical flow, to the frames in between.

    Attributes:
        enabled: schedule the models (off: both run on every frame).
        target_fps: the frame rate the CPU must hold (a live camera's rate).
        instances_every / semantic_every: fixed cadence, every n-th frame (0: chosen from the
            measured CPU costs of the models and of the rest of the pipeline).
        max_every: sparsest cadence chosen automatically.
        cpu_share: fraction of the cores' time the plan may use.
        cores: cores the plan counts (0: those this process may use).
        flow_width: width of the frames the optical flow that warps carried results runs on.
    """

    SECTION: ClassVar[str] = "schedule"

    enabled: bool = True
    target_fps: PosFloat = 30.0
    instances_every: NonNegInt = 0
    semantic_every: NonNegInt = 0
    max_every: Annotated[int, Range(ge=1)] = 4
    cpu_share: Annotated[float, Range(gt=0, le=1)] = 0.85
    cores: NonNegInt = 0
    flow_width: Annotated[int, Range(ge=16)] = 320


@dataclass
class OverlayConfig(Checked):
    """What the AR overlay draws (opacities in [0, 1])."""

    SECTION: ClassVar[str] = "overlay"

    enabled: bool = True
    mask_alpha: Fraction = 0.45
    drivable_alpha: Fraction = 0.35
    semantic_alpha: Fraction = 0.0
    contours: bool = True
    labels: bool = True
    hud: bool = True


@dataclass
class MedicalConfig(Checked):
    """The medical pipeline (``--pipeline medical``, source ``stack:///series``).

    Attributes:
        artifact: exported semantic model (.onnx or .engine) that describes itself.
        input_size: [H, W] slices are resized to for the model; empty: the artifact's own size.
        spacing_mm: [row, column] pixel spacing in mm where the source gives none (DICOM
            PixelSpacing and the URI's spacing= win).
        thickness_mm: slice thickness in mm where the source gives none (0: unknown).
        ignore_classes: class names left out of areas, volumes and the overlay.
        summary: series summary JSON path; empty: ``series_summary.json`` in the folder of the
            first file output (else only printed).
        overlay_alpha: opacity of the class colours over the slice.
        workers: inference threads.
    """

    SECTION: ClassVar[str] = "medical"

    artifact: str = ""
    input_size: list[int] = field(default_factory=list)
    spacing_mm: list[float] = field(default_factory=list)
    thickness_mm: NonNegFloat = 0.0  # 0: from the source
    ignore_classes: list[str] = field(default_factory=lambda: ["background"])
    summary: str = ""
    overlay_alpha: Fraction = 0.4
    workers: Workers = 1

    def check(self) -> None:
        if self.spacing_mm and (len(self.spacing_mm) != 2 or min(self.spacing_mm) <= 0):
            raise ValueError(f"medical.spacing_mm must be [row, column] in mm, both > 0, got {self.spacing_mm}")
        _check_input_size("medical", self.input_size)


@dataclass
class SatelliteConfig(Checked):
    """The satellite pipeline (``--pipeline satellite``, source ``tiles:///map.tif``).

    Attributes:
        artifact: exported semantic model (.onnx or .engine) that describes itself.
        input_size: [H, W] tiles are resized to for the model; empty: the artifact's own size.
        gsd_m: ground sampling distance in metres per pixel where the source gives none (the
            URI's gsd= and a GeoTIFF's projected geotransform win).
        ignore_classes: class names left out of areas, polygons and the overlay.
        results_dir: folder for map.png, classes.png, classes.geojson and summary.json; empty:
            the folder of the first file output.
        polygon_epsilon_px: polygon simplification in pixels (0: exact pixel outlines).
        overlay_alpha: opacity of the class colours over each tile.
        workers: inference threads.
    """

    SECTION: ClassVar[str] = "satellite"

    artifact: str = ""
    input_size: list[int] = field(default_factory=list)
    gsd_m: NonNegFloat = 0.0  # 0: from the source
    ignore_classes: list[str] = field(default_factory=lambda: ["background"])
    results_dir: str = ""
    polygon_epsilon_px: NonNegFloat = 0.0
    overlay_alpha: Fraction = 0.4
    workers: Workers = 1

    def check(self) -> None:
        _check_input_size("satellite", self.input_size)


def _check_input_size(section: str, input_size: list[int]) -> None:
    if input_size and (len(input_size) != 2 or min(input_size) < 16):
        raise ValueError(f"{section}.input_size must be [H, W] with both >= 16, got {input_size}")


@dataclass
class AppConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    instances: InstancesConfig = field(default_factory=InstancesConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    medical: MedicalConfig = field(default_factory=MedicalConfig)
    satellite: SatelliteConfig = field(default_factory=SatelliteConfig)
    control: ControlConfig = field(default_factory=ControlConfig)

    def graph_settings(self, live: bool) -> GraphSettings:
        r = self.runtime
        return GraphSettings(
            queue_size=r.queue_size,
            max_in_flight=self.source.max_in_flight if live else self.source.max_in_flight_file,
            join_timeout_s=r.join_timeout_s,
            join_buffer=r.join_buffer,
            drain_timeout_s=r.drain_timeout_s,
            watchdog_s=r.watchdog_s,
        )


def load_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> AppConfig:
    """Loads a config file (or the defaults) and applies ``--set KEY=VALUE`` overrides.

    Args:
        path: TOML file; None uses ./config.toml when it exists, else the built-in defaults.
        overrides: "section.key=value" strings, applied after the file.
    """
    if path is None and os.path.isfile(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    data = read_toml(path) if path else {}
    for assignment in overrides:
        apply_override(data, assignment)
    origin = path or "defaults"
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a TOML table at the top level")
    return from_dict(AppConfig, data, origin)
