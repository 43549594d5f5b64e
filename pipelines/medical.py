"""The medical pipeline: a slice stack (``stack:///series``) through any self-describing
semantic model, per-class areas per slice in mm², the series' volumes in mm³ and ml.

    stack source -> semantic.pre -> semantic.infer -> semantic.post -> areas -> overlay -> sinks

Each slice's record (JSON Lines) carries ``results.slice``: its areas in mm² with the spacing
and thickness they were computed with. The last slice also carries ``results.series``: the
volumes, which are written to the summary JSON and printed. A run that ends early (an error, a
stop, ``--max-frames``) still writes the summary of the slices it saw, marked incomplete.
"""

from __future__ import annotations

import logging
import os

from pipelines.areas import class_areas, series_volumes
from pipelines.config import AppConfig
from pipelines.measurement import kept, output_folder, semantic_model_stages
from pipelines.overlay import ClassOverlayStage
from pipelines.results import SemanticMap
from stream.errors import ConfigError, SegstreamError
from stream.frame import Frame
from stream.graph import Stage
from stream.sinks.files import writable_parent

log = logging.getLogger(__name__)

SUMMARY_NAME = "series_summary.json"


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

    def __init__(self, *, spacing_mm=None, thickness_mm: float | None = None, ignore=("background",),
                 summary_path: str | None = None, key: str = "semantic") -> None:
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
        if "slice_index" not in meta:
            raise ConfigError("the medical pipeline needs a slice stack; use --source stack:///path/to/series")
        spacing = meta.get("spacing_mm") or self.spacing_mm
        if not spacing:
            raise ConfigError(f"{meta['series']}: the pixel spacing is unknown; add ?spacing=ROWxCOL (mm) to the "
                              "stack:// source or set medical.spacing_mm")
        distance = meta.get("slice_spacing_mm") or meta.get("slice_thickness_mm") or self.thickness_mm
        if not distance:
            raise ConfigError(f"{meta['series']}: the slice thickness is unknown; add ?thickness=MM to the stack:// "
                              "source or set medical.thickness_mm")
        sem = frame.results[self.key]
        if not isinstance(sem, SemanticMap):
            raise TypeError(f"results[{self.key!r}] is {type(sem).__name__}, expected a SemanticMap")
        areas = kept(class_areas(sem.class_ids, sem.class_names, spacing[0] * spacing[1]), sem.class_names, self.ignore)
        record = {"index": meta["slice_index"], "file": meta.get("file"), "areas_mm2": areas,
                  "spacing_mm": list(spacing), "slice_distance_mm": distance}
        self.slices.append(record)
        self._series = {"series": meta["series"], "slice_count": meta["slice_count"], "spacing_mm": list(spacing),
                        "slice_distance_mm": distance}
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
            "volumes_mm3": volumes,
            "volumes_ml": {name: v / 1000.0 for name, v in volumes.items()},
            "slice_areas_mm2": [{"index": r["index"], "file": r["file"], "areas_mm2": r["areas_mm2"]} for r in self.slices],
        }
        if self.summary_path:
            from pipelines.app import write_json

            write_json(self.summary_path, self.summary)
        text = ", ".join(f"{n} {v / 1000.0:.3f} ml" for n, v in sorted(volumes.items())) or "no class found"
        state = "" if self.summary["complete"] else f" (incomplete: {len(self.slices)} of {s['slice_count']} slices)"
        print(f"medical: {s['series']}: {text}{state}" + (f"; summary {self.summary_path}" if self.summary_path else ""))
        return self.summary

    def close(self) -> None:
        if self.summary is None and self.slices:
            try:
                self.finish()
            except SegstreamError as exc:
                log.warning("the series summary could not be written: %s", exc)

    def metrics(self) -> dict:
        return {"slices": len(self.slices)}


def build_medical(config: AppConfig) -> list[Stage]:
    c = config.medical
    folder = output_folder(config.output.uris)
    summary = c.summary or (os.path.join(folder, SUMMARY_NAME) if folder else None)
    return [
        *semantic_model_stages(config, "medical"),
        SliceAreaStage(spacing_mm=c.spacing_mm or None, thickness_mm=c.thickness_mm or None,
                       ignore=c.ignore_classes, summary_path=summary),
        ClassOverlayStage(c.overlay_alpha, c.ignore_classes),
    ]
