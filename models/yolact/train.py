"""Training and fine-tuning YOLACT (official ``train.py`` schedule, scaled to the batch size).

SGD (momentum 0.9, weight decay 5e-4), learning rate 1e-3 x batch/8 unless given, linear
warm-up from lr/10, x0.1 steps at 35 %, 75 %, 87.5 % and 93.75 % of the iterations (the
official 280k/600k/700k/750k of 800k). Backbone BatchNorm is frozen below a batch of 6 (not for
the tiny backbone, which has no pretrained statistics).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from models.yolact.data import CocoInstances, SSDAugmentation, to_network
from models.yolact.loss import Target, YolactLoss
from models.yolact.model import Yolact

log = logging.getLogger(__name__)

STEP_FRACTIONS = (280 / 800, 600 / 800, 700 / 800, 750 / 800)


@dataclass
class TrainReport:
    """Per-iteration total losses and the mean of each part over the last 10 % of iterations."""

    losses: list[float] = field(default_factory=list)
    parts_end: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def learning_rate(it: int, base_lr: float, iters: int, warmup_iters: int) -> float:
    """Learning rate at iteration ``it`` (0-based)."""
    if it < warmup_iters:
        return base_lr / 10 + (base_lr - base_lr / 10) * it / warmup_iters
    steps = sum(it >= int(f * iters) for f in STEP_FRACTIONS)
    return base_lr * 0.1 ** steps


def _prepare(sample, cfg, augment: SSDAugmentation | None):
    """One sample -> (image (3, S, S) float32, Target). Augmentation is retried (up to 10 times)
    until a non-crowd instance survives, as the official loader re-draws such images."""
    img = sample.image_bgr.astype(np.float32)
    got = None
    for _ in range(10 if augment is not None else 0):
        a_img, a_masks, a_boxes, a_labels, a_nc = augment(img, sample.masks, sample.boxes, sample.labels,
                                                          sample.num_crowds)
        x, m, nb, keep = to_network(a_img, a_masks, a_boxes, cfg.max_size, cfg.mean, cfg.std, cfg.color_order)
        if keep[:len(keep) - a_nc].any():
            got = (x, m, nb, keep, a_labels, a_nc)
            break
    if got is None:
        x, m, nb, keep = to_network(img, sample.masks, sample.boxes, cfg.max_size, cfg.mean, cfg.std, cfg.color_order)
        got = (x, m, nb, keep, sample.labels, sample.num_crowds)
    x, m, nb, keep, labels, nc = got
    n_real = len(keep) - nc
    keep = keep.copy()
    keep[n_real:] = True  # crowd regions are kept whatever their size
    target = Target(boxes=torch.from_numpy(nb[keep]), labels=torch.from_numpy(np.asarray(labels, np.int64)[keep]),
                    masks=torch.from_numpy(m[keep]), num_crowds=int(nc))
    return torch.from_numpy(x), target


def make_batch(samples, cfg, augment: SSDAugmentation | None):
    """Samples -> (images (B, 3, S, S) tensor, [Target])."""
    pairs = [_prepare(s, cfg, augment) for s in samples]
    return torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def train_yolact(net: Yolact, data: CocoInstances, *, iters: int, batch_size: int = 8, lr: float | None = None,
                 seed: int = 0, augment: bool = True, progress: bool = True, warmup_iters: int | None = None,
                 checkpoint_path: str | None = None, checkpoint_every: int = 0,
                 optimizer: str = "sgd") -> TrainReport:
    """Trains ``net`` in place on ``data`` for ``iters`` iterations.

    Args:
        net: the network (its configuration's class names must match the dataset's).
        data: the dataset. iters: iterations. batch_size: images per iteration.
        lr: base learning rate (default 1e-3 * batch_size / 8, the official auto-scaling).
        augment: the official SSD augmentation (False: resize only).
        progress: print a progress bar on stderr.
        checkpoint_path / checkpoint_every: save every N iterations (0: only at the end, by the caller).
        optimizer: "sgd" (official: momentum 0.9, weight decay 5e-4) or "adam" (faster for tiny
            models trained from scratch on a handful of images; lr around 1e-3).
    """
    from models.yolact.checkpoint import save_yolact

    if len(data) == 0:
        from stream.errors import ConfigError

        raise ConfigError("the dataset has no image with a non-crowd annotation; nothing to train on")
    cfg = net.cfg
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    base_lr = lr if lr is not None else 1e-3 * batch_size / 8
    if warmup_iters is None:
        warmup_iters = min(int(round(500 * 8 / batch_size)), iters // 10)
    aug = SSDAugmentation(mean_bgr=(103.94, 116.78, 123.68), rng=rng) if augment else None
    params = [p for p in net.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=base_lr, momentum=0.9, weight_decay=5e-4)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=base_lr)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    criterion = YolactLoss(cfg)
    net.train()
    # Official: frozen BatchNorm below a batch of 6 (pretrained statistics are better than noisy
    # ones). The tiny backbone has no pretrained weights, so its statistics must be learned.
    net.freeze_bn(batch_size < 6 and cfg.backbone != "tiny")
    cache: dict[int, object] = {}
    report = TrainReport()
    parts_sum: dict[str, float] = {}
    parts_n = 0
    start = time.monotonic()
    order = rng.permutation(len(data))
    pos = 0
    for it in range(iters):
        batch = []
        for _ in range(batch_size):
            if pos == len(order):
                order, pos = rng.permutation(len(data)), 0
            image_id = data.image_ids[order[pos]]
            pos += 1
            if image_id not in cache:
                cache[image_id] = data.load(image_id) if len(data) <= 64 else None
            batch.append(cache[image_id] or data.load(image_id))
        images, targets = make_batch(batch, cfg, aug)
        for g in opt.param_groups:
            g["lr"] = learning_rate(it, base_lr, iters, warmup_iters)
        out = net(images)
        losses = criterion(out, targets)
        total = losses["total"]
        if not math.isfinite(float(total.detach())):
            from stream.errors import ModelError

            raise ModelError(f"training diverged at iteration {it} (loss {float(total)}); lower --lr")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        report.losses.append(float(total.detach()))
        if it >= iters - max(1, iters // 10):
            for k, v in losses.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v.detach())
            parts_n += 1
        if progress and (it % 10 == 0 or it == iters - 1):
            done = (it + 1) / iters
            bar = "#" * int(done * 30)
            parts = " ".join(f"{k} {float(v.detach()):.3f}" for k, v in losses.items() if k != "total")
            print(f"\rtrain [{bar:<30}] {it + 1}/{iters} loss {float(total.detach()):.3f} ({parts}) "
                  f"lr {opt.param_groups[0]['lr']:.2e} {time.monotonic() - start:.0f}s", end="", file=sys.stderr)
        if checkpoint_path and checkpoint_every and (it + 1) % checkpoint_every == 0:
            save_yolact(net, checkpoint_path, {"iteration": it + 1})
    if progress:
        print(file=sys.stderr)
    net.eval()
    report.parts_end = {k: v / max(parts_n, 1) for k, v in parts_sum.items()}
    report.seconds = time.monotonic() - start
    return report
