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

from segstream.models.yolact.data import CocoInstances, SSDAugmentation, to_network
from segstream.models.yolact.loss import Target, YolactLoss
from segstream.models.yolact.model import Yolact
from segstream.stream.progress import count_line, write_line

log = logging.getLogger(__name__)

STEP_FRACTIONS = (280 / 800, 600 / 800, 700 / 800, 750 / 800)


@dataclass
class TrainReport:
    """Per-iteration total losses and the mean of each part over the last 10 % of iterations."""

    losses: list[float] = field(default_factory=list)
    parts_end: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    iteration: int = 0
    best: dict = field(default_factory=dict)
    history: list = field(default_factory=list)


def learning_rate(it: int, base_lr: float, iters: int, warmup_iters: int) -> float:
    """Learning rate at iteration ``it`` (0-based)."""
    if it < warmup_iters:
        return base_lr / 10 + (base_lr - base_lr / 10) * it / warmup_iters
    steps = sum(it >= int(f * iters) for f in STEP_FRACTIONS)
    return base_lr * 0.1**steps


def _prepare(sample, cfg, augment: SSDAugmentation | None):
    """One sample -> (image (3, S, S) float32, Target). Augmentation is retried (up to 10 times)
    until a non-crowd instance survives, as the official loader re-draws such images."""
    img = sample.image_bgr.astype(np.float32)
    got = None
    for _ in range(10 if augment is not None else 0):
        a_img, a_masks, a_boxes, a_labels, a_nc = augment(
            img, sample.masks, sample.boxes, sample.labels, sample.num_crowds
        )
        x, m, nb, keep = to_network(a_img, a_masks, a_boxes, cfg.max_size, cfg.mean, cfg.std, cfg.color_order)
        if keep[: len(keep) - a_nc].any():
            got = (x, m, nb, keep, a_labels, a_nc)
            break
    if got is None:
        x, m, nb, keep = to_network(img, sample.masks, sample.boxes, cfg.max_size, cfg.mean, cfg.std, cfg.color_order)
        got = (x, m, nb, keep, sample.labels, sample.num_crowds)
    x, m, nb, keep, labels, nc = got
    n_real = len(keep) - nc
    keep = keep.copy()
    keep[n_real:] = True  # crowd regions are kept whatever their size
    target = Target(
        boxes=torch.from_numpy(nb[keep]),
        labels=torch.from_numpy(np.asarray(labels, np.int64)[keep]),
        masks=torch.from_numpy(m[keep]),
        num_crowds=int(nc),
    )
    return torch.from_numpy(x), target


def make_batch(samples, cfg, augment: SSDAugmentation | None):
    """Samples -> (images (B, 3, S, S) tensor, [Target])."""
    pairs = [_prepare(s, cfg, augment) for s in samples]
    return torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def train_yolact(
    net: Yolact,
    data: CocoInstances,
    *,
    iters: int,
    batch_size: int = 8,
    lr: float | None = None,
    seed: int = 0,
    augment: bool = True,
    progress: bool = True,
    warmup_iters: int | None = None,
    checkpoint_path: str | None = None,
    checkpoint_every: int = 0,
    optimizer: str = "sgd",
    val_data: CocoInstances | None = None,
    eval_every: int = 0,
    best_path: str | None = None,
    state_path: str | None = None,
    resume: dict | None = None,
    stop_at: int | None = None,
    settings: dict | None = None,
) -> TrainReport:
    """Trains ``net`` in place on ``data`` up to iteration ``iters`` (or ``stop_at``).

    The batch of iteration ``i`` and its augmentation depend only on (seed, i): epoch ``e``
    visits the images in ``default_rng([seed, e]).permutation(n)`` order and sample ``j`` of
    iteration ``i`` is augmented with ``default_rng([seed, i, j])``; with the optimiser state in
    ``state_path``, a resumed run continues exactly as the uninterrupted one.

    Args:
        net: the network (its configuration's class names must match the dataset's).
        data: the dataset. iters: iterations. batch_size: images per iteration.
        lr: base learning rate (default 1e-3 * batch_size / 8, the official auto-scaling).
        augment: the official SSD augmentation (False: resize only).
        progress: print a progress bar with ETA on stderr.
        checkpoint_path / checkpoint_every: save every N iterations (0: only at the end, by the caller).
        optimizer: "sgd" (official: momentum 0.9, weight decay 5e-4) or "adam" (faster for tiny
            models trained from scratch on a handful of images; lr around 1e-3).
        val_data / eval_every / best_path: score mask AP50 on ``val_data`` every N iterations and
            at the end; the best (mean of the per-class mask AP50) is written to ``best_path``.
        state_path: the resumable state (weights, optimiser, iteration, best, history), written at
            every evaluation, every ``checkpoint_every`` iterations and at the end.
        resume: a state read from ``state_path`` by ``read_state``: continue from it.
        stop_at: stop at this iteration (the schedule still runs to ``iters``).
        settings: what a resumed run must share with this one (checked by ``read_state``).
    """
    from segstream.models.yolact.checkpoint import save_yolact

    if len(data) == 0:
        from segstream.stream.errors import ConfigError

        raise ConfigError("the dataset has no image with a non-crowd annotation; nothing to train on")
    cfg = net.cfg
    torch.manual_seed(seed)
    base_lr = lr if lr is not None else 1e-3 * batch_size / 8
    if warmup_iters is None:
        warmup_iters = min(int(round(500 * 8 / batch_size)), iters // 10)
    aug = SSDAugmentation(mean_bgr=(103.94, 116.78, 123.68), rng=np.random.default_rng(seed)) if augment else None
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
    start_it, best, history = 0, {"score": None, "iter": None}, []
    if resume is not None:
        net.load_state_dict(resume["state_dict"])
        opt.load_state_dict(resume["train_state"]["optimizer"])
        start_it = int(resume["train_state"]["iter"])
        best = dict(resume["train_state"]["best"])
        history = list(resume["train_state"]["history"])
    start = time.monotonic()
    orders: dict[int, np.ndarray] = {}
    stop = min(iters, stop_at) if stop_at else iters

    def sample_at(pos: int):
        epoch = pos // len(data)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(len(data))
        image_id = data.image_ids[orders[epoch][pos % len(data)]]
        if image_id not in cache:
            cache[image_id] = data.load(image_id) if len(data) <= 64 else None
        return cache[image_id] or data.load(image_id)

    def save_state(it: int) -> None:
        if state_path:
            save_yolact(
                net,
                state_path,
                {
                    "iterations": it,
                    "train_state": {
                        "optimizer": opt.state_dict(),
                        "iter": it,
                        "best": dict(best),
                        "history": list(history),
                        "settings": dict(settings or {}),
                    },
                },
            )

    def evaluate_and_keep(it: int) -> None:
        figures = evaluate_net(net, val_data)
        per_class = figures["mask"].get("per_class_AP50", {})
        score = float(np.mean(list(per_class.values()))) if per_class else float(figures["mask"]["AP50"])
        history.append(
            {
                "iter": it,
                "mask_ap50": round(score, 5),
                "per_class_mask_ap50": {k: round(float(v), 4) for k, v in per_class.items()},
            }
        )
        if best["score"] is None or score > best["score"]:
            best.update(score=score, iter=it)
            if best_path:
                save_yolact(
                    net,
                    best_path,
                    {
                        "iterations": it,
                        "val_mask_ap50": round(score, 5),
                        "val_per_class_mask_ap50": history[-1]["per_class_mask_ap50"],
                    },
                )
        if progress:
            shown = "  ".join(f"{k} {v:.3f}" for k, v in per_class.items())
            print(
                f"\nval at {it}: mask AP50 {score:.4f} ({shown}); best {best['score']:.4f} at {best['iter']}",
                file=sys.stderr,
            )
        net.train()
        net.freeze_bn(batch_size < 6 and cfg.backbone != "tiny")

    for it in range(start_it, stop):
        torch.manual_seed(seed * 1_000_003 + it)
        batch = [sample_at(it * batch_size + j) for j in range(batch_size)]
        if aug is not None:
            pairs = []
            for j, sample in enumerate(batch):
                aug.rng = np.random.default_rng([seed, it, j])
                pairs.append(_prepare(sample, cfg, aug))
            images, targets = torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]
        else:
            images, targets = make_batch(batch, cfg, None)
        for g in opt.param_groups:
            g["lr"] = learning_rate(it, base_lr, iters, warmup_iters)
        out = net(images)
        losses = criterion(out, targets)
        total = losses["total"]
        if not math.isfinite(float(total.detach())):
            from segstream.stream.errors import ModelError

            raise ModelError(f"training diverged at iteration {it} (loss {float(total)}); lower --lr")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        report.losses.append(float(total.detach()))
        if it >= iters - max(1, iters // 10):
            for k, v in losses.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v.detach())
            parts_n += 1
        done_it = it + 1
        if progress and (it % 10 == 0 or done_it == stop):
            parts = " ".join(f"{k} {float(v.detach()):.3f}" for k, v in losses.items() if k != "total")
            elapsed = time.monotonic() - start
            eta = elapsed / max(1, done_it - start_it) * (stop - done_it)
            details = f"loss {float(total.detach()):.3f} ({parts}) lr {opt.param_groups[0]['lr']:.2e} {elapsed:.0f}s"
            write_line(count_line("train", done_it, iters, details, eta))
        evaluating = val_data is not None and eval_every and done_it % eval_every == 0 and done_it < iters
        if evaluating:
            evaluate_and_keep(done_it)
        if checkpoint_path and checkpoint_every and done_it % checkpoint_every == 0:
            save_yolact(net, checkpoint_path, {"iteration": done_it})
        if evaluating or (checkpoint_every and done_it % checkpoint_every == 0):
            save_state(done_it)
    if progress:
        print(file=sys.stderr)
    final = max(start_it, stop)
    if val_data is not None and final == iters and (not history or history[-1]["iter"] != final):
        evaluate_and_keep(final)
    save_state(final)
    net.eval()
    report.parts_end = {k: v / max(parts_n, 1) for k, v in parts_sum.items()}
    report.seconds = time.monotonic() - start
    report.iteration = final
    report.best = dict(best)
    report.history = list(history)
    return report


def evaluate_net(net: Yolact, data: CocoInstances) -> dict:
    """COCO box and mask figures of ``net`` (torch, eval mode, the runtime's pre/post-processing)."""
    from segstream.models.coco_eval import evaluate_coco
    from segstream.models.yolact.runtime import torch_runner

    net.eval()
    runner = torch_runner(net)
    try:
        return evaluate_coco(runner, data)
    finally:
        close = getattr(runner, "close", None)
        if close is not None:
            close()


def read_state(path: str, settings: dict) -> dict:
    """The resumable state ``train_yolact`` wrote to ``state_path``; ConfigError when missing, not
    a training state, or written with other ``settings``."""
    from segstream.models.training_state import read_resumable

    obj, state = read_resumable(path, settings, lambda o: (o.get("segstream") or {}).get("train_state"), "settings")
    return {"state_dict": obj["state_dict"], "train_state": state}
