"""Dense CRF: it runs, and it moves a misplaced class boundary towards the image edge."""

import numpy as np
import pytest

from segstream.pipelines.tasks.crf import CrfParams, CrfRefiner, dense_crf
from segstream.pipelines.tasks.results import SemanticMap
from segstream.stream.errors import ConfigError


def _toy(edge=40, predicted_edge=48, size_hw=(48, 96)):
    """Two flat colour regions split at ``edge``; soft probabilities that put the split at
    ``predicted_edge`` (a blurry, shifted prediction, as a stride-16 model gives)."""
    h, w = size_hw
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.float32)
    img[:, :edge] = (60, 60, 60)
    img[:, edge:] = (200, 180, 160)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    x = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    p1 = 1 / (1 + np.exp(-(x - predicted_edge) / 4.0))
    truth = (x >= edge).astype(np.uint8)
    return img, np.stack([1 - p1, p1]).astype(np.float32), truth


def test_crf_moves_the_boundary_to_the_image_edge():
    img, probs, truth = _toy()
    before = probs.argmax(0)
    q = dense_crf(img, probs, CrfParams(iterations=10, bilateral_weight=10))
    after = q.argmax(0)
    assert q.shape == probs.shape and np.allclose(q.sum(0), 1, atol=1e-4)
    assert (after != before).sum() > 0
    assert (after != truth).sum() < 0.7 * (before != truth).sum()
    # far from the boundary nothing changes
    assert (after[:, :30] == 0).all() and (after[:, 60:] == 1).all()


def test_crf_leaves_a_prediction_that_follows_the_edges_alone():
    img, _, truth = _toy()
    probs = np.stack([np.where(truth == 0, 0.8, 0.2), np.where(truth == 1, 0.8, 0.2)]).astype(np.float32)
    np.testing.assert_array_equal(dense_crf(img, probs).argmax(0), truth)


def test_refiner_needs_probabilities_and_recomputes_the_drivable_mask():
    img, probs, truth = _toy()
    ids = probs.argmax(0).astype(np.uint8)
    refiner = CrfRefiner()
    with pytest.raises(ConfigError, match="needs probabilities"):
        refiner(img, SemanticMap(ids, ("road", "car")))
    # probabilities at half resolution: resized to the image inside
    small = np.stack([p[::2, ::2] for p in probs])
    out = refiner(img, SemanticMap(ids, ("road", "car"), probabilities=small, drivable_mask=ids == 0))
    assert out.class_ids.shape == ids.shape and out.drivable_mask is not None
    np.testing.assert_array_equal(out.drivable_mask, out.class_ids == 0)
    assert refiner.last_ms is not None and refiner.last_ms > 0


def test_crf_params_are_validated():
    with pytest.raises(ConfigError, match="iterations must be >= 1"):
        CrfParams(iterations=0)
