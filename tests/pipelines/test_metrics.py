"""The confusion matrix and its figures (pipelines/tasks/metrics.py), on hand-counted maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segstream.pipelines.tasks.metrics import ConfusionMatrix


def test_counts_ignore_255_and_out_of_range_labels():
    target = np.array([[0, 0, 1, 255], [1, 1, 7, 0]], np.uint8)
    prediction = np.array([[0, 1, 1, 0], [1, 0, 1, 9]], np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(prediction, target)
    # kept pixels (gt, pred): (0,0) (0,1) (1,1) (1,1) (1,0); 255, gt 7 and pred 9 are left out
    assert cm.matrix.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]


def test_summary_figures_over_the_classes_present():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1, 1, 0, 1]]), np.array([[0, 0, 1, 1, 1]]))
    s = cm.summary(("road", "car", "sky"))
    # road: TP 1, FP 1, FN 1 -> IoU 1/3, Dice 1/2; car: TP 2, FP 1, FN 1 -> IoU 1/2, Dice 2/3; sky absent
    assert s["per_class_iou"] == pytest.approx({"road": 1 / 3, "car": 1 / 2})
    assert s["per_class_dice"] == pytest.approx({"road": 1 / 2, "car": 2 / 3})
    assert s["miou"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert s["mean_dice"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert s["pixel_accuracy"] == pytest.approx(3 / 5) and s["pixels"] == 5
    assert math.isnan(cm.iou()[2]) and math.isnan(cm.dice()[2])


def test_empty_matrix_has_nan_figures():
    s = ConfusionMatrix(2).summary()
    assert math.isnan(s["miou"]) and math.isnan(s["pixel_accuracy"]) and s["pixels"] == 0
    assert s["per_class_iou"] == {}


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"prediction \(2, 2\) and target \(2, 3\) differ in shape"):
        ConfusionMatrix(2).update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_the_torch_side_name_is_the_same_class():
    # training and `segstream eval` still import it from models/semantic/metrics.py
    from segstream.models.semantic.metrics import ConfusionMatrix as TorchSide

    assert TorchSide is ConfusionMatrix
