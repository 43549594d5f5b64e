"""Per-class figures from a finished pycocotools ``COCOeval`` (torch-free: the demo uses it too)."""

from __future__ import annotations


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
