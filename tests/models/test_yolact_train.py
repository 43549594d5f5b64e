"""A tiny YOLACT learns a handful of generated images with the published losses."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.models.coco_eval import evaluate_coco  # noqa: E402
from segstream.models.yolact.config import get_config  # noqa: E402
from segstream.models.yolact.data import CocoInstances, SSDAugmentation  # noqa: E402
from segstream.models.yolact.loss import Target, YolactLoss, mask_targets, match  # noqa: E402
from segstream.models.yolact.model import Yolact  # noqa: E402
from segstream.models.yolact.runtime import torch_runner  # noqa: E402
from segstream.models.yolact.train import STEP_FRACTIONS, learning_rate, make_batch  # noqa: E402
from tests.models.yolact_helpers import trained_tiny, write_shapes_dataset  # noqa: E402


def test_tiny_model_learns_generated_shapes():
    net, cfg, report, ann, imgs = trained_tiny()
    first = np.mean(report.losses[:5])
    last = np.mean(report.losses[-10:])
    assert last < 0.25 * first, f"loss fell only from {first:.2f} to {last:.2f}"
    assert set(report.parts_end) == {"B", "C", "M", "S", "total"}
    figures = evaluate_coco(torch_runner(net), CocoInstances(ann, imgs))
    assert figures["mask"]["AP50"] > 0.5, figures
    assert figures["box"]["AP50"] > 0.5, figures


def test_soft_mask_targets_keep_thin_parts_that_hard_targets_drop():
    """A 2-pixel-wide bar at a 4x downsample: the official hard targets sample 2 of every 4 columns,
    so whether the bar survives depends on where it falls; soft targets give its covered fraction."""
    m = torch.zeros(2, 32, 32)
    m[0, 4:28, 4:6] = 1  # columns the bilinear taps miss
    m[1, 4:28, 5:7] = 1  # columns they hit
    hard = mask_targets(m, (8, 8), "hard")
    soft = mask_targets(m, (8, 8), "soft")
    assert hard[0].sum() == 0 and hard[1].sum() > 0
    for k in range(2):
        assert torch.allclose(soft[k].sum() * 16, m[k].sum())  # every covered pixel counted once
        assert soft[k].max() == 0.5  # two of a cell's four columns
    np.testing.assert_array_equal(mask_targets(torch.ones(1, 32, 32), (8, 8), "soft").numpy(), np.ones((1, 8, 8)))
    with pytest.raises(ValueError, match="'hard' or 'soft'"):
        mask_targets(m, (8, 8), "fuzzy")


def test_loss_with_soft_mask_targets_trains():
    from dataclasses import replace

    net, cfg, _, ann, imgs = trained_tiny()
    soft = replace(cfg, mask_targets="soft")
    data = CocoInstances(ann, imgs)
    x, targets = make_batch([data.load(i) for i in data.all_image_ids[:2]], soft, None)
    net.train()
    losses = YolactLoss(soft)(net(x), targets)
    hard = YolactLoss(cfg)(net(x), targets)
    assert torch.isfinite(losses["M"]) and losses["M"] != hard["M"]
    losses["total"].backward()


def test_matching_thresholds_and_forced_best_prior():
    cfg = get_config("yolact_tiny")
    priors = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.3, 0.3, 0.5, 0.5], [0.9, 0.1, 0.1, 0.1]])
    # GT 0 covers prior 0 exactly; GT 1 is small and overlaps no prior by 0.4 but gets its best one.
    truths = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.8, 0.0, 1.0, 0.25]])  # GT 1 vs prior 3: IoU 0.2
    labels = torch.tensor([2, 0])
    loc_t, conf_t, idx_t, _ = match(cfg, truths, labels, None, priors)
    assert conf_t.tolist()[0] == 3 and conf_t.tolist()[3] == 1  # forced match of GT 1
    assert conf_t.tolist()[1] == 0  # IoU 0 -> background
    iou_2 = (0.45 * 0.45) / (0.25 + 0.25 - 0.45 * 0.45)  # prior 2 vs GT 0: 0.68 -> positive
    assert iou_2 >= 0.5 and conf_t.tolist()[2] == 3
    torch.testing.assert_close(loc_t[0], torch.zeros(4), atol=1e-6, rtol=0)
    crowd = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    _, conf_c, _, _ = match(cfg, truths, labels, crowd, priors)
    assert conf_c.tolist()[1] == -1  # background prior inside a crowd region becomes neutral


def test_hard_negative_mining_uses_three_negatives_per_positive():
    cfg = get_config("yolact_tiny")
    loss = YolactLoss(cfg)
    conf = torch.randn(1, 20, 81)
    conf_t = torch.zeros(1, 20, dtype=torch.long)
    conf_t[0, 3] = 5
    conf_t[0, 7] = -1
    full = loss._ohem_conf(conf, conf_t, conf_t > 0)
    ce = torch.nn.functional.cross_entropy(conf[0], conf_t[0].clamp(min=0), reduction="none")
    mining = torch.logsumexp(conf[0], 1) - conf[0, :, 0]
    mining[3] = 0
    mining[7] = 0
    negs = mining.argsort(descending=True)[:3]
    torch.testing.assert_close(full, ce[3] + ce[negs].sum())


def test_losses_are_finite_with_crowds_and_empty_images():
    cfg = get_config("yolact_tiny")
    net = Yolact(cfg).train()
    out = net(torch.randn(2, 3, 160, 160))
    m = torch.zeros(2, 160, 160)
    m[0, 20:60, 30:90] = 1
    m[1, 100:150, 100:150] = 1
    t0 = Target(
        boxes=torch.tensor([[30 / 160, 20 / 160, 90 / 160, 60 / 160], [0.6, 0.6, 0.95, 0.95]]),
        labels=torch.tensor([1, 0]),
        masks=m,
        num_crowds=1,
    )
    t1 = Target(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long), masks=torch.zeros(0, 160, 160))
    losses = YolactLoss(cfg)(out, [t0, t1])
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()


def test_schedule_warms_up_then_steps():
    assert learning_rate(0, 1e-3, 1000, 100) == pytest.approx(1e-4)
    assert learning_rate(100, 1e-3, 1000, 100) == pytest.approx(1e-3)
    assert learning_rate(int(STEP_FRACTIONS[0] * 1000), 1e-3, 1000, 100) == pytest.approx(1e-4)
    assert learning_rate(999, 1e-3, 1000, 100) == pytest.approx(1e-7)


def test_augmentation_keeps_masks_boxes_and_image_aligned(tmp_path):
    ann, imgs = write_shapes_dataset(str(tmp_path), 3, seed=5)
    data = CocoInstances(ann, imgs)
    aug = SSDAugmentation(rng=np.random.default_rng(0))
    for image_id in data.image_ids:
        s = data.load(image_id)
        for _ in range(5):
            img, masks, boxes, labels, crowds = aug(
                s.image_bgr.astype(np.float32), s.masks, s.boxes, s.labels, s.num_crowds
            )
            assert img.shape[:2] == masks.shape[1:] and len(masks) == len(boxes) == len(labels)
            for m, b in zip(masks, boxes):
                ys, xs = np.nonzero(m)
                if len(xs):  # the mask lies within its (clipped) box
                    assert xs.min() >= b[0] - 1 and xs.max() <= b[2] + 1
                    assert ys.min() >= b[1] - 1 and ys.max() <= b[3] + 1
