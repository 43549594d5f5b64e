"""The medical pipeline: a slice stack (``stack:///series``) through any self-describing
semantic model, per-class areas per slice in mm², the series' volumes in mm³ and ml.

    stack source -> semantic.pre -> semantic.infer -> semantic.post -> areas -> overlay -> sinks

Each slice's record (JSON Lines) carries ``results.slice``: its areas in mm² with the spacing
and thickness they were computed with. The last slice also carries ``results.series``: the
volumes, which are written to the summary JSON and printed. A run that ends early (an error, a
stop, ``--max-frames``) still writes the summary of the slices it saw, marked incomplete.

The series is checked when the pipeline is built, before any output is created or any slice
reaches the model: the source must be a slice stack, the spacing and thickness must be known
(the URI, the DICOM headers or ``[medical]``), a window must not be given for 8-bit slices, and
a fixed model input that would stretch the slices is reported.
"""

from __future__ import annotations

import logging
import os

from segstream.pipelines.apps.config import AppConfig
from segstream.pipelines.apps.measurement import kept, output_folder, rounded, rounded_all, semantic_model_stages
from segstream.pipelines.tasks.areas import class_areas, series_volumes
from segstream.pipelines.tasks.overlay import ClassOverlayStage
from segstream.pipelines.tasks.results import SemanticMap
from segstream.stream.errors import ConfigError, SegstreamError
from segstream.stream.frame import Frame
from segstream.stream.graph import Stage
from segstream.stream.io import write_json
from segstream.stream.sinks.files import writable_parent
from segstream.stream.sources import open_source
from segstream.stream.sources.stack import SeriesInfo, SliceStackSource

log = logging.getLogger(__name__)

SUMMARY_NAME = "series_summary.json"

_NOT_A_STACK = "the medical pipeline needs a slice stack; use --source stack:///path/to/series"


def _spacing_unknown(series: str) -> ConfigError:
    return ConfigError(
        f"{series}: the pixel spacing is unknown; add ?spacing=ROWxCOL (mm) to the stack:// source "
        "or set medical.spacing_mm"
    )


def _thickness_unknown(series: str) -> ConfigError:
    return ConfigError(
        f"{series}: the slice thickness is unknown; add ?thickness=MM to the stack:// source or set "
        "medical.thickness_mm"
    )


class SliceAreaStage(Stage):
    """Per-class area of each slice (mm²) and the series' volumes (mm³, ml).

    Spacing and thickness come from the frame's metadata (the stack source), else from the
    arguments. The volume of a class is the sum over slices of area x slice distance (the
    distance between slice centres where the series gives one, else the slice thickness).

    Args:
        spacing_mm: (row, column) pixel spacing where the source gives none.
        thickness_mm: slice thickness where the source gives none.
        ignore: class names left out.
        summary_path: where the series summary JSON goes (None: only printed).
        key: where the SemanticMap is in ``Frame.results``.
    """

    name = "areas"

    def __init__(
        self,
        *,
        spacing_mm=None,
        thickness_mm: float | None = None,
        ignore=("background",),
        summary_path: str | None = None,
        key: str = "semantic",
    ) -> None:
        self.spacing_mm = tuple(spacing_mm) if spacing_mm else None
        self.thickness_mm = thickness_mm or None
        self.ignore = tuple(ignore)
        self.summary_path = summary_path
        self.key = key
        self.slices: list[dict] = []
        self.summary: dict | None = None
        self._series: dict = {}

    def setup(self) -> None:
        if self.summary_path:
            writable_parent(self.summary_path, "series summary")

    def process(self, frame: Frame) -> Frame:
        meta = frame.metadata
        if "slice_index" not in meta:  # build_medical checks this; a stage built by hand may not
            raise ConfigError(_NOT_A_STACK)
        spacing = meta.get("spacing_mm") or self.spacing_mm
        if not spacing:
            raise _spacing_unknown(meta["series"])
        distance = meta.get("slice_spacing_mm") or meta.get("slice_thickness_mm") or self.thickness_mm
        if not distance:
            raise _thickness_unknown(meta["series"])
        sem = frame.results[self.key]
        if not isinstance(sem, SemanticMap):
            raise TypeError(f"results[{self.key!r}] is {type(sem).__name__}, expected a SemanticMap")
        areas = kept(class_areas(sem.class_ids, sem.class_names, spacing[0] * spacing[1]), sem.class_names, self.ignore)
        areas = rounded_all(areas)
        record = {
            "index": meta["slice_index"],
            "file": meta.get("file"),
            "areas_mm2": areas,
            "spacing_mm": list(spacing),
            "slice_distance_mm": distance,
        }
        self.slices.append(record)
        self._series = {
            "series": meta["series"],
            "slice_count": meta["slice_count"],
            "spacing_mm": list(spacing),
            "slice_distance_mm": distance,
        }
        frame.results["slice"] = record
        if meta["slice_index"] == meta["slice_count"] - 1:
            frame.results["series"] = self.finish()
        return frame

    def finish(self) -> dict:
        """The series summary (volumes of the slices seen so far), written and printed once."""
        s = self._series
        volumes = series_volumes([r["areas_mm2"] for r in self.slices], s["slice_distance_mm"])
        self.summary = {
            **s,
            "slices": len(self.slices),
            "complete": len(self.slices) == s["slice_count"],
            "volumes_mm3": rounded_all(volumes),
            "volumes_ml": {name: rounded(v / 1000.0) for name, v in volumes.items()},
            "slice_areas_mm2": [
                {"index": r["index"], "file": r["file"], "areas_mm2": r["areas_mm2"]} for r in self.slices
            ],
        }
        if self.summary_path:
            write_json(self.summary_path, self.summary)
        text = ", ".join(f"{n} {v / 1000.0:.3f} ml" for n, v in sorted(volumes.items())) or "no class found"
        state = "" if self.summary["complete"] else f" (incomplete: {len(self.slices)} of {s['slice_count']} slices)"
        print(
            f"medical: {s['series']}: {text}{state}" + (f"; summary {self.summary_path}" if self.summary_path else "")
        )
        return self.summary

    def close(self) -> None:
        if self.summary is None and self.slices:
            try:
                self.finish()
            except SegstreamError as exc:
                log.warning("the series summary could not be written: %s", exc)

    def metrics(self) -> dict:
        return {"slices": len(self.slices)}


def check_series(config: AppConfig) -> SeriesInfo:
    """The source's series, checked before anything runs: a slice stack whose spacing and
    thickness are known from the URI, the DICOM headers or ``[medical]``.

    Raises:
        ConfigError: not a stack:// source, spacing or thickness unknown, a window for 8-bit slices.
        SourceError: no such folder, no slices, the first slice unreadable.
    """
    source = open_source(config.source.uri)
    if not isinstance(source, SliceStackSource):
        raise ConfigError(_NOT_A_STACK)
    info = source.scan()
    c = config.medical
    if info.spacing_mm is None and not c.spacing_mm:
        raise _spacing_unknown(info.folder)
    if not (info.slice_spacing_mm or info.thickness_mm or c.thickness_mm):
        raise _thickness_unknown(info.folder)
    return info


def build_medical(config: AppConfig) -> list[Stage]:
    c = config.medical
    info = check_series(config)
    folder = output_folder(config.output.uris)
    summary = c.summary or (os.path.join(folder, SUMMARY_NAME) if folder else None)
    return [
        *semantic_model_stages(config, "medical", frame_hw=info.size_hw, frames="slices"),
        SliceAreaStage(
            spacing_mm=c.spacing_mm or None,
            thickness_mm=c.thickness_mm or None,
            ignore=c.ignore_classes,
            summary_path=summary,
        ),
        ClassOverlayStage(c.overlay_alpha, c.ignore_classes),
    ]
