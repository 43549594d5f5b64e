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
