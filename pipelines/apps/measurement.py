"""What the medical and satellite pipelines share: a self-describing semantic model measured in
physical units, checks made when the pipeline is built (before any output is created), where
results are written, and the class names left out of the figures."""

from __future__ import annotations

import logging
import os

from segstream.pipelines.apps.config import AppConfig
from segstream.pipelines.apps.dashcam import artifact_backend
from segstream.pipelines.tasks.inference import model_branch
from segstream.stream.errors import ConfigError
from segstream.stream.graph import Stage

log = logging.getLogger(__name__)

#: output URIs that are not files or folders.
_NOT_FILES = ("null", "null://", "display://", "gst:", "ws://", "wss://")

#: a fixed model input whose aspect ratio differs from the frames' by more than this is reported.
_ASPECT_TOLERANCE = 0.01


def semantic_model_stages(
    config: AppConfig,
    section: str,
    keep_probabilities: bool = False,
    frame_hw: tuple[int, int] | None = None,
    frames: str = "frames",
    size_hint: str = "",
) -> list[Stage]:
    """``semantic.pre -> semantic.infer -> semantic.post`` for the artifact of config section
    ``section`` (``medical`` or ``satellite``): any exported semantic model, no drivable area.

    Args:
        frame_hw: (H, W) of the frames the model will see, where known: a fixed model input of
            another aspect ratio is reported (the frames would be stretched).
        frames: what the frames are called in that report ("slices", "tiles").
        size_hint: what to do about it, for that report.

    Raises:
        ConfigError: the artifact is missing, holds no segstream metadata or a model of another
            task (an instance model, say).
    """
    from segstream.pipelines.tasks.road import SemanticRunner

    c = getattr(config, section)
    backend = artifact_backend(c.artifact, section, config)
    meta = backend.metadata
    if meta is None or meta.task != "semantic":
        backend.close()
        found = "no segstream metadata" if meta is None else f"{_article(meta.task)} {meta.task!r} model ({meta.model})"
        raise ConfigError(
            f"{section}.artifact: {c.artifact} holds {found}; the {section} pipeline needs a semantic "
            "model exported with 'segstream export' (a U-Net or DeepLab, say)"
        )
    runner = SemanticRunner(
        backend, input_size_hw=tuple(c.input_size) or None, drivable=False, keep_probabilities=keep_probabilities
    )
    if frame_hw is not None:
        warn_if_stretched(runner.settings.size_policy, frame_hw, frames, section, size_hint)
    return model_branch(
        "semantic",
        runner.backend,
        runner.preprocess,
        runner.postprocess,
        infer_workers=c.workers,
        batching=config.batching.settings(),
    )


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def warn_if_stretched(policy, frame_hw: tuple[int, int], frames: str, section: str, hint: str = "") -> bool:
    """Logs a warning when a fixed model input changes the frames' aspect ratio; returns whether
    it did. Areas stay exact (the class map is resized back to the frame's pixels), but the model
    sees every shape stretched, which it was not trained on."""
    if policy.kind != "fixed" or policy.size_hw is None:
        return False
    (fh, fw), (mh, mw) = frame_hw, policy.size_hw
    stretch = (mw / mh) / (fw / fh)
    if abs(stretch - 1.0) <= _ASPECT_TOLERANCE:
        return False
    log.warning(
        "%s: the %s are %dx%d but the model resizes every input to %dx%d, stretching them %.2fx "
        "horizontally against vertically; areas are still counted on the %s' own pixels, but the model "
        "sees distorted shapes. %s",
        section,
        frames,
        fh,
        fw,
        mh,
        mw,
        stretch,
        frames,
        hint
        or f"Set {section}.input_size = [H, W] with the {frames}' aspect ratio (a model exported "
        "with --dynamic), or export one without a fixed size.",
    )
    return True


def output_folder(uris: list[str]) -> str | None:
    """The folder of the first output that is a file (its parent) or a folder (itself), or None."""
    for uri in uris:
        if uri.startswith(_NOT_FILES) or ("://" in uri and not uri.startswith("file://")):
            continue
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        if path.endswith(("/", os.sep)) or os.path.isdir(path) or not os.path.splitext(path)[1]:
            return path
        return os.path.dirname(path) or "."
    return None


def kept(figures: dict[str, float], class_names, ignore) -> dict[str, float]:
    """Figures by class name, without the ignored classes and ids outside ``class_names`` (255)."""
    return {name: value for name, value in figures.items() if name in class_names and name not in ignore}


def rounded(value: float) -> float:
    """A measured figure without binary noise: 12 significant digits (508.61999999999995 ->
    508.62), far finer than any pixel spacing or GSD."""
    return float(f"{value:.12g}")


def rounded_all(figures: dict[str, float]) -> dict[str, float]:
    return {name: rounded(v) for name, v in figures.items()}
