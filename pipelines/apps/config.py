"""The pipeline configuration (``config.toml``): one dataclass per concern.

Every section and key is optional; the defaults run the built-in demo. Unknown keys are
rejected with a suggestion, bad values name the key and the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from segstream.pipelines.tasks.families import family_of_model, instance_families
from segstream.stream.config import apply_override, from_dict, read_toml
from segstream.stream.errors import ConfigError
from segstream.stream.graph import GraphSettings

DEFAULT_CONFIG = "config.toml"


@dataclass
class SourceConfig:
    """Attributes:
        uri: file, folder, camera, URL, gst:, csi:// or synthetic:// (see README).
        policy: "auto" (live sources keep the newest frame, files block), "block" or "latest".
        max_in_flight: live sources: frames between source and sinks at once; a frame read at
            the limit is dropped (0: no limit).
        max_in_flight_file: files and other sources that never drop: frames between source and
            sinks at once; the source waits at the limit, so latency stays a few frame times
            instead of the depth of every queue (0: no limit, queues fill).
        pace_fps: > 0: play a recorded source (file, folder, generated frames) as a live camera
            of this rate: frames are released on the clock and those the pipeline cannot take
            in time are dropped and counted (benchmarks of live behaviour; 0: off).
    """

    uri: str = "synthetic://?width=1280&height=720&fps=30&frames=300"
    policy: str = "auto"
    max_in_flight: int = 2
    max_in_flight_file: int = 3
    pace_fps: float = 0.0

    def __post_init__(self) -> None:
        if self.policy not in ("auto", "block", "latest"):
            raise ValueError(f"source.policy must be 'auto', 'block' or 'latest', got {self.policy!r}")
        if self.max_in_flight < 0:
            raise ValueError(f"source.max_in_flight must be >= 0, got {self.max_in_flight}")
        if self.pace_fps < 0:
            raise ValueError(f"source.pace_fps must be >= 0, got {self.pace_fps}")
        if self.max_in_flight_file < 0:
            raise ValueError(f"source.max_in_flight_file must be >= 0, got {self.max_in_flight_file}")


@dataclass
class NetworkConfig:
    """Timeouts and reconnect backoff for rtsp/http sources, in seconds."""

    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    give_up_after_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("open_timeout_s", "read_timeout_s", "backoff_initial_s", "backoff_max_s", "give_up_after_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"network.{name} must be > 0, got {getattr(self, name)}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("network.backoff_max_s must be >= network.backoff_initial_s")


@dataclass
class OutputConfig:
    """Attributes:
        uris: sinks (video file, folder/, .jsonl, display://0, gst:..., null://).
        fps: frame rate written into video outputs (0: the source's, else 30).
    """

    uris: list[str] = field(default_factory=lambda: ["null://"])
    fps: float = 0.0

    def __post_init__(self) -> None:
        if self.fps < 0:
            raise ValueError(f"output.fps must be >= 0, got {self.fps}")


@dataclass
class PipelineConfig:
    """Attributes:
        name: which pipeline to build (see ``segstream run --help``).
        edges_low / edges_high: Canny thresholds of the OpenCV-only "edges" demo pipeline.
    """

    name: str = "edges"
    edges_low: int = 80
    edges_high: int = 160


@dataclass
class RuntimeConfig:
    """Attributes:
        queue_size: capacity of each inter-stage queue.
        join_timeout_s: how long a join waits for a late branch (reported, never silent).
        join_buffer: frames a join may hold while waiting.
        drain_timeout_s: after SIGINT/SIGTERM, how long stages may finish queued frames.
        watchdog_s: a stage holding one frame longer fails the run (0: off).
        workers: worker threads per heavy stage (model inference).
        progress: show a progress bar (files) or a periodic status line (live).
    """

    queue_size: int = 4
    join_timeout_s: float = 5.0
    join_buffer: int = 32
    drain_timeout_s: float = 1.0
    watchdog_s: float = 0.0
    workers: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.queue_size <= 1024:
            raise ValueError(f"runtime.queue_size must be in 1..1024, got {self.queue_size}")
        if self.join_timeout_s <= 0 or self.drain_timeout_s < 0 or self.watchdog_s < 0:
            raise ValueError("runtime timeouts must be positive (watchdog_s and drain_timeout_s may be 0)")
        if not 1 <= self.workers <= 64:
            raise ValueError(f"runtime.workers must be in 1..64, got {self.workers}")
        if self.join_buffer < 1:
            raise ValueError(f"runtime.join_buffer must be >= 1, got {self.join_buffer}")


@dataclass
class BackendConfig:
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

    providers: list[str] = field(default_factory=lambda: ["cpu"])
    allow_fallback: bool = True
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    optimization: str = "all"
    allow_spinning: bool = False

    def __post_init__(self) -> None:
        known = ("cpu", "cuda", "tensorrt", "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
        for p in self.providers:
            if p not in known:
                raise ValueError(f"backend.providers: unknown provider {p!r}; use cpu, cuda or tensorrt")
        if self.optimization not in ("disable", "basic", "extended", "all"):
            raise ValueError(f"backend.optimization must be disable, basic, extended or all, got {self.optimization!r}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("backend thread counts must be >= 0")

    def options(self) -> dict:
        return {"providers": list(self.providers), "allow_fallback": self.allow_fallback,
                "intra_op_threads": self.intra_op_threads, "inter_op_threads": self.inter_op_threads,
                "optimization": self.optimization, "allow_spinning": self.allow_spinning}


@dataclass
class InstancesConfig:
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

    model: str = "yolact"
    artifact: str = "weights/yolact_tiny_synthetic.onnx"
    score_threshold: float = 0.3
    top_k: int = 50
    mask_format: str = "rle"
    workers: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.score_threshold <= 1:
            raise ValueError(f"instances.score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 1 <= self.top_k <= 1000:
            raise ValueError(f"instances.top_k must be in 1..1000, got {self.top_k}")
        if self.mask_format not in ("rle", "polygon", "none"):
            raise ValueError(f"instances.mask_format must be rle, polygon or none, got {self.mask_format!r}")
        if family_of_model(self.model, "instances") is None:
            raise ValueError(f"instances.model must be {', '.join(f.name for f in instance_families())} or a model "
                             f"name of those families "
                             f"(e.g. maskrcnn_resnet50_fpn_v2), got {self.model!r}")


@dataclass
class SemanticConfig:
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

    artifact: str = "weights/deeplabv3plus_lite0_camvid.onnx"
    input_size: list[int] = field(default_factory=list)
    smoothing: str = "off"
    ema_alpha: float = 0.6
    drivable: bool = True
    workers: int = 1

    def __post_init__(self) -> None:
        if self.input_size and (len(self.input_size) != 2 or min(self.input_size) < 16):
            raise ValueError(f"semantic.input_size must be [H, W] with both >= 16, got {self.input_size}")
        if self.smoothing not in ("off", "ema", "hysteresis"):
            raise ValueError(f"semantic.smoothing must be off, ema or hysteresis, got {self.smoothing!r}")
        if not 0 < self.ema_alpha <= 1:
            raise ValueError(f"semantic.ema_alpha must be in (0, 1], got {self.ema_alpha}")


@dataclass
class TrackingConfig:
    """Attributes:
        iou_threshold: least IoU to continue a track.
        max_age: instance-model frames a lost confirmed track is kept at most.
        min_hits: matches that confirm a track; tentative tracks are not drawn or sent.
        coast_s: seconds (media time) a lost confirmed track coasts before it ends.
        report_tentative: also draw and send tracks not yet confirmed.
    """

    enabled: bool = True
    iou_threshold: float = 0.3
    max_age: int = 30
    min_hits: int = 3
    coast_s: float = 1.0
    report_tentative: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.iou_threshold < 1:
            raise ValueError(f"tracking.iou_threshold must be in (0, 1), got {self.iou_threshold}")
        if self.max_age < 0:
            raise ValueError(f"tracking.max_age must be >= 0, got {self.max_age}")
        if self.min_hits < 1:
            raise ValueError(f"tracking.min_hits must be >= 1, got {self.min_hits}")
        if self.coast_s < 0:
            raise ValueError(f"tracking.coast_s must be >= 0, got {self.coast_s}")


@dataclass
class ScheduleConfig:
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

    enabled: bool = True
    target_fps: float = 30.0
    instances_every: int = 0
    semantic_every: int = 0
    max_every: int = 4
    cpu_share: float = 0.85
    cores: int = 0
    flow_width: int = 320

    def __post_init__(self) -> None:
        if self.target_fps <= 0:
            raise ValueError(f"schedule.target_fps must be > 0, got {self.target_fps}")
        for name in ("instances_every", "semantic_every", "cores"):
            if getattr(self, name) < 0:
                raise ValueError(f"schedule.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_every < 1:
            raise ValueError(f"schedule.max_every must be >= 1, got {self.max_every}")
        if not 0 < self.cpu_share <= 1:
            raise ValueError(f"schedule.cpu_share must be in (0, 1], got {self.cpu_share}")
        if self.flow_width < 16:
            raise ValueError(f"schedule.flow_width must be >= 16, got {self.flow_width}")


@dataclass
class OverlayConfig:
    """What the AR overlay draws (opacities in [0, 1])."""

    enabled: bool = True
    mask_alpha: float = 0.45
    drivable_alpha: float = 0.35
    semantic_alpha: float = 0.0
    contours: bool = True
    labels: bool = True
    hud: bool = True

    def __post_init__(self) -> None:
        for name in ("mask_alpha", "drivable_alpha", "semantic_alpha"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"overlay.{name} must be in [0, 1], got {v}")


@dataclass
class MedicalConfig:
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

    artifact: str = ""
    input_size: list[int] = field(default_factory=list)
    spacing_mm: list[float] = field(default_factory=list)
    thickness_mm: float = 0.0
    ignore_classes: list[str] = field(default_factory=lambda: ["background"])
    summary: str = ""
    overlay_alpha: float = 0.4
    workers: int = 1

    def __post_init__(self) -> None:
        if self.spacing_mm and (len(self.spacing_mm) != 2 or min(self.spacing_mm) <= 0):
            raise ValueError(f"medical.spacing_mm must be [row, column] in mm, both > 0, got {self.spacing_mm}")
        if self.thickness_mm < 0:
            raise ValueError(f"medical.thickness_mm must be > 0 (or 0: from the source), got {self.thickness_mm}")
        _check_model_section("medical", self.input_size, self.overlay_alpha)


@dataclass
class SatelliteConfig:
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

    artifact: str = ""
    input_size: list[int] = field(default_factory=list)
    gsd_m: float = 0.0
    ignore_classes: list[str] = field(default_factory=lambda: ["background"])
    results_dir: str = ""
    polygon_epsilon_px: float = 0.0
    overlay_alpha: float = 0.4
    workers: int = 1

    def __post_init__(self) -> None:
        if self.gsd_m < 0:
            raise ValueError(f"satellite.gsd_m must be > 0 (or 0: from the source), got {self.gsd_m}")
        if self.polygon_epsilon_px < 0:
            raise ValueError(f"satellite.polygon_epsilon_px must be >= 0, got {self.polygon_epsilon_px}")
        _check_model_section("satellite", self.input_size, self.overlay_alpha)


def _check_model_section(section: str, input_size: list[int], overlay_alpha: float) -> None:
    if input_size and (len(input_size) != 2 or min(input_size) < 16):
        raise ValueError(f"{section}.input_size must be [H, W] with both >= 16, got {input_size}")
    if not 0 <= overlay_alpha <= 1:
        raise ValueError(f"{section}.overlay_alpha must be in [0, 1], got {overlay_alpha}")


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
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    medical: MedicalConfig = field(default_factory=MedicalConfig)
    satellite: SatelliteConfig = field(default_factory=SatelliteConfig)

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
