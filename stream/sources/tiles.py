"""A large image (satellite or aerial map) streamed as an overlapping grid of tiles.

``tiles:///data/map.tif?tile=512x512&overlap=64&gsd=0.5``

Each frame is one tile, in row-major order (the order a stitcher needs), with the tile's window
in the map and the map's geometry in ``Frame.metadata``. PNG, JPEG and TIFF are read with
OpenCV. A GeoTIFF's georeferencing (geotransform, CRS) is read with rasterio when it is
installed; without it, coordinates stay in pixels and a note says so. The ground sampling
distance (metres per pixel) comes from ``gsd=``, else from a projected geotransform; a pipeline
may fill it in from its configuration.

Overlap: a model whose output depends on where a pixel sits in its input (zero padding, a wide
receptive field, global pooling, a learned layout prior) needs neighbouring tiles to overlap by
more than twice the width of that border effect, so that the middle of every overlap, where the
blend hands over from one tile to the next, lies outside it in both tiles (about four times for
an exact result where four tiles meet). The default, half the tile's shorter side (256 px for
512x512 tiles), was chosen by measuring the seams of the embedded DeepLab (README, "Satellite").

The whole image is decoded once into memory (3 bytes per pixel); tiles are views of it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from segstream.stream.config import parse_size_hw
from segstream.stream.errors import ConfigError, SourceError
from segstream.stream.sources.base import ImageConverter, Source, SourceItem

log = logging.getLogger(__name__)
#: GeoTIFFs already warned about (the source and the stitcher both read the georeference).
_NOTED_WITHOUT_RASTERIO: set[str] = set()

#: URI options of ``tiles://`` and how they parse.
TILE_OPTIONS = {"tile": str, "overlap": int, "gsd": float}


@dataclass(frozen=True)
class Tile:
    """One tile: its index in the grid and its window in image pixels (y0:y1, x0:x1)."""

    index: int
    y0: int
    x0: int
    y1: int
    x1: int

    def to_json_dict(self) -> dict:
        return {"index": self.index, "y0": self.y0, "x0": self.x0, "y1": self.y1, "x1": self.x1}


def tile_grid(size_hw: tuple[int, int], tile_hw: tuple[int, int], overlap: int) -> list[Tile]:
    """Tiles of ``tile_hw`` covering an image in row-major order, neighbours overlapping by at
    least ``overlap``.

    Tiles are never larger than the image; the last row/column is shifted inwards so every tile
    is full-sized (when the image is at least one tile large).
    """
    h, w = size_hw
    th, tw = min(tile_hw[0], h), min(tile_hw[1], w)
    if overlap < 0 or overlap >= min(th, tw):
        raise ValueError(f"overlap must be in [0, {min(th, tw)}), got {overlap}")

    def starts(total: int, size: int) -> list[int]:
        if size >= total:
            return [0]
        step = size - overlap
        out = list(range(0, total - size, step))
        out.append(total - size)
        return sorted(set(out))

    tiles: list[Tile] = []
    for y in starts(h, th):
        for x in starts(w, tw):
            tiles.append(Tile(len(tiles), y, x, y + th, x + tw))
    return tiles


def default_overlap(tile_hw: tuple[int, int]) -> int:
    """Half the tile's shorter side: 256 px for 512x512 tiles (see the module notes)."""
    return min(tile_hw) // 2


def read_georeference(path: str) -> tuple[tuple[float, ...] | None, str | None, bool]:
    """(GDAL geotransform, CRS string, CRS is geographic) of a GeoTIFF via rasterio, if installed.

    Returns (None, None, False) for files without georeferencing or without rasterio (noted once).
    """
    if not path.lower().endswith((".tif", ".tiff")):
        return None, None, False
    try:
        import rasterio
    except ImportError:
        if path not in _NOTED_WITHOUT_RASTERIO:
            _NOTED_WITHOUT_RASTERIO.add(path)
            log.warning(
                "%s: rasterio is not installed, so GeoTIFF georeferencing is not read; areas use gsd= and "
                "polygons stay in pixel coordinates (pip install rasterio)",
                path,
            )
        return None, None, False
    with rasterio.open(path) as ds:
        crs = ds.crs
        if crs is None:
            return None, None, False
        return tuple(float(v) for v in ds.transform.to_gdal()), crs.to_string(), bool(crs.is_geographic)


class TileSource(Source):
    """The tiles of one large image as BGR frames.

    Args:
        path: the image (PNG, JPEG, TIFF/GeoTIFF).
        tile_hw: tile size in pixels (the model's input size suits best).
        overlap: pixels shared by neighbouring tiles (blending hides the seams there); None:
            ``default_overlap`` of the tile (of the image, when it is smaller than a tile).
        gsd_m: ground sampling distance, metres per pixel; overrides the geotransform's.

    ``Frame.metadata`` of each tile: ``map`` (path), ``map_size_hw``, ``tile`` (index, y0, x0,
    y1, x1), ``tile_count``, ``tile_hw``, ``overlap``, ``gsd_m`` (None where unknown),
    ``geotransform`` (GDAL order, or None), ``crs``.
    """

    live = False

    def __init__(
        self, path: str, tile_hw: tuple[int, int] = (512, 512), overlap: int | None = None, gsd_m: float | None = None
    ) -> None:
        if gsd_m is not None and gsd_m <= 0:
            raise ConfigError(f"{path}: gsd must be > 0 metres per pixel, got {gsd_m:g}")
        if overlap is not None and overlap < 0:
            raise ConfigError(f"{path}: overlap must be >= 0 pixels, got {overlap}")
        self.path = path
        self.name = f"tiles://{path}"
        self.tile_hw = (int(tile_hw[0]), int(tile_hw[1]))
        self.overlap = overlap
        self.gsd_m = gsd_m
        self.geotransform: tuple[float, ...] | None = None
        self.crs: str | None = None
        self.tiles: list[Tile] = []
        self._image: np.ndarray | None = None
        self._index = 0
        self._scanned = False

    def scan(self) -> None:
        """Checks the file and reads its georeferencing and GSD without decoding the image, so a
        pipeline can refuse a run before any output is created. ``open`` calls it (once).

        Raises:
            SourceError: no such file, or not an image format OpenCV reads.
            ConfigError: an overlap not smaller than the tile.
        """
        if self._scanned:
            return
        if self.overlap is not None and self.overlap >= min(self.tile_hw):
            raise ConfigError(
                f"{self.path}: overlap {self.overlap} must be smaller than the tile "
                f"({self.tile_hw[0]}x{self.tile_hw[1]}); lower overlap= or raise tile="
            )
        if not os.path.isfile(self.path):
            raise SourceError(f"{self.path}: no such image; check the path")
        if not cv2.haveImageReader(self.path):
            raise SourceError(f"{self.path}: not an image OpenCV can read (PNG, JPEG, TIFF); check or convert the file")
        self.geotransform, self.crs, geographic = read_georeference(self.path)
        if self.gsd_m is None and self.geotransform is not None and not geographic:
            _, dx, rx, _, ry, dy = self.geotransform
            self.gsd_m = math.sqrt(abs(dx * dy - rx * ry))
        self._scanned = True

    def open(self) -> None:
        self.scan()
        raw = cv2.imread(self.path, cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise SourceError(f"{self.path}: not an image OpenCV can read (PNG, JPEG, TIFF); check or convert the file")
        image = ImageConverter(self.path)(raw)
        image.flags.writeable = False
        h, w = image.shape[:2]
        tile_hw = (min(self.tile_hw[0], h), min(self.tile_hw[1], w))
        if self.overlap is None:
            self.overlap = default_overlap(tile_hw)
        elif self.overlap >= min(tile_hw):
            raise ConfigError(
                f"{self.path}: overlap {self.overlap} must be smaller than the tile "
                f"({tile_hw[0]}x{tile_hw[1]}); lower overlap= or raise tile="
            )
        self.tiles = tile_grid((h, w), tile_hw, self.overlap)
        self.frame_count = len(self.tiles)
        self._image = image

    def read(self, stop: threading.Event) -> SourceItem | None:
        if stop.is_set() or self._image is None or self._index >= len(self.tiles):
            return None
        t = self.tiles[self._index]
        self._index += 1
        meta = {
            "map": self.path,
            "map_size_hw": [int(self._image.shape[0]), int(self._image.shape[1])],
            "tile": t.to_json_dict(),
            "tile_count": len(self.tiles),
            "tile_hw": [t.y1 - t.y0, t.x1 - t.x0],
            "overlap": self.overlap,
            "gsd_m": self.gsd_m,
            "geotransform": None if self.geotransform is None else list(self.geotransform),
            "crs": self.crs,
        }
        return SourceItem(self._image[t.y0 : t.y1, t.x0 : t.x1], None, meta)

    def close(self) -> None:
        self._image = None

    def stats(self) -> dict:
        return {"tiles": len(self.tiles), "tiles_read": self._index}


def tile_source_from_uri(uri: str, path: str, options: dict) -> TileSource:
    """``tiles://`` URI options -> a TileSource (``path`` and ``options`` already split off)."""
    if not path:
        raise ConfigError(f"{uri}: expected tiles:///path/to/map.tif")
    tile_hw = parse_size_hw(options["tile"], f"{uri}: tile") if "tile" in options else (512, 512)
    # An empty tile= gives None here, which TileSource does not accept (a TypeError today).
    return TileSource(path, tile_hw=tile_hw, overlap=options.get("overlap"), gsd_m=options.get("gsd"))  # type: ignore[arg-type]
