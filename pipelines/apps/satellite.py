"""The satellite pipeline: a large image streamed as overlapping tiles (``tiles:///map.tif``)
through any self-describing semantic model, blended back into one seamless class map.

    tile source -> semantic.pre -> semantic.infer -> semantic.post -> stitch -> overlay -> sinks

The stitch stage blends each tile's class probabilities into the map (``TileStitcher``:
bounded memory, rows finalised as the grid moves down). After the last tile it writes, into
the results folder: ``map.png`` (class colours), ``classes.png`` (uint8 class ids),
``classes.geojson`` (one polygon per 4-connected region of each class, holes as interior rings,
traced along pixel edges so a polygon's area is its pixel count; in map coordinates when a
geotransform is known, else pixels) and ``summary.json`` (per-class area in m² from the ground
sampling distance, and a check of the map for tile seams). Each tile's record carries
``results.tile``; the last one also ``results.map``.

The map is checked when the pipeline is built, before any output is created or any tile
reaches the model: the source must be tiles:// of an existing image, the GSD must be known, and
a fixed model input that would stretch the tiles is reported.
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from segstream.pipelines.apps.config import AppConfig
from segstream.pipelines.apps.measurement import kept, output_folder, rounded, rounded_all, semantic_model_stages
from segstream.pipelines.tasks.areas import class_areas, class_geojson, write_geojson
from segstream.pipelines.tasks.overlay import ClassOverlayStage
from segstream.pipelines.tasks.results import SemanticMap
from segstream.pipelines.tasks.road import colorize
from segstream.pipelines.tasks.tiling import Tile, TileStitcher, seam_check
from segstream.stream.errors import ConfigError, ModelError, SegstreamError, SinkError
from segstream.stream.frame import Frame
from segstream.stream.graph import Stage
from segstream.stream.io import write_json
from segstream.stream.sinks.files import writable_parent
from segstream.stream.sources import open_source
from segstream.stream.sources.tiles import TileSource, default_overlap

log = logging.getLogger(__name__)

_NOT_TILES = "the satellite pipeline needs a tiled image; use --source tiles:///path/to/map.tif?gsd=0.5"


def _gsd_unknown(path: str) -> ConfigError:
    return ConfigError(
        f"{path}: the ground sampling distance is unknown; add ?gsd=METRES_PER_PIXEL to the tiles:// "
        "source or set satellite.gsd_m"
    )


class StitchStage(Stage):
    """Blends tiles into the full class map; measures and writes it after the last tile.

    Args:
        results_dir: folder for map.png, classes.png, classes.geojson, summary.json.
        gsd_m: metres per pixel where the source gives none.
        ignore: class names left out of areas and polygons.
        epsilon_px: polygon simplification (0: exact pixel outlines).
        key: where the SemanticMap (with probabilities) is in ``Frame.results``.
    """

    name = "stitch"

    def __init__(
        self,
        *,
        results_dir: str,
        gsd_m: float | None = None,
        ignore=("background",),
        epsilon_px: float = 0.0,
        key: str = "semantic",
    ) -> None:
        self.results_dir = results_dir
        self.gsd_m = gsd_m or None
        self.ignore = tuple(ignore)
        self.epsilon_px = epsilon_px
        self.key = key
        self.stitcher: TileStitcher | None = None
        self.summary: dict | None = None
        self._map: dict = {}
        self._class_names: tuple[str, ...] = ()
        self._palette: np.ndarray | None = None

    def setup(self) -> None:
        writable_parent(os.path.join(self.results_dir, "summary.json"), "map results")

    def _start(self, meta: dict, sem: SemanticMap) -> None:
        gsd = meta.get("gsd_m") or self.gsd_m
        if not gsd:
            raise _gsd_unknown(meta["map"])
        self._map = {
            "map": meta["map"],
            "size_hw": list(meta["map_size_hw"]),
            "gsd_m": float(gsd),
            "geotransform": meta.get("geotransform"),
            "crs": meta.get("crs"),
            "tile_hw": list(meta["tile_hw"]),
            "overlap": int(meta["overlap"]),
        }
        self._class_names = sem.class_names
        self._palette = sem.palette_bgr
        self.stitcher = TileStitcher(
            tuple(meta["map_size_hw"]), tuple(meta["tile_hw"]), int(meta["overlap"]), len(sem.class_names)
        )

    def process(self, frame: Frame) -> Frame:
        meta = frame.metadata
        if "tile" not in meta:  # build_satellite checks this; a stage built by hand may not
            raise ConfigError(_NOT_TILES)
        sem = frame.results[self.key]
        if not isinstance(sem, SemanticMap) or sem.probabilities is None:
            raise ModelError(f"results[{self.key!r}] has no class probabilities to blend")
        if self.stitcher is None:
            self._start(meta, sem)
        tile = Tile(**meta["tile"])
        probs = sem.probabilities
        th, tw = tile.y1 - tile.y0, tile.x1 - tile.x0
        if probs.shape[1:] != (th, tw):  # the model ran at another size: back to the tile's pixels
            probs = cv2.resize(probs.transpose(1, 2, 0), (tw, th), interpolation=cv2.INTER_LINEAR)
            probs = probs.reshape(th, tw, -1).transpose(2, 0, 1)
        sem.probabilities = None  # the stitcher holds what it needs; keep the frame light downstream
        rows = self.stitcher.add(tile, probs)
        frame.results["tile"] = {**tile.to_json_dict(), "rows_final": list(rows)}
        if self.stitcher.complete:
            frame.results["map"] = self.finish()
        return frame

    def finish(self) -> dict:
        """Writes map.png, classes.png, classes.geojson and summary.json; returns the summary."""
        assert self.stitcher is not None
        ids = self.stitcher.class_ids
        names = self._class_names
        gsd = self._map["gsd_m"]
        geotransform = self._map["geotransform"]
        skip = tuple(i for i, n in enumerate(names) if n in self.ignore)
        geo = class_geojson(
            ids,
            names,
            geotransform=tuple(geotransform) if geotransform else None,
            skip=skip,
            epsilon_px=self.epsilon_px,
        )
        for feature in geo["features"]:
            feature["properties"]["area_m2"] = rounded(feature["properties"]["area_px"] * gsd * gsd)
        files = {
            k: os.path.join(self.results_dir, f)
            for k, f in (
                ("map", "map.png"),
                ("classes", "classes.png"),
                ("geojson", "classes.geojson"),
                ("summary", "summary.json"),
            )
        }
        done = self.stitcher.rows_done
        seams = seam_check(
            ids[:done],
            [t for t in self.stitcher.tiles[: self.stitcher.tiles_done] if t.y1 <= done],
            self.stitcher.disagreement,
        )
        self.summary = {
            **self._map,
            "complete": self.stitcher.complete,
            "rows_final": done,
            "tiles": self.stitcher.tiles_done,
            "tile_count": len(self.stitcher.tiles),
            "coordinates": "map" if geotransform else "pixel",
            "areas_m2": rounded_all(kept(class_areas(ids, names, gsd * gsd), names, self.ignore)),
            "polygons": len(geo["features"]),
            "seams": None if seams is None else seams.to_json_dict(),
            "files": files,
        }
        if seams is not None and seams.seam:
            overlap, wider = self._map["overlap"], default_overlap(self._map["tile_hw"])
            remedy = (
                f"raise overlap= (try {wider}, the default)"
                if overlap < wider
                else "use larger tiles with overlap= half the tile, or a model that depends less on the position"
            )
            log.warning(
                "satellite: %s, the middle of a tile overlap, changes class on %.1f%% of its pixels against "
                "%.1f%% on the lines around it, and neighbouring tiles disagree on %.0f%% of those lines' "
                "pixels: a seam. The model's output depends on where a pixel sits in its tile further in "
                "than half the overlap (%d px); %s so that neighbouring tiles agree where they hand over",
                seams.worst_line,
                100 * seams.change,
                100 * seams.nearby,
                100 * (seams.disagreement or 0.0),
                overlap,
                remedy,
            )
        palette = self._palette if self._palette is not None else np.zeros((len(names), 3), np.uint8)
        for path, image in ((files["map"], colorize(ids, palette)), (files["classes"], ids)):
            if not cv2.imwrite(path, image):
                raise SinkError(f"{path}: could not write the image; is the disk full or the folder removed?")
        try:
            write_geojson(files["geojson"], geo)
        except OSError as exc:
            raise SinkError(f"{files['geojson']}: cannot write ({exc.strerror})") from None
        write_json(files["summary"], self.summary)
        text = ", ".join(f"{n} {a:.1f} m²" for n, a in sorted(self.summary["areas_m2"].items())) or "no class found"
        state = "" if self.summary["complete"] else f" (incomplete: rows 0..{self.stitcher.rows_done} only)"
        print(
            f"satellite: {self._map['map']}: {text}, {len(geo['features'])} polygons{state}; results in {self.results_dir}"
        )
        return self.summary

    def close(self) -> None:
        if self.summary is None and self.stitcher is not None and self.stitcher.rows_done > 0:
            try:
                self.finish()
            except SegstreamError as exc:
                log.warning("the partial map could not be written: %s", exc)

    def metrics(self) -> dict:
        return {} if self.stitcher is None else {"rows_final": self.stitcher.rows_done}


def check_map(config: AppConfig) -> TileSource:
    """The source's map, checked before anything runs: tiles:// of an image that exists, with a
    GSD from the URI, a projected geotransform or ``satellite.gsd_m``.

    Raises:
        ConfigError: not a tiles:// source, GSD unknown, overlap not smaller than the tile.
        SourceError: no such image, or not an image format OpenCV reads.
    """
    source = open_source(config.source.uri)
    if not isinstance(source, TileSource):
        raise ConfigError(_NOT_TILES)
    source.scan()
    if not (source.gsd_m or config.satellite.gsd_m):
        raise _gsd_unknown(source.path)
    return source


def build_satellite(config: AppConfig) -> list[Stage]:
    c = config.satellite
    results_dir = c.results_dir or output_folder(config.output.uris)
    if not results_dir:
        raise ConfigError(
            "satellite: nowhere to write the map; set satellite.results_dir or give a file or folder --output"
        )
    source = check_map(config)
    return [
        *semantic_model_stages(
            config,
            "satellite",
            keep_probabilities=True,
            frame_hw=source.tile_hw,
            frames="tiles",
            size_hint="Give tiles:// a tile=HxW of the model's aspect ratio (its own input size "
            "suits best), or export the model with --dynamic and no fixed size.",
        ),
        StitchStage(
            results_dir=results_dir, gsd_m=c.gsd_m or None, ignore=c.ignore_classes, epsilon_px=c.polygon_epsilon_px
        ),
        ClassOverlayStage(c.overlay_alpha, c.ignore_classes),
    ]
