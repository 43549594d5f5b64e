"""What the medical and satellite pipelines share: a self-describing semantic model measured in
physical units, where its results are written, and the class names left out of the figures."""

from __future__ import annotations

import os

from pipelines.config import AppConfig
from pipelines.dashcam import artifact_backend
from pipelines.inference import model_branch
from stream.graph import Stage

#: output URIs that are not files or folders.
_NOT_FILES = ("null", "null://", "display://", "gst:", "ws://", "wss://")


def semantic_model_stages(config: AppConfig, section: str, keep_probabilities: bool = False) -> list[Stage]:
    """``semantic.pre -> semantic.infer -> semantic.post`` for the artifact of config section
    ``section`` (``medical`` or ``satellite``): any exported semantic model, no drivable area."""
    from pipelines.road import SemanticRunner

    c = getattr(config, section)
    runner = SemanticRunner(artifact_backend(c.artifact, section, config), input_size_hw=tuple(c.input_size) or None,
                            drivable=False, keep_probabilities=keep_probabilities)
    return model_branch("semantic", runner.backend, runner.preprocess, runner.postprocess, infer_workers=c.workers)


def output_folder(uris: list[str]) -> str | None:
    """The folder of the first output that is a file (its parent) or a folder (itself), or None."""
    for uri in uris:
        if uri.startswith(_NOT_FILES) or ("://" in uri and not uri.startswith("file://")):
            continue
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if path.endswith(("/", os.sep)) or os.path.isdir(path) or not os.path.splitext(path)[1]:
            return path
        return os.path.dirname(path) or "."
    return None


def kept(figures: dict[str, float], class_names, ignore) -> dict[str, float]:
    """Figures by class name, without the ignored classes and ids outside ``class_names`` (255)."""
    return {name: value for name, value in figures.items() if name in class_names and name not in ignore}
