"""Mask R-CNN's torch-free pre/post-processing against torchvision's own transform and paste."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.models.maskrcnn.verify import torch_backend  # noqa: E402
from segstream.models.maskrcnn.zoo import load_maskrcnn  # noqa: E402
from segstream.models.yolact.verify import mask_ious, sample_image  # noqa: E402
from segstream.pipelines.tasks.maskrcnn import (  # noqa: E402
    MaskRCNNFrameInfo,
    MaskRCNNPostprocess,
    MaskRCNNPreprocess,
    MaskRCNNRunner,
    model_size_hw,
    paste_masks,
)
from segstream.stream.backends.base import ArtifactMetadata  # noqa: E402
from segstream.stream.errors import ModelError  # noqa: E402


def _boxes(rng, n, size_hw):
    """Boxes as the model gives them (clipped to the image): inside, touching each border,
    tiny (< 1 px), the whole image. (torchvision's paste fails on boxes wholly outside.)"""
    h, w = size_hw
    x1 = rng.uniform(-0.3 * w, w, n)
    y1 = rng.uniform(-0.3 * h, h, n)
    bw = rng.choice([0.4, 3.0, 0.2 * w, 0.7 * w, 1.5 * w], n) * rng.uniform(0.5, 1.0, n)
    bh = rng.choice([0.6, 5.0, 0.2 * h, 0.6 * h, 1.4 * h], n) * rng.uniform(0.5, 1.0, n)
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh], 1)
    return np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)


@pytest.mark.parametrize("size_hw,seed", [((120, 160), 0), ((37, 301), 1), ((480, 640), 2)])
def test_paste_matches_torchvision(size_hw, seed):
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    rng = np.random.default_rng(seed)
    n = 40
    probs = rng.uniform(0, 1, (n, 28, 28)).astype(np.float32)
    probs = np.clip(probs + np.linspace(-0.4, 0.4, 28, dtype=np.float32)[None, None], 0, 1)  # structure, not noise only
    boxes = _boxes(rng, n, size_hw)
    ref = paste_masks_in_image(torch.from_numpy(probs)[:, None], torch.from_numpy(boxes), size_hw)[:, 0].numpy() > 0.5
    got = paste_masks(probs, boxes, size_hw)
    assert got.shape == ref.shape == (n, *size_hw) and got.dtype == bool
    # Sums in another order may flip a pixel whose probability is 0.5 to within 1e-7.
    assert (got != ref).sum() <= 2, f"{(got != ref).sum()} pixels differ"
    assert ref.any(axis=(1, 2)).sum() > n // 2  # the comparison covered real masks


def test_paste_of_nothing():
    out = paste_masks(np.zeros((0, 28, 28), np.float32), np.zeros((0, 4), np.float32), (10, 20))
    assert out.shape == (0, 10, 20) and out.dtype == bool


@pytest.mark.parametrize("frame_hw", [(720, 1280), (480, 640), (333, 500), (1080, 1920), (100, 3000), (800, 800)])
@pytest.mark.parametrize("min_max", [(800, 1333), (128, 224), (550, 550)])
def test_resize_rule_matches_torchvision(frame_hw, min_max):
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    t = GeneralizedRCNNTransform(min_max[0], min_max[1], [0.0] * 3, [1.0] * 3).eval()
    images, _ = t([torch.zeros(3, *frame_hw)])
    assert model_size_hw(frame_hw, *min_max) == tuple(images.image_sizes[0])


def test_preprocess_matches_torchvision_transform():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    img = sample_image((150, 211), seed=3)
    pre = MaskRCNNPreprocess(128, 224)
    feeds, info = pre(img)
    t = GeneralizedRCNNTransform(128, 224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
    rgb = torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
    images, _ = t([rgb])
    h, w = info.input_size_hw
    assert images.image_sizes[0] == (h, w) and info.size_hw == (150, 211)
    ref = images.tensors[0, :, :h, :w].numpy()
    assert feeds["image"].shape == (1, 3, h, w) and feeds["image"].dtype == np.float32
    assert np.abs(feeds["image"][0] - ref).max() < 1e-4


@pytest.fixture(scope="module")
def tiny():
    return load_maskrcnn(None, "maskrcnn_tiny", num_classes=4)


@pytest.mark.parametrize("size_hw", [(150, 211), (240, 180)])
def test_runner_reproduces_torchvision_forward(tiny, size_hw):
    """numpy resize + export graph + numpy paste == torchvision's MaskRCNN.forward with its paste."""
    img = sample_image(size_hw, seed=5)
    inst = MaskRCNNRunner(torch_backend(tiny))(img)
    rgb = torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        ref = tiny.model([rgb])[0]
    assert len(inst) == len(ref["scores"]) > 10
    assert np.array_equal(inst.labels, ref["labels"].numpy() - 1)
    np.testing.assert_allclose(inst.scores, ref["scores"].numpy(), atol=1e-4)
    np.testing.assert_allclose(inst.boxes_xyxy, ref["boxes"].numpy(), atol=0.05)
    ious = mask_ious(inst.masks, ref["masks"][:, 0].numpy() > 0.5)
    assert ious.min() > 0.99
    assert inst.masks.shape[1:] == size_hw and inst.class_names == tiny.class_names


def test_postprocess_threshold_top_k_and_labels():
    rng = np.random.default_rng(0)
    scores = np.array([0.9, 0.2, 0.7, 0.05, 0.5], np.float32)
    outputs = {
        "boxes": np.array([[2, 2, 20, 30]] * 5, np.float32),
        "labels": np.array([1, 2, 3, 1, 2], np.int64),
        "scores": scores,
        "mask_probs": rng.uniform(0, 1, (5, 28, 28)).astype(np.float32),
    }
    info = MaskRCNNFrameInfo(size_hw=(100, 200), input_size_hw=(50, 100))
    inst = MaskRCNNPostprocess(("a", "b", "c"), score_threshold=0.3, max_detections=2)(outputs, info)
    assert inst.scores.tolist() == pytest.approx([0.9, 0.7])
    assert inst.labels.tolist() == [0, 2] and inst.label_names() == ["a", "c"]
    assert inst.boxes_xyxy[0].tolist() == [4, 4, 40, 60]  # x2 the input size
    assert inst.masks.shape == (2, 100, 200)
    assert not inst.masks[:, 61:].any() and not inst.masks[:, :, 41:].any()  # inside the (grown) box


def test_runner_refuses_another_model(tiny):
    from segstream.models.torch_backend import TorchBackend

    meta = ArtifactMetadata(
        model="yolact_tiny", task="instances", class_names=("a",), input_size_hw=(64, 64), mean=(0, 0, 0), std=(1, 1, 1)
    )
    be = TorchBackend(torch.nn.Identity(), input_names=["image"], output_names=["boxes"], metadata=meta)
    with pytest.raises(ModelError, match="expected a Mask R-CNN instance artifact, found model 'yolact_tiny'"):
        MaskRCNNRunner(be)
