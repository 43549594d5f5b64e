"""How well a YOLACT anchor set covers a COCO-format dataset's boxes, per class (a script, not
a test): for every ground-truth box, the best IoU any anchor reaches and how many anchors reach
the training's positive threshold (0.5). A box no anchor reaches trains from a single forced
match only, which is what left the embedded model's pedestrians unlearnt.

    .venv/bin/python bench/anchor_coverage.py --annotations data/synth_train/instances.json \\
        --input-size 512 --aspect-ratios 1,0.5,0.25 --square-anchors off

Anchors are those ``segstream train`` builds for ``--model`` (default yolact_tiny) with the same
options: the configuration's scales scaled to ``--input-size``, one scale per FPN level (P3-P7).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segstream.models.yolact.commands import training_config  # noqa: E402
from segstream.models.yolact.config import get_config  # noqa: E402
from segstream.pipelines.tasks.yolact import box_iou_batched, make_priors  # noqa: E402
from segstream.stream.errors import ConfigError  # noqa: E402


def corner_priors(cfg) -> np.ndarray:
    """(P, 4) x1y1x2y2 normalised priors for the configuration's input size (P3-P7, strides 8-128)."""
    sizes = [(math.ceil(cfg.max_size / s), math.ceil(cfg.max_size / s)) for s in (8, 16, 32, 64, 128)]
    pri = make_priors(
        sizes, [[s] for s in cfg.pred_scales], [list(cfg.aspect_ratios)] * len(sizes), cfg.max_size, cfg.square_anchors
    )
    return np.concatenate([pri[:, :2] - pri[:, 2:] / 2, pri[:, :2] + pri[:, 2:] / 2], 1)


def best_ious(boxes: np.ndarray, priors: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per box (x1y1x2y2, normalised): the best IoU over the priors and the number >= 0.5."""
    best, npos = [], []
    for i in range(0, len(boxes), chunk):
        iou = box_iou_batched(boxes[None, i : i + chunk], priors[None])[0]
        best.append(iou.max(1))
        npos.append((iou >= 0.5).sum(1))
    return np.concatenate(best), np.concatenate(npos)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", required=True, help="COCO instances JSON")
    ap.add_argument("--model", default="yolact_tiny")
    ap.add_argument("--input-size", type=int, help="square input size (default: the configuration's)")
    ap.add_argument("--aspect-ratios", help="comma-separated w/h ratios (default: the configuration's)")
    ap.add_argument("--square-anchors", choices=["on", "off"])
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)

    try:
        cfg = training_config(get_config(args.model), args.input_size, args.aspect_ratios, args.square_anchors)
    except ConfigError as exc:
        raise SystemExit(f"anchor_coverage: {exc}") from None
    with open(args.annotations, encoding="utf-8") as fh:
        coco = json.load(fh)
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_class: dict[str, list] = {}
    for a in coco["annotations"]:
        if a.get("iscrowd"):
            continue
        w, h = sizes[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        by_class.setdefault(names[a["category_id"]], []).append([x / w, y / h, (x + bw) / w, (y + bh) / h])
    priors = corner_priors(cfg)
    print(
        f"{cfg.name} at {cfg.max_size} px: scales {list(cfg.pred_scales)}, ratios {list(cfg.aspect_ratios)}, "
        f"square {cfg.square_anchors}, {len(priors)} anchors"
    )
    summary = {
        "model": cfg.name,
        "input_size": cfg.max_size,
        "aspect_ratios": list(cfg.aspect_ratios),
        "square_anchors": cfg.square_anchors,
        "classes": {},
    }
    for name, boxes in sorted(by_class.items()):
        best, npos = best_ious(np.asarray(boxes, np.float32), priors)
        row = {
            "boxes": len(boxes),
            "best_iou_median": float(np.median(best)),
            "reach_0.5": float((best >= 0.5).mean()),
            "positives_mean": float(npos.mean()),
        }
        summary["classes"][name] = row
        print(
            f"  {name:<10} {row['boxes']:>6} boxes  best IoU median {row['best_iou_median']:.2f}  "
            f"reached (>= 0.5) {row['reach_0.5'] * 100:.0f} %  positives per box {row['positives_mean']:.1f}"
        )
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
