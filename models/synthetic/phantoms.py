"""Measurement data with known answers, for checking the medical and satellite pipelines end to
end before trusting them with real scans: a slice stack of a phantom (an ellipsoid organ with a
vessel through it and a spherical lesion inside) and a large map of fields and roofs of awkward
shapes.

Each comes with ``ground_truth.json`` (what a correct pipeline must report, computed from the
drawn labels, not by the pipelines' code), the labels themselves, a reference model that
segments the data exactly (`reference_model`), and the command to run.

Layout of a slice stack (`write_slices`)::

    OUT/slices/slice_1.png ...   16-bit grey: background 1000, organ 2000, lesion 3000
    OUT/labels/slice_1.png ...   uint8 class ids (0 background, 1 organ, 2 lesion)
    OUT/reference_model.onnx     classifies the windowed slices exactly
    OUT/ground_truth.json        spacing, thickness, window; per slice pixels and mm²; volumes
                                 in mm³ and ml (exact for the drawn pixels, and the shapes' own)

Layout of a map (`write_map`)::

    OUT/map.png                  8-bit grey (3 channels): background 20, field 120, roof 240
    OUT/labels.png               uint8 class ids (0 background, 1 field, 2 roof)
    OUT/reference_model.onnx     classifies the map exactly, tile by tile
    OUT/ground_truth.json        GSD; per class pixels, m² and 4-connected regions; every region
"""

from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass

import cv2
import numpy as np

from segstream.models.synthetic.reference_model import require_onnx, write_threshold_model

SLICE_CLASSES = ("background", "organ", "lesion")
SLICE_VALUES = (1000, 2000, 3000)  # 16-bit stored values; the window 2000,4000 maps them to 64, 128, 191
SLICE_WINDOW = (2000.0, 4000.0)
SLICE_THRESHOLDS = (96.0, 160.0)  # 8-bit, between the windowed values
MAP_CLASSES = ("background", "field", "roof")
MAP_LEVELS = (20, 120, 240)
MAP_THRESHOLDS = (70.0, 180.0)
PALETTE_BGR = ((0, 0, 0), (60, 180, 60), (40, 40, 230))


@dataclass(frozen=True)
class PhantomResult:
    """What was written.

    Attributes:
        out: the output folder.
        ground_truth: path of ground_truth.json.
        count: slices (stack) or regions (map).
        command: the pipeline command that measures the data with the reference model.
    """

    out: str
    ground_truth: str
    count: int
    command: str


def _figure(value: float) -> float:
    return float(f"{value:.12g}")


def _command(pipeline: str, source: str, model: str, output: str) -> str:
    """The ``segstream run`` line that measures generated data with its reference model."""
    return (
        f'segstream run --pipeline {pipeline} --source "{source}" '
        f"--set \"{pipeline}.artifact='{os.path.abspath(model)}'\" --output {shlex.quote(os.path.abspath(output))}"
    )


def _write_json(path: str, doc: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


def _phantom_geometry(size_hw: tuple[int, int], count: int, spacing_mm: float, thickness_mm: float) -> dict:
    """Where the phantom's shapes are, in mm from the centre of the stack (x right, y down, z
    along the slices): organ semi-axes a, b, c; a vessel along z; a lesion sphere inside the organ."""
    h, w = size_hw
    a, b, c = 0.35 * w * spacing_mm, 0.3 * h * spacing_mm, 0.4 * count * thickness_mm
    small = min(a, b, c)
    return {
        "organ_semi_axes": (a, b, c),
        "vessel_centre": (-0.5 * a, 0.0),
        "vessel_radius": 0.08 * min(a, b),
        "lesion_centre": (0.3 * a, 0.2 * b, 0.25 * c),
        "lesion_radius": 0.3 * small,
    }


def phantom_labels(size_hw: tuple[int, int], count: int, spacing_mm: float, thickness_mm: float) -> list[np.ndarray]:
    """The phantom's class ids per slice, each pixel classified by its centre.

    An ellipsoid organ (semi-axes 0.35 of the width, 0.3 of the height and 0.4 of the depth of
    the stack) with a vessel (background) through it along the slice axis, so its slices are
    rings with a hole, and a spherical lesion wholly inside it (radius 0.3 of the smallest
    semi-axis, its centre 0.44 of the way out in the organ's own scale). Slice i is centred at
    z = (i - (count - 1) / 2) x thickness.
    """
    h, w = size_hw
    g = _phantom_geometry(size_hw, count, spacing_mm, thickness_mm)
    a, b, c = g["organ_semi_axes"]
    (vx, vy), vr = g["vessel_centre"], g["vessel_radius"]
    (lx, ly, lz), lr = g["lesion_centre"], g["lesion_radius"]
    x, y = np.meshgrid(
        (np.arange(w) + 0.5) * spacing_mm - w * spacing_mm / 2, (np.arange(h) + 0.5) * spacing_mm - h * spacing_mm / 2
    )
    out = []
    for i in range(count):
        z = (i - (count - 1) / 2) * thickness_mm
        ids = np.zeros((h, w), np.uint8)
        ids[(x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2 <= 1] = 1
        ids[(x - vx) ** 2 + (y - vy) ** 2 <= vr**2] = 0
        ids[(x - lx) ** 2 + (y - ly) ** 2 + (z - lz) ** 2 <= lr**2] = 2
        out.append(ids)
    return out


def write_slices(
    out: str,
    *,
    count: int = 40,
    size_hw: tuple[int, int] = (256, 256),
    spacing_mm: float = 0.7,
    thickness_mm: float = 2.5,
    seed: int = 0,
) -> PhantomResult:
    """Writes the phantom's slice stack, labels, reference model and ground truth (module notes).

    Args:
        out: the output folder.
        count: slices (>= 1).
        size_hw: (H, W) of each slice.
        spacing_mm: pixel spacing (square pixels), mm.
        thickness_mm: slice thickness and distance between slice centres, mm.
        seed: noise seed (noise within +-40 of the stored values, far from any threshold).
    """
    require_onnx()
    labels = phantom_labels(size_hw, count, spacing_mm, thickness_mm)
    rng = np.random.default_rng(seed)
    for sub in ("slices", "labels"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    pixel_mm2 = spacing_mm * spacing_mm
    slices = []
    totals = {name: 0 for name in SLICE_CLASSES[1:]}
    for i, ids in enumerate(labels):
        name = f"slice_{i + 1}.png"
        values = np.asarray(SLICE_VALUES, np.int32)[ids] + rng.integers(-40, 41, ids.shape)
        cv2.imwrite(os.path.join(out, "slices", name), values.astype(np.uint16))
        cv2.imwrite(os.path.join(out, "labels", name), ids)
        pixels = {n: int(np.count_nonzero(ids == k)) for k, n in enumerate(SLICE_CLASSES) if k}
        for n, p in pixels.items():
            totals[n] += p
        slices.append(
            {
                "index": i,
                "file": name,
                "pixels": {n: p for n, p in pixels.items() if p},
                "areas_mm2": {n: _figure(p * pixel_mm2) for n, p in pixels.items() if p},
            }
        )
    lesion_r = _phantom_geometry(size_hw, count, spacing_mm, thickness_mm)["lesion_radius"]
    model = write_threshold_model(
        os.path.join(out, "reference_model.onnx"),
        SLICE_THRESHOLDS,
        SLICE_CLASSES,
        PALETTE_BGR,
        model="phantom_reference",
    )
    source = (
        f"stack://{os.path.abspath(os.path.join(out, 'slices'))}?spacing={spacing_mm:g}x{spacing_mm:g}"
        f"&thickness={thickness_mm:g}&window={SLICE_WINDOW[0]:g},{SLICE_WINDOW[1]:g}"
    )
    command = _command("medical", source, model, os.path.join(out, "run", "slices.jsonl"))
    volumes = {n: _figure(p * pixel_mm2 * thickness_mm) for n, p in totals.items()}
    doc = {
        "kind": "slices",
        "classes": list(SLICE_CLASSES),
        "stored_values": dict(zip(SLICE_CLASSES, SLICE_VALUES)),
        "spacing_mm": [spacing_mm, spacing_mm],
        "thickness_mm": thickness_mm,
        "window": list(SLICE_WINDOW),
        "slice_count": count,
        "slices": slices,
        "pixels": totals,
        "volumes_mm3": volumes,
        "volumes_ml": {n: _figure(v / 1000.0) for n, v in volumes.items()},
        "lesion_sphere": {"radius_mm": _figure(lesion_r), "volume_ml": _figure(4 / 3 * math.pi * lesion_r**3 / 1000.0)},
        "note": "areas and volumes are the drawn pixels x spacing (x thickness): what the medical pipeline must "
        "report with the reference model; the sphere's own volume shows what slices and pixels cost",
        "reference_model": os.path.abspath(model),
        "source": source,
        "command": command,
    }
    path = os.path.join(out, "ground_truth.json")
    _write_json(path, doc)
    return PhantomResult(out, path, count, command)


# --- maps ------------------------------------------------------------------------------------------


def _shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A bool mask of a shape that breaks easy assumptions about outlines, about ``size`` px across."""
    s = max(size, 9)
    m = np.zeros((s, s), bool)
    t = max(s // 4, 2)  # arm / wall thickness
    if kind == "rectangle":
        m[: int(s * rng.uniform(0.4, 1.0)), :] = True
    elif kind == "L":
        m[:, :t] = True
        m[-t:, :] = True
    elif kind == "plus":
        m[s // 2 - t // 2 : s // 2 - t // 2 + t, :] = True
        m[:, s // 2 - t // 2 : s // 2 - t // 2 + t] = True
    elif kind == "courtyard":  # a ring with a hole
        m[:, :] = True
        m[t:-t, t:-t] = False
    elif kind == "line":  # one pixel wide
        m[s // 2, :] = True
    elif kind == "diagonal":  # five pixels touching only at corners: five regions
        m[np.arange(5), np.arange(5)] = True
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return m


MAP_SHAPES = ("rectangle", "L", "plus", "courtyard", "line", "diagonal")


def map_labels(size_hw: tuple[int, int], seed: int = 0, cell: int = 160) -> np.ndarray:
    """Class ids of a generated map: one shape per ``cell`` x ``cell`` cell in turn (rectangles,
    L-shapes, crosses, courtyards with holes, one-pixel lines, diagonal pixel chains), of random
    class, size and offset, some of them cut by the map's border, and a field along the top edge."""
    h, w = size_hw
    rng = np.random.default_rng(seed)
    ids = np.zeros((h, w), np.uint8)
    ids[: max(h // 50, 1), : w // 3] = 1  # touches the top border
    k = 0
    for y in range(0, h, cell):
        for x in range(0, w, cell):
            kind = MAP_SHAPES[k % len(MAP_SHAPES)]
            k += 1
            size = int(rng.integers(cell // 3, cell - 8))
            m = _shape(kind, size, rng)
            oy, ox = y + int(rng.integers(0, cell - size // 2)), x + int(rng.integers(0, cell - size // 2))
            mh, mw = min(m.shape[0], h - oy), min(m.shape[1], w - ox)
            if mh <= 0 or mw <= 0:
                continue
            view = ids[oy : oy + mh, ox : ox + mw]
            view[m[:mh, :mw]] = int(rng.integers(1, len(MAP_CLASSES)))
    return ids


def write_map(out: str, *, size_hw: tuple[int, int] = (2000, 3000), gsd_m: float = 0.5, seed: int = 0) -> PhantomResult:
    """Writes a generated map, its labels, reference model and ground truth (module notes).

    Args:
        out: the output folder.
        size_hw: (H, W) of the map.
        gsd_m: ground sampling distance the ground truth's m² are given at.
        seed: layout and noise seed (noise within +-20 grey levels, far from any threshold).
    """
    require_onnx()
    ids = map_labels(size_hw, seed)
    rng = np.random.default_rng(seed + 1)
    grey = np.clip(np.asarray(MAP_LEVELS, np.int32)[ids] + rng.integers(-20, 21, ids.shape), 0, 255)
    os.makedirs(out, exist_ok=True)
    cv2.imwrite(os.path.join(out, "map.png"), cv2.cvtColor(grey.astype(np.uint8), cv2.COLOR_GRAY2BGR))
    cv2.imwrite(os.path.join(out, "labels.png"), ids)
    pixel_m2 = gsd_m * gsd_m
    classes, regions = {}, []
    for k, name in enumerate(MAP_CLASSES):
        if k == 0:
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats((ids == k).astype(np.uint8), connectivity=4)
        pixels = int(np.count_nonzero(ids == k))
        classes[name] = {"pixels": pixels, "area_m2": _figure(pixels * pixel_m2), "regions": n - 1}
        for i in range(1, n):
            x, y, bw, bh, count = (int(v) for v in stats[i])
            holes = _holes(comp[y : y + bh, x : x + bw] == i)
            regions.append(
                {
                    "class_name": name,
                    "bbox_xywh": [x, y, bw, bh],
                    "pixels": count,
                    "area_m2": _figure(count * pixel_m2),
                    "holes": holes,
                }
            )
    model = write_threshold_model(
        os.path.join(out, "reference_model.onnx"), MAP_THRESHOLDS, MAP_CLASSES, PALETTE_BGR, model="map_reference"
    )
    source = f"tiles://{os.path.abspath(os.path.join(out, 'map.png'))}?tile=512x512&gsd={gsd_m:g}"
    command = _command("satellite", source, model, os.path.join(out, "run", "tiles.jsonl"))
    doc = {
        "kind": "tiles",
        "classes": list(MAP_CLASSES),
        "grey_levels": dict(zip(MAP_CLASSES, MAP_LEVELS)),
        "size_hw": list(size_hw),
        "gsd_m": gsd_m,
        "areas_m2": {n: c["area_m2"] for n, c in classes.items()},
        "per_class": classes,
        "regions": regions,
        "note": "regions are 4-connected (pixels touching at a corner only are separate), one GeoJSON polygon "
        "each; a polygon's area (exterior minus holes) must equal its pixels x GSD²",
        "reference_model": os.path.abspath(model),
        "source": source,
        "command": command,
    }
    path = os.path.join(out, "ground_truth.json")
    _write_json(path, doc)
    return PhantomResult(out, path, len(regions), command)


def _holes(region: np.ndarray) -> int:
    """Holes of a region: 8-connected background parts it encloses (not touching its box's edge)."""
    padded = np.pad(~region, 1, constant_values=True).astype(np.uint8)
    n, comp = cv2.connectedComponents(padded, connectivity=8)
    return int(n - 2) if n > 1 else 0  # the part that touches the padding is the outside
