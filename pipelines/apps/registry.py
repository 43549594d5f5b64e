"""Pipelines by name: each builder turns the config into the graph's steps."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from segstream.pipelines.apps.config import AppConfig
from segstream.stream.errors import ConfigError
from segstream.stream.graph import Parallel, Stage


def build_passthrough(config: AppConfig) -> list[Stage | Parallel]:
    """No stage: frames go from the source straight to the sinks."""
    return []


def build_edges(config: AppConfig) -> list[Stage | Parallel]:
    from segstream.pipelines.tasks.edges import EdgeOverlayStage, EdgeStage, GrayStage

    p = config.pipeline
    return [GrayStage(), EdgeStage(p.edges_low, p.edges_high), EdgeOverlayStage()]


def build_dashcam(config: AppConfig) -> list[Stage | Parallel]:
    from segstream.pipelines.apps.dashcam import build_dashcam as build

    return build(config)


def build_instances(config: AppConfig) -> list[Stage | Parallel]:
    from segstream.pipelines.apps.dashcam import build_instances as build

    return build(config)


def build_road(config: AppConfig) -> list[Stage | Parallel]:
    from segstream.pipelines.apps.dashcam import build_road as build

    return build(config)


def build_medical(config: AppConfig) -> list[Stage | Parallel]:
    from segstream.pipelines.apps.medical import build_medical as build

    return build(config)


def build_satellite(config: AppConfig) -> list[Stage | Parallel]:
    from segstream.pipelines.apps.satellite import build_satellite as build

    return build(config)


PIPELINES: dict[str, Callable[[AppConfig], list]] = {
    "passthrough": build_passthrough,
    "edges": build_edges,
    "dashcam": build_dashcam,
    "instances": build_instances,
    "road": build_road,
    "medical": build_medical,
    "satellite": build_satellite,
}


def build_pipeline(config: AppConfig) -> list[Stage | Parallel]:
    name = config.pipeline.name
    builder = PIPELINES.get(name)
    if builder is None:
        close = difflib.get_close_matches(name, PIPELINES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown pipeline {name!r}{hint} (known: {', '.join(PIPELINES)})")
    return builder(config)
