"""The runtime's numpy pre/post-processing against the torch operations they stand for."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from segstream.models.semantic.zoo import IMAGENET_MEAN_255, IMAGENET_STD_255  # noqa: E402
from segstream.pipelines.tasks.road import labels_from_logits, preprocess_image  # noqa: E402


@pytest.mark.parametrize("size_hw", [(90, 120), (45, 60), (64, 96), (180, 250)])
def test_numpy_preprocess_matches_torch_resize_and_normalise(size_hw):
    img = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    got = preprocess_image(img, size_hw=size_hw, mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255, color_order="RGB")
    rgb = torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1)[None].float()
    ref = F.interpolate(rgb, size=size_hw, mode="bilinear", align_corners=False, antialias=False)
    ref = (ref - torch.tensor(IMAGENET_MEAN_255).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD_255).view(1, 3, 1, 1)
    # OpenCV resizes the uint8 image (rounding to whole grey levels), torch the float one:
    # at most one grey level apart, i.e. 1 / 57 after normalisation.
    np.testing.assert_allclose(got, ref.numpy(), atol=1.01 / 57.12, rtol=0)
    assert np.mean(np.abs(got - ref.numpy())) < 0.005


@pytest.mark.parametrize("frame_hw", [(90, 120), (37, 53), (360, 640)])
def test_numpy_postprocess_matches_torch_argmax_and_nearest(frame_hw):
    logits = np.random.default_rng(2).normal(size=(1, 19, 40, 60)).astype(np.float32)
    got = labels_from_logits(logits, frame_hw)
    ids = torch.from_numpy(logits).argmax(1, keepdim=True).float()
    ref = F.interpolate(ids, size=frame_hw, mode="nearest")[0, 0].to(torch.uint8).numpy()
    assert got.dtype == np.uint8 and got.shape == frame_hw
    np.testing.assert_array_equal(got, ref)
