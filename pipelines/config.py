"""The pipeline configuration (``config.toml``): one dataclass per concern.

Every section and key is optional; the defaults run the built-in demo. Unknown keys are
rejected with a suggestion, bad values name the key and the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from stream.config import apply_override, from_dict, read_toml
from stream.errors import ConfigError
from stream.graph import GraphSettings

DEFAULT_CONFIG = "config.toml"


@dataclass
class SourceConfig:
    """Attributes:
        uri: file, folder, camera, URL, gst:, csi:// or synthetic:// (see README).
        policy: "auto" (live sources keep the newest frame, files block), "block" or "latest".
        max_in_flight: live sources: frames between source and sinks at once (0: no limit).
    """

    uri: str = "synthetic://?width=1280&height=720&fps=30&frames=300"
    policy: str = "auto"
    max_in_flight: int = 2

    def __post_init__(self) -> None:
        if self.policy not in ("auto", "block", "latest"):
            raise ValueError(f"source.policy must be 'auto', 'block' or 'latest', got {self.policy!r}")
        if self.max_in_flight < 0:
            raise ValueError(f"source.max_in_flight must be >= 0, got {self.max_in_flight}")


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
class AppConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def graph_settings(self, live: bool) -> GraphSettings:
        r = self.runtime
        return GraphSettings(
            queue_size=r.queue_size,
            max_in_flight=self.source.max_in_flight if live else 0,
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
