"""The numpy post-processing (runtime) agrees with the torch reference of the official code."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.models.yolact.data import CocoInstances  # noqa: E402
from segstream.models.yolact.detect import instances_from_outputs  # noqa: E402
from segstream.models.yolact.runtime import torch_runner  # noqa: E402
from segstream.models.yolact.verify import mask_ious  # noqa: E402
from segstream.pipelines.tasks.yolact import YolactFrameInfo, YolactPostprocess, decode_boxes, make_priors  # noqa: E402
from tests.models.yolact_helpers import trained_tiny  # noqa: E402


def synthetic_outputs(rng, objects=40, proto_hw=(138, 138), k=32, num_classes=80):
    """Network-like outputs at 550: peaked scores on priors near a few objects, background elsewhere."""
    sizes = [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]
    priors = make_priors(sizes, [[24], [48], [96], [192], [384]], [[1, 0.5, 2]] * 5, 550)
    p = len(priors)
    loc = rng.normal(0, 0.5, (p, 4)).astype(np.float32)
    logits = rng.normal(0, 1, (p, num_classes + 1)).astype(np.float32)
    logits[:, 0] += 5
    centres = rng.uniform(0.05, 0.95, (objects, 2))
    classes = rng.integers(1, num_classes + 1, objects)
    for c, cls in zip(centres, classes):
        near = np.flatnonzero(np.abs(priors[:, :2] - c).max(1) < 0.04)
        logits[near, cls] += rng.uniform(3, 9, len(near))
    scores = np.exp(logits - logits.max(1, keepdims=True))
    scores = (scores / scores.sum(1, keepdims=True)).astype(np.float32)
    coeffs = np.tanh(rng.normal(0, 1, (p, k))).astype(np.float32)
    protos = np.maximum(rng.normal(0, 1, (*proto_hw, k)), 0).astype(np.float32)
    return loc, priors, scores, coeffs, protos


def assert_same_instances(a, b):
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_allclose(a.boxes_xyxy, b.boxes_xyxy, atol=1.0)  # truncation of equal floats
    assert (np.abs(a.boxes_xyxy - b.boxes_xyxy) > 0).mean() < 0.02
    assert mask_ious(a.masks, b.masks).min() > 0.99


@pytest.mark.parametrize(
    "seed, size_hw, score_threshold", [(0, (720, 1280), 0.0), (1, (333, 517), 0.3), (2, (1080, 720), 0.05)]
)
def test_numpy_equals_torch_reference(seed, size_hw, score_threshold):
    rng = np.random.default_rng(seed)
    loc, priors, scores, coeffs, protos = synthetic_outputs(rng)
    outs = {
        "boxes": decode_boxes(loc, priors)[None],
        "scores": scores[None],
        "coeffs": coeffs[None],
        "protos": protos[None],
    }
    ours = YolactPostprocess(score_threshold=score_threshold)(outs, YolactFrameInfo(size_hw, (550, 550)))
    ref = instances_from_outputs(
        {
            "loc": torch.from_numpy(loc)[None],
            "conf": torch.from_numpy(scores)[None],
            "mask": torch.from_numpy(coeffs)[None],
            "proto": torch.from_numpy(protos)[None],
            "priors": torch.from_numpy(priors),
        },
        size_hw,
        score_threshold=score_threshold,
    )
    assert_same_instances(ours, ref)
    assert (ours.masks.reshape(len(ours), -1).sum(1) > 0).mean() > 0.5  # the masks are not trivially empty


def test_mask_threshold_numpy_equals_torch_and_lower_grows_masks():
    rng = np.random.default_rng(5)
    loc, priors, scores, coeffs, protos = synthetic_outputs(rng)
    outs = {
        "boxes": decode_boxes(loc, priors)[None],
        "scores": scores[None],
        "coeffs": coeffs[None],
        "protos": protos[None],
    }
    info = YolactFrameInfo((360, 640), (550, 550))
    low = YolactPostprocess(mask_threshold=0.35)(outs, info)
    ref = instances_from_outputs(
        {
            "loc": torch.from_numpy(loc)[None],
            "conf": torch.from_numpy(scores)[None],
            "mask": torch.from_numpy(coeffs)[None],
            "proto": torch.from_numpy(protos)[None],
            "priors": torch.from_numpy(priors),
        },
        (360, 640),
        mask_threshold=0.35,
    )
    assert_same_instances(low, ref)
    default = YolactPostprocess()(outs, info)
    assert not (default.masks & ~low.masks).any()  # a lower threshold only adds pixels
    assert low.masks.sum() > default.masks.sum()
    with pytest.raises(ValueError, match="mask_threshold"):
        YolactPostprocess(mask_threshold=1.5)


def test_trained_model_numpy_equals_torch_reference():
    net, cfg, _, ann, imgs = trained_tiny()
    data = CocoInstances(ann, imgs)
    img = data.load(data.image_ids[0]).image_bgr
    ours = torch_runner(net)(img)
    runner = torch_runner(net)
    feeds, info = runner.preprocess(img)
    with torch.no_grad():
        out = net(torch.from_numpy(feeds["image"]))
    ref = instances_from_outputs(out, info.size_hw, cfg.class_names)
    assert_same_instances(ours, ref)
    assert ours.scores[0] > 0.5 and ours.class_names == cfg.class_names


@pytest.mark.parametrize("size_hw", [(720, 1280), (333, 517), (100, 90)])
def test_preprocess_matches_the_official_torch_transform(size_hw):
    """FastBaseTransform: float BGR -> F.interpolate bilinear (no antialias) -> BGR mean/std -> RGB."""
    import torch.nn.functional as F

    from segstream.pipelines.tasks.yolact import YolactPreprocess

    img = np.random.default_rng(0).integers(0, 256, (*size_hw, 3), dtype=np.uint8)
    ours = YolactPreprocess()(img)[0]["image"]
    t = F.interpolate(
        torch.from_numpy(img).float()[None].permute(0, 3, 1, 2), (550, 550), mode="bilinear", align_corners=False
    )
    t = (t - torch.tensor([103.94, 116.78, 123.68]).view(1, 3, 1, 1)) / torch.tensor([57.38, 57.12, 58.40]).view(
        1, 3, 1, 1
    )
    t = t[:, (2, 1, 0)]
    # OpenCV's float resize differs from torch's by a few hundredths of a grey level at most.
    np.testing.assert_allclose(ours, t.numpy(), atol=1e-3, rtol=0)
