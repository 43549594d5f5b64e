"""Areas and volumes of segmented classes in physical units, and polygons as GeoJSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np


def class_areas(class_ids: np.ndarray, class_names: tuple[str, ...], pixel_area: float) -> dict[str, float]:
    """Area per class present.

    Args:
        class_ids: (H, W) integer class map.
        class_names: names by class id.
        pixel_area: area of one pixel (m^2 for satellite: GSD^2; mm^2 for medical: spacing_y*spacing_x).
    """
    if pixel_area <= 0:
        raise ValueError(f"pixel_area must be > 0, got {pixel_area}")
    counts = np.bincount(class_ids.ravel().astype(np.int64), minlength=len(class_names))
    return {
        (class_names[i] if i < len(class_names) else str(i)): float(c) * pixel_area for i, c in enumerate(counts) if c
    }


def series_volumes(slice_areas_mm2: list[dict[str, float]], slice_thickness_mm: float) -> dict[str, float]:
    """Volume per class (mm^3) of a slice series: sum of slice areas times slice thickness."""
    if slice_thickness_mm <= 0:
        raise ValueError(f"slice_thickness_mm must be > 0, got {slice_thickness_mm}")
    out: dict[str, float] = {}
    for areas in slice_areas_mm2:
        for name, a in areas.items():
            out[name] = out.get(name, 0.0) + a * slice_thickness_mm
    return out


def geotransform_apply(geotransform: tuple[float, ...], x, y):
    """Pixel (x, y) -> map coordinates with a GDAL-style geotransform (x0, dx, rx, y0, ry, dy).

    ``x`` and ``y`` may be numbers or numpy arrays of the same shape."""
    x0, dx, rx, y0, ry, dy = geotransform
    return x0 + x * dx + y * rx, y0 + x * ry + y * dy


# Directions of boundary edges: east, south, west, north in image coordinates (y down), so that
# (d + 1) % 4 is a right turn on screen.
_DX = np.array([1, 0, -1, 0], np.int64)
_DY = np.array([0, 1, 0, -1], np.int64)


@dataclass(frozen=True)
class Region:
    """One 4-connected region of a binary mask, outlined along pixel edges.

    Attributes:
        exterior: (N, 2) float64 ring of pixel-corner coordinates (x, y), not closed, N >= 4.
        holes: rings of the same form, one per hole (an 8-connected background part the
            region encloses).
        pixel_count: pixels in the region; equals the shoelace area of ``exterior`` minus those
            of ``holes`` exactly.
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...]
    pixel_count: int


def signed_area(ring) -> float:
    """Shoelace area of a ring [[x, y], ...]: > 0 when it turns clockwise on screen (image
    coordinates, y down), i.e. counter-clockwise with y up."""
    xy = np.asarray(ring, np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0


def polygon_area(ring) -> float:
    """Area of a ring [[x, y], ...] (shoelace), in its coordinates' units squared."""
    return abs(signed_area(ring))


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit edges between foreground and background pixels, directed with the foreground on
    their right on screen. Returns start x, start y (pixel corners) and direction (0..3)."""
    h, w = mask.shape
    p = np.zeros((h + 2, w + 2), bool)
    p[1:-1, 1:-1] = mask
    # Row lines y = 0..h: east along the top of a foreground pixel, west along its bottom.
    below = p[1:, 1:-1]
    ys, xs = np.nonzero(p[:-1, 1:-1] != below)
    east = below[ys, xs]
    # Column lines x = 0..w: south along the right side of a foreground pixel, north along its left.
    right = p[1:-1, 1:]
    vy, vx = np.nonzero(p[1:-1, :-1] != right)
    north = right[vy, vx]
    x = np.concatenate([np.where(east, xs, xs + 1), vx])
    y = np.concatenate([ys, np.where(north, vy + 1, vy)])
    d = np.concatenate([np.where(east, 0, 2), np.where(north, 3, 1)])
    return x.astype(np.int64), y.astype(np.int64), d.astype(np.int64)


def _trace_rings(mask: np.ndarray) -> list[np.ndarray]:
    """Every closed outline of ``mask`` along pixel edges: (N, 2) int64 corner rings, the
    foreground on the right (exteriors have positive ``signed_area``, holes negative), only
    the corners where the outline turns. Where two foreground pixels touch only at a corner
    the outline turns right, keeping them apart (4-connected foreground)."""
    x, y, d = _boundary_edges(mask)
    n = len(d)
    if n == 0:
        return []
    stride = mask.shape[1] + 1
    start = y * stride + x
    end = start + _DX[d] + _DY[d] * stride
    order = np.argsort(start, kind="stable")
    sorted_start = start[order]
    lo = np.searchsorted(sorted_start, end, "left")
    first = order[lo]
    # At a corner shared by two diagonal foreground pixels two edges leave it: take the right turn.
    two = np.searchsorted(sorted_start, end, "right") - lo == 2
    second = order[np.minimum(lo + 1, n - 1)]
    nxt = np.where(two & (d[first] != (d + 1) % 4), second, first)
    # Each ring is a cycle of ``nxt``: label it by its smallest edge (pointer doubling) ...
    rep = np.arange(n)
    jump = nxt.copy()
    for _ in range(int(np.ceil(np.log2(n))) + 1):
        rep = np.minimum(rep, rep[jump])
        jump = jump[jump]
    # ... and rank its edges by the steps left to the edge before that one (list ranking).
    last = rep[nxt] == nxt  # the edge whose successor starts the ring
    succ = np.where(last, np.arange(n), nxt)
    dist = (~last).astype(np.int64)
    for _ in range(int(np.ceil(np.log2(n))) + 1):
        dist = dist + dist[succ]
        succ = succ[succ]
    walk = np.lexsort((-dist, rep))  # rings one after another, edges in order
    ring_of = rep[walk]
    bounds = np.flatnonzero(np.diff(ring_of)) + 1
    starts = np.r_[0, bounds]
    prev = np.arange(n) - 1
    prev[starts] = np.r_[bounds, n] - 1  # the first edge of a ring follows its last
    dirs = d[walk]
    corner = dirs != dirs[prev]
    xy = np.stack([x[walk], y[walk]], axis=1)
    ring_id = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    keep = np.flatnonzero(corner)
    cuts = np.flatnonzero(np.diff(ring_id[keep])) + 1
    return np.split(xy[keep], cuts)


def mask_regions(mask: np.ndarray, min_pixels: int = 1) -> list[Region]:
    """The 4-connected regions of a binary mask with exact pixel-edge outlines and holes.

    Pixel (column x, row y) is the square [x, x+1] x [y, y+1]. Each region's exterior ring
    minus its holes encloses exactly its pixels, so shoelace areas equal pixel counts for any
    shape (L-shapes, crosses, rings, one-pixel-wide lines, regions touching the border).
    Pixels touching only at a corner are separate regions (their outlines share that corner).

    Args:
        mask: (H, W) bool or 0/1.
        min_pixels: regions with fewer pixels are left out.

    Returns:
        Regions in raster order of their first pixel.
    """
    mask = np.asarray(mask).astype(bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return []
    top, left = int(rows[0]), int(cols[0])  # work in the box around the foreground
    mask = np.ascontiguousarray(mask[top : rows[-1] + 1, left : cols[-1] + 1])
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=4)
    rings = _trace_rings(mask)
    exterior: dict[int, np.ndarray] = {}
    holes: dict[int, list[np.ndarray]] = {}
    for ring in rings:
        # The pixel on the right of the ring's first edge names its region.
        (x0, y0), (x1, y1) = ring[0], ring[1]
        dx, dy = np.sign(x1 - x0), np.sign(y1 - y0)
        px, py = {(1, 0): (x0, y0), (0, 1): (x0 - 1, y0), (-1, 0): (x0 - 1, y0 - 1), (0, -1): (x0, y0 - 1)}[(dx, dy)]
        label = int(labels[py, px])
        shifted = ring.astype(np.float64) + (left, top)
        if signed_area(ring) > 0:
            exterior[label] = shifted
        else:
            holes.setdefault(label, []).append(shifted)
    return [
        Region(exterior[i], tuple(holes.get(i, ())), int(stats[i, cv2.CC_STAT_AREA]))
        for i in range(1, n)
        if stats[i, cv2.CC_STAT_AREA] >= min_pixels
    ]


def _simplify(ring: np.ndarray, epsilon_px: float) -> np.ndarray:
    out = cv2.approxPolyDP(ring.reshape(-1, 1, 2).astype(np.float32), epsilon_px, True).reshape(-1, 2)
    return out.astype(np.float64) if len(out) >= 3 else ring


def class_geojson(
    class_ids: np.ndarray,
    class_names: tuple[str, ...],
    geotransform: tuple[float, ...] | None = None,
    skip: tuple[int, ...] = (),
    epsilon_px: float = 0.0,
    min_pixels: int = 1,
) -> dict:
    """A GeoJSON FeatureCollection with one Polygon per 4-connected region of each class.

    Coordinates are pixel corners (pixel (x, y) spans [x, x+1] x [y, y+1]), or map coordinates
    when a geotransform is given (GDAL's convention maps pixel corners too). Holes are interior
    rings. Exteriors turn counter-clockwise and holes clockwise in the output coordinates with
    y up (RFC 7946), so in pixel coordinates with y down they run clockwise on screen.

    Each feature has properties ``class_id``, ``class_name`` and ``area_px``: the region's pixel
    count, which the polygon's area (exterior minus holes) equals exactly when ``epsilon_px`` is
    0; the ``area_px`` of a class's features add up to its pixel count when ``min_pixels`` is 1.

    Args:
        epsilon_px: Douglas-Peucker simplification of each ring in pixels (0: exact outlines).
        min_pixels: regions with fewer pixels are left out.
    """
    # A geotransform that mirrors (a north-up map: dy < 0) would turn the rings the wrong way round.
    flip = geotransform is not None and geotransform[1] * geotransform[5] - geotransform[2] * geotransform[4] < 0

    def coords(ring: np.ndarray) -> list[list[float]]:
        if epsilon_px > 0:
            ring = _simplify(ring, epsilon_px)
        if flip:
            ring = ring[::-1]
        if geotransform is not None:
            xs, ys = geotransform_apply(geotransform, ring[:, 0], ring[:, 1])
            ring = np.stack([xs, ys], axis=1)
        out = ring.tolist()
        out.append(out[0])
        return out

    features = []
    for cid in np.unique(class_ids):
        cid = int(cid)
        if cid in skip:
            continue
        for region in mask_regions(class_ids == cid, min_pixels=min_pixels):
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "class_id": cid,
                        "class_name": class_names[cid] if cid < len(class_names) else str(cid),
                        "area_px": region.pixel_count,
                    },
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [coords(region.exterior), *(coords(h) for h in region.holes)],
                    },
                }
            )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str, doc: dict) -> None:
    """Writes a GeoJSON document (compact JSON)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
