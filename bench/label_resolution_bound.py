"""The best mIoU a semantic model could reach if its only loss were resolution (a script, not a
test): each ground-truth label map is turned into per-class masks, area-averaged down to a map
of the given size (a model's output stride times its input size), upsampled back bilinearly and
arg-maxed, then scored against itself with the usual per-class IoU.

    .venv/bin/python bench/label_resolution_bound.py --labels data/synth_val/labels --sizes 54x96,72x128,90x160

The embedded DeepLab decodes at stride 4 of 216x384, i.e. 54x96; what it loses beyond this
bound is the model's, not the resolution's.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segstream.models.semantic.metrics import ConfusionMatrix  # noqa: E402
from segstream.pipelines.tasks.road import CITYSCAPES_CLASSES  # noqa: E402


def bound(label_files: list[str], size_hw: tuple[int, int], num_classes: int) -> dict:
    """``ConfusionMatrix.summary`` (what ``segstream eval`` reports) of labels passed through a
    map of ``size_hw``."""
    cm = ConfusionMatrix(num_classes)
    for path in label_files:
        y = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if y is None:
            raise SystemExit(f"{path}: cannot read it as a label image")
        present = [c for c in np.unique(y) if c < num_classes]
        h, w = y.shape
        scores = np.stack(
            [
                cv2.resize(
                    cv2.resize((y == c).astype(np.float32), size_hw[::-1], interpolation=cv2.INTER_AREA),
                    (w, h),
                    interpolation=cv2.INTER_LINEAR,
                )
                for c in present
            ],
            -1,
        )
        cm.update(np.asarray(present)[scores.argmax(-1)], y)
    return cm.summary(CITYSCAPES_CLASSES[:num_classes])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", required=True, help="folder of train-id label PNGs (255 = ignore)")
    ap.add_argument("--sizes", default="54x96,72x128,90x160", help="comma-separated HxW map sizes")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N label files")
    args = ap.parse_args(argv)
    files = sorted(glob.glob(os.path.join(args.labels, "*.png")))
    if args.limit:
        files = files[: args.limit]
    if not files:
        raise SystemExit(f"{args.labels}: no .png label files")
    for text in args.sizes.split(","):
        h, w = (int(v) for v in text.lower().split("x"))
        result = bound(files, (h, w), len(CITYSCAPES_CLASSES))
        detail = ", ".join(f"{name} {v:.2f}" for name, v in result["per_class_iou"].items())
        print(f"{h}x{w}: mIoU {result['miou']:.3f} over {len(files)} maps ({detail})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
