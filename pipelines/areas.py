"""Areas and volumes of segmented classes in physical units, and polygons as GeoJSON."""

from __future__ import annotations

import json

import numpy as np

from pipelines.masks import mask_polygons


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


def class_geojson(class_ids: np.ndarray, class_names: tuple[str, ...], geotransform: tuple[float, ...] | None = None,
                  skip: tuple[int, ...] = (), epsilon_px: float = 1.0) -> dict:
    """A GeoJSON FeatureCollection of per-class polygons.

    Coordinates are pixels, or map coordinates when a geotransform is given. Each feature has
    properties ``class_id`` and ``class_name``.
    """
    features = []
    for cid in np.unique(class_ids):
        cid = int(cid)
        if cid in skip:
            continue
        for poly in mask_polygons(class_ids == cid, epsilon_px=epsilon_px, min_area_px=4.0):
            ring = [list(geotransform_apply(geotransform, x, y)) if geotransform else [float(x), float(y)]
                    for x, y in poly]
            ring.append(ring[0])
            features.append({
                "type": "Feature",
                "properties": {"class_id": cid, "class_name": class_names[cid] if cid < len(class_names) else str(cid)},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str, doc: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
