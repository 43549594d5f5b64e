"""Segmentation figures from a confusion matrix: mIoU, mean Dice, per-class IoU and Dice,
pixel accuracy (numpy; the demo, `segstream eval` and training all score with it)."""

from __future__ import annotations

import numpy as np

from segstream.pipelines.tasks.road import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates (ground truth, prediction) pixel counts.

    Args:
        num_classes: classes 0..C-1; ground-truth pixels equal to 255 or >= C are ignored.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        """prediction, target: same-shape integer class maps."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
        t = target.astype(np.int64).ravel()
        p = prediction.astype(np.int64).ravel()
        keep = (t != IGNORE_INDEX) & (t < self.num_classes) & (p < self.num_classes)
        idx = t[keep] * self.num_classes + p[keep]
        self.matrix += np.bincount(idx, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def iou(self) -> np.ndarray:
        """(C,) float64 IoU per class; NaN where the class is absent from both."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def dice(self) -> np.ndarray:
        """(C,) float64 Dice (F1) per class, 2TP / (2TP + FP + FN); NaN where the class is
        absent from both."""
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(0) + self.matrix.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 2 * tp / denom, np.nan)

    def summary(self, class_names=None) -> dict:
        """{"miou", "mean_dice", "pixel_accuracy", "per_class_iou": {name: iou},
        "per_class_dice": {name: dice}, "pixels"}; the means are over the classes present in
        ground truth or prediction."""
        total = int(self.matrix.sum())
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        iou, dice = self.iou(), self.dice()

        def mean(v: np.ndarray) -> float:
            return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

        def per_class(v: np.ndarray) -> dict[str, float]:
            return {names[i]: float(x) for i, x in enumerate(v) if np.isfinite(x)}

        return {
            "miou": mean(iou),
            "mean_dice": mean(dice),
            "pixel_accuracy": float(np.trace(self.matrix) / total) if total else float("nan"),
            "per_class_iou": per_class(iou),
            "per_class_dice": per_class(dice),
            "pixels": total,
        }
