"""COCO box and mask AP of any instance predictor (YOLACT, Mask R-CNN) with pycocotools (the
official ``eval.py`` metrics), and the per-class figures from a finished ``COCOeval``.

Torch-free (the demo uses it too): a predictor is any ``image_bgr -> Instances`` callable.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import numpy as np

from segstream.pipelines.tasks.results import Instances
from segstream.stream.progress import count_line, write_line


def per_class_ap(ev, names_by_category_id: dict[int, str]) -> tuple[dict[str, float], dict[str, float]]:
    """AP50 and AP (IoU .50:.95) per category, all areas, 100 detections, from ``ev.eval``.

    Args:
        ev: a ``COCOeval`` after ``evaluate()`` and ``accumulate()``.
        names_by_category_id: category id -> name.

    Returns:
        ({name: AP50}, {name: AP}), in [0, 1]; 0.0 for a category with nothing to score.
    """
    prec = ev.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    ap50, ap = {}, {}
    for k, cat_id in enumerate(ev.params.catIds):
        name = names_by_category_id[cat_id]
        p50, pall = prec[0, :, k, 0, -1], prec[:, :, k, 0, -1]
        ap50[name] = round(float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0, 4)
        ap[name] = round(float(pall[pall > -1].mean()) if (pall > -1).any() else 0.0, 4)
    return ap50, ap


def per_class_ap50_by_area(ev, names_by_category_id: dict[int, str]) -> dict[str, dict[str, float | None]]:
    """AP50 per COCO area range ("small" < 32², "medium" < 96², "large") and category.

    Returns:
        {area: {name: AP50 or None where the range has no ground truth of that category}}.
    """
    prec = ev.eval["precision"]
    out: dict[str, dict[str, float | None]] = {}
    for a, area in enumerate(ev.params.areaRngLbl):
        if area == "all":
            continue
        row = {}
        for k, cat_id in enumerate(ev.params.catIds):
            p50 = prec[0, :, k, a, -1]
            row[names_by_category_id[cat_id]] = round(float(p50[p50 > -1].mean()), 4) if (p50 > -1).any() else None
        out[area] = row
    return out


def coco_results(inst: Instances, image_id: int, category_ids) -> list[dict]:
    """COCO result entries (bbox [x, y, w, h] pixels, compressed RLE) for one image."""
    from pycocotools import mask as mask_util

    out = []
    for i in range(len(inst)):
        x1, y1, x2, y2 = (float(v) for v in inst.boxes_xyxy[i])
        item = {
            "image_id": int(image_id),
            "category_id": int(category_ids[int(inst.labels[i])]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(inst.scores[i]),
        }
        if inst.masks is not None:
            rle = mask_util.encode(np.asfortranarray(inst.masks[i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            item["segmentation"] = rle
        out.append(item)
    return out


def evaluate_coco(predict: Callable[[np.ndarray], Instances], data, progress: bool = False) -> dict:
    """Runs ``predict`` on every image of ``data`` and scores it.

    Args:
        predict: BGR image -> ``Instances`` with labels indexing ``data.category_ids``.
        data: a COCO dataset (``models.yolact.data.CocoInstances``: ``coco``, ``all_image_ids``,
            ``load(image_id).image_bgr``, ``category_ids``).

    Returns:
        {"box": {"AP", "AP50", "AP75", "per_class_AP50", "per_class_AP", "per_class_AP50_by_area"},
        "mask": {...}, "images": n,
        "detections": m}; AP in [0, 1]
        (-1 where COCOeval has nothing to score).
    """
    from pycocotools.cocoeval import COCOeval

    results = []
    ids = data.all_image_ids
    for k, image_id in enumerate(ids):
        sample_img = data.load(image_id).image_bgr
        results.extend(coco_results(predict(sample_img), image_id, data.category_ids))
        if progress:
            write_line(count_line("eval", k + 1, len(ids)), final=k + 1 == len(ids))
    figures: dict = {"images": len(ids), "detections": len(results)}
    for kind, iou_type in (("box", "bbox"), ("mask", "segm")):
        if not results or (kind == "mask" and "segmentation" not in results[0]):
            figures[kind] = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            # One result list per kind, as the official eval writes: pycocotools would replace
            # masks by box polygons when an entry has both.
            drop = "segmentation" if kind == "box" else "bbox"
            dt = data.coco.loadRes([{k: v for k, v in r.items() if k != drop} for r in results])
            ev = COCOeval(data.coco, dt, iou_type)
            ev.params.imgIds = ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        names = {c["id"]: c["name"] for c in data.coco.loadCats(ev.params.catIds)}
        ap50, ap = per_class_ap(ev, names)
        figures[kind] = {
            "AP": float(ev.stats[0]),
            "AP50": float(ev.stats[1]),
            "AP75": float(ev.stats[2]),
            "per_class_AP50": ap50,
            "per_class_AP": ap,
            "per_class_AP50_by_area": per_class_ap50_by_area(ev, names),
        }
    return figures
