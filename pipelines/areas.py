"""Areas and volumes of segmented classes in physical units, and polygons as GeoJSON."""

from __future__ import annotations

import json

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
    return {(class_names[i] if i < len(class_names) else str(i)): float(c) * pixel_area
            for i, c in enumerate(counts) if c}


def series_volumes(slice_areas_mm2: list[dict[str, float]], slice_thickness_mm: float) -> dict[str, float]:
    """Volume per class (mm^3) of a slice series: sum of slice areas times slice thickness."""
    if slice_thickness_mm <= 0:
        raise ValueError(f"slice_thickness_mm must be > 0, got {slice_thickness_mm}")
    out: dict[str, float] = {}
    for areas in slice_areas_mm2:
        for name, a in areas.items():
            out[name] = out.get(name, 0.0) + a * slice_thickness_mm
    return out


def geotransform_apply(geotransform: tuple[float, ...], x: float, y: float) -> tuple[float, float]:
    """Pixel (x, y) -> map coordinates with a GDAL-style geotransform (x0, dx, rx, y0, ry, dy)."""
    x0, dx, rx, y0, ry, dy = geotransform
    return x0 + x * dx + y * rx, y0 + x * ry + y * dy


def pixel_edge_polygons(mask: np.ndarray, epsilon_px: float = 0.0, min_area_px: float = 1.0) -> list[list[list[float]]]:
    """Outlines of a binary mask along pixel edges, one per 8-connected region.

    Pixel (column x, row y) is the square [x, x+1] x [y, y+1], so a region's polygon encloses
    exactly its pixels (holes included: outer outlines only) and a polygon's area equals the
    pixel count. Traced on a doubled grid per region (memory: 4x the region's box).

    Args:
        mask: (H, W) bool or 0/1.
        epsilon_px: Douglas-Peucker simplification in pixels (0: exact).
        min_area_px: regions with fewer pixels are left out.

    Returns:
        Rings [[x, y], ...] (not closed) in pixel-corner coordinates.
    """
    n, comp, stats, _ = cv2.connectedComponentsWithStats(np.asarray(mask, np.uint8), connectivity=8)
    polys = []
    for i in range(1, n):
        x, y, w, h, count = (int(v) for v in stats[i])
        if count < min_area_px:
            continue
        grid = np.zeros((2 * h + 1, 2 * w + 1), np.uint8)
        grid[1::2, 1::2] = comp[y:y + h, x:x + w] == i
        # Each pixel becomes its closed square on the doubled grid: even coordinates are edges.
        grid = cv2.dilate(grid, np.ones((3, 3), np.uint8))
        contours, _ = cv2.findContours(grid, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        ring = max(contours, key=cv2.contourArea)
        if epsilon_px > 0:
            ring = cv2.approxPolyDP(ring, 2 * epsilon_px, True)
        polys.append((ring.reshape(-1, 2) / 2.0 + (x, y)).tolist())
    return polys


def polygon_area(ring) -> float:
    """Area of a ring [[x, y], ...] (shoelace), in its coordinates' units squared."""
    xy = np.asarray(ring, np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


def class_geojson(class_ids: np.ndarray, class_names: tuple[str, ...], geotransform: tuple[float, ...] | None = None,
                  skip: tuple[int, ...] = (), epsilon_px: float = 1.0) -> dict:
    """A GeoJSON FeatureCollection of per-class polygons.

    Coordinates are pixel corners (pixel (x, y) spans [x, x+1] x [y, y+1]), or map coordinates
    when a geotransform is given (GDAL's convention maps pixel corners too). Each feature has
    properties ``class_id``, ``class_name`` and ``area_px``.
    """
    features = []
    for cid in np.unique(class_ids):
        cid = int(cid)
        if cid in skip:
            continue
        for poly in pixel_edge_polygons(class_ids == cid, epsilon_px=epsilon_px, min_area_px=4.0):
            ring = [list(geotransform_apply(geotransform, x, y)) if geotransform else [float(x), float(y)]
                    for x, y in poly]
            ring.append(ring[0])
            features.append({
                "type": "Feature",
                "properties": {"class_id": cid, "class_name": class_names[cid] if cid < len(class_names) else str(cid),
                               "area_px": polygon_area(poly)},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str, doc: dict) -> None:
    """Writes a GeoJSON document (compact JSON)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
