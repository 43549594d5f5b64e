"""Training and fine-tuning on image + label folders.

Cross-entropy with ignore index 255, torchvision's aux loss (weight 0.5) where the model has an
aux head, SGD with momentum and the poly schedule ``lr * (1 - it / iters) ** 0.9``,
augmentation (random scale, crop with ignore padding, horizontal flip, brightness/contrast),
a progress line on stderr, and a checkpoint that ``load_model`` reads back.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from segstream.models.semantic.data import LAYOUTS, Sample, find_samples, read_image, read_label
from segstream.models.semantic.zoo import IMAGENET_MEAN_255, IMAGENET_STD_255, load_model, save_checkpoint
from segstream.pipelines.tasks.road import IGNORE_INDEX
from segstream.stream.errors import ConfigError
from segstream.stream.progress import count_line, write_line


@dataclass(frozen=True)
class TrainConfig:
    """Attributes:
    model: registry name. images / labels / layout: the data (see data.py).
    out: checkpoint path written at the end: the best checkpoint on the validation data
        when there is some, else the last. ``<out>.last.pth`` holds the resumable state
        (model, optimiser, iteration, best score), written every ``save_every`` iterations,
        at every evaluation and at the end.
    weights: start from this checkpoint (other class counts: all but the classifier).
    num_classes: classes (default: the checkpoint's, else 19).
    input_size_hw: (H, W) crop size.
    iters: optimiser steps; None: ``epochs`` passes over the data.
    epochs / batch_size / lr / momentum / weight_decay: optimiser settings.
    scale_range: random rescale range before cropping; (1, 1) disables it.
    aux_weight: weight of the aux head's loss where the model has one.
    seed: seeds the sampler, the augmentation and torch. The batch of iteration ``i`` and
        its augmentation depend only on (seed, i), so a resumed run sees the same data.
    progress: print a progress line to stderr.
    threads: torch intra-op threads while training (None: leave torch's setting); on a
        busy 2-core machine 1 thread is several times faster than 2.
    class_weights: "none", or "balanced": median-frequency balancing (each class's loss
        weighted by the median class frequency over its own, from the training labels,
        clipped to [0.1, 10]) so that thin classes (poles, signs, people) count; or
        "balanced-sqrt": the square root of those weights, a milder push that trades
        less precision on the common classes for the recall of the rare ones.
    jitter: photometric augmentation: "basic" (brightness/contrast) or "color" (also
        saturation and hue, for real footage).
    warmup_iters: linear learning-rate warm-up before the poly schedule.
    backbone_init: "imagenet" loads the ImageNet backbone of models that have one
        (EfficientNet-Lite0) when no ``weights`` are given; "none" leaves it random.
    val_images / val_labels: validation data in ``layout``; evaluated every ``eval_every``
        iterations and at the end (CamVid: the 11-class mIoU), the best kept in ``out``.
    resume: a ``.last.pth`` written by an earlier run of the same configuration: training
        continues from its iteration with its optimiser state, exactly as if not stopped.
    stop_at: stop at this iteration (the schedule still runs to ``iters``) and write the
        resumable state: a long run spread over several sittings.
    """

    model: str
    images: str
    labels: str
    out: str
    layout: str = "plain"
    weights: str | None = None
    num_classes: int | None = None
    input_size_hw: tuple[int, int] = (512, 1024)
    iters: int | None = None
    epochs: int = 10
    batch_size: int = 4
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scale_range: tuple[float, float] = (0.75, 1.25)
    aux_weight: float = 0.5
    seed: int = 0
    progress: bool = True
    save_every: int = 0
    threads: int | None = None
    class_weights: str = "none"
    jitter: str = "basic"
    warmup_iters: int = 0
    backbone_init: str = "imagenet"
    val_images: str | None = None
    val_labels: str | None = None
    eval_every: int = 0
    resume: str | None = None
    stop_at: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.batch_size < 1 or self.epochs < 1 or (self.iters is not None and self.iters < 1):
            raise ConfigError("batch size, epochs and iters must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr}")
        if min(self.input_size_hw) < 16:
            raise ConfigError(f"input size must be at least 16x16, got {self.input_size_hw}")
        if self.class_weights not in ("none", "balanced", "balanced-sqrt"):
            raise ConfigError(
                f"class weights must be 'none', 'balanced' or 'balanced-sqrt', got {self.class_weights!r}"
            )
        if self.jitter not in ("basic", "color"):
            raise ConfigError(f"jitter must be 'basic' or 'color', got {self.jitter!r}")
        if self.backbone_init not in ("imagenet", "none"):
            raise ConfigError(f"backbone init must be 'imagenet' or 'none', got {self.backbone_init!r}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ConfigError(f"scale range must be 0 < low <= high, got {self.scale_range}")
        if (self.val_images is None) != (self.val_labels is None):
            raise ConfigError("validation needs both --val-images and --val-labels")
        if self.warmup_iters < 0 or self.eval_every < 0 or self.save_every < 0:
            raise ConfigError("warm-up, eval-every and checkpoint-every must be >= 0")

    def resumable(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        return {
            "model": self.model,
            "layout": self.layout,
            "num_classes": self.num_classes,
            "input_size_hw": list(self.input_size_hw),
            "iters": self.iters,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "scale_range": list(self.scale_range),
            "seed": self.seed,
            "class_weights": self.class_weights,
            "jitter": self.jitter,
            "warmup_iters": self.warmup_iters,
        }


def last_path(out: str) -> str:
    """``<out>.last.pth``: the resumable state next to the checkpoint ``out``."""
    root, _ = os.path.splitext(out)
    return root + ".last.pth"


def augment(
    image_bgr: np.ndarray,
    label: np.ndarray,
    size_hw: tuple[int, int],
    rng: np.random.Generator,
    scale_range=(0.75, 1.25),
    jitter: str = "basic",
) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, crop to ``size_hw`` (padding: image 0, label 255), flip, photometric jitter.

    Args:
        image_bgr: (H, W, 3) uint8. label: (H, W) uint8.
        jitter: "basic" (brightness/contrast) or "color" (also saturation x[0.7, 1.3] and hue
            +-5 degrees, in HSV).

    Returns:
        ((h, w, 3) uint8 BGR, (h, w) uint8) of ``size_hw``.
    """
    s = float(rng.uniform(*scale_range))
    if s != 1.0:
        h, w = label.shape
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        image_bgr = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
    th, tw = size_hw
    h, w = label.shape
    ph, pw = max(0, th - h), max(0, tw - w)
    if ph or pw:
        image_bgr = cv2.copyMakeBorder(image_bgr, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
    h, w = label.shape
    y, x = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
    image_bgr, label = image_bgr[y : y + th, x : x + tw], label[y : y + th, x : x + tw]
    if rng.random() < 0.5:
        image_bgr, label = image_bgr[:, ::-1], label[:, ::-1]
    alpha, beta = float(rng.uniform(0.8, 1.2)), float(rng.uniform(-20, 20))
    image_bgr = cv2.convertScaleAbs(np.ascontiguousarray(image_bgr), alpha=alpha, beta=beta)
    if jitter == "color":
        sat, hue = float(rng.uniform(0.7, 1.3)), int(rng.integers(-5, 6))
        hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + hue // 2) % 180  # OpenCV hue is in 2-degree steps
        hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
        image_bgr = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    return image_bgr, np.ascontiguousarray(label)


def to_tensor(image_bgr: np.ndarray, mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255) -> torch.Tensor:
    """(H, W, 3) uint8 BGR -> (3, H, W) float32 RGB normalised like the exported artifact's preprocess."""
    rgb = image_bgr[:, :, ::-1].astype(np.float32)
    x = (rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class BatchSampler:
    """The batch of every iteration as a pure function of (seed, iteration): epoch ``e`` visits
    the samples in the order ``default_rng([seed, e]).permutation(n)``, and sample ``j`` of
    iteration ``i`` is augmented with ``default_rng([seed, i, j])``. A resumed run therefore
    sees exactly the batches the uninterrupted run would have seen."""

    def __init__(
        self,
        samples: list[Sample],
        size_hw: tuple[int, int],
        seed: int,
        scale_range,
        batch_size: int,
        jitter: str = "basic",
        mean=IMAGENET_MEAN_255,
        std=IMAGENET_STD_255,
    ) -> None:
        self.samples, self.size_hw, self.seed, self.scale_range = samples, size_hw, seed, scale_range
        self.batch_size, self.jitter, self.mean, self.std = batch_size, jitter, mean, std
        self._orders: dict[int, np.ndarray] = {}

    def indices(self, it: int) -> list[int]:
        n, out = len(self.samples), []
        for j in range(self.batch_size):
            pos = it * self.batch_size + j
            epoch = pos // n
            if epoch not in self._orders:
                self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(n)}
            out.append(int(self._orders[epoch][pos % n]))
        return out

    def batch(self, it: int) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, 3, h, w) float32, (B, h, w) int64) of iteration ``it``."""
        xs, ys = [], []
        for j, i in enumerate(self.indices(it)):
            s = self.samples[i]
            rng = np.random.default_rng([self.seed, it, j])
            img, lab = augment(
                read_image(s.image_path), read_label(s), self.size_hw, rng, self.scale_range, self.jitter
            )
            xs.append(to_tensor(img, self.mean, self.std))
            ys.append(torch.from_numpy(lab.astype(np.int64)))
        return torch.stack(xs), torch.stack(ys)


def balanced_class_weights(samples: list[Sample], num_classes: int, clip=(0.1, 10.0)) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus; SegNet): ``median(freq) / freq[c]`` over the
    classes present in the labels, 1 for absent ones, clipped to ``clip``; (C,) float32."""
    counts = np.zeros(num_classes, np.int64)
    for s in samples:
        lab = read_label(s)
        counts += np.bincount(lab[lab < num_classes].ravel(), minlength=num_classes)[:num_classes]
    present = counts > 0
    if not present.any():
        raise ConfigError("no labelled pixel in the training labels: cannot balance class weights")
    freq = counts / counts.sum()
    weights = np.ones(num_classes, np.float64)
    weights[present] = np.median(freq[present]) / freq[present]
    return np.clip(weights, *clip).astype(np.float32)


def segmentation_loss(
    outputs: dict, target: torch.Tensor, aux_weight: float, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy (ignore 255, optional per-class weights) on ``out``, plus ``aux_weight`` x
    that of ``aux`` if present."""
    loss = F.cross_entropy(outputs["out"], target, weight=class_weights, ignore_index=IGNORE_INDEX)
    if "aux" in outputs and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(
            outputs["aux"], target, weight=class_weights, ignore_index=IGNORE_INDEX
        )
    return loss


def poly_lr(base_lr: float, it: int, total: int, power: float = 0.9, warmup: int = 0) -> float:
    """Poly decay ``base * (1 - it / total) ** power``, after ``warmup`` linear warm-up steps."""
    if warmup and it < warmup:
        return base_lr * (it + 1) / warmup
    return base_lr * (1 - min(it, total) / total) ** power


def evaluate_model(model: torch.nn.Module, samples: list[Sample], loaded, layout: str) -> dict:
    """Scores ``model`` (torch, eval mode, full frames padded like the runtime) on ``samples``.

    CamVid layout with a Cityscapes-class model: the standard 11-class CamVid figures
    (``data.camvid_prediction_lut``); otherwise the model's own classes. Returns the
    ``ConfusionMatrix.summary`` dict.
    """
    from segstream.models.semantic.data import CAMVID_CLASSES, camvid_prediction_lut, label_lut
    from segstream.models.semantic.metrics import ConfusionMatrix

    pred_lut = camvid_prediction_lut(loaded.class_names) if layout == "camvid" else None
    names = CAMVID_CLASSES if pred_lut is not None else loaded.class_names
    cm = ConfusionMatrix(len(names))
    multiple = loaded.spec.size_policy.pad_multiple
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for s in samples:
            img = read_image(s.image_path)
            h, w = img.shape[:2]
            x = to_tensor(img, loaded.spec.mean, loaded.spec.std)[None]
            ph, pw = -h % multiple, -w % multiple
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph))
            pred = model(x)["out"][0, :, :h, :w].argmax(0).numpy().astype(np.uint8)
            if pred_lut is not None:
                label = label_lut("camvid", len(CAMVID_CLASSES))[cv2.imread(s.label_path, cv2.IMREAD_UNCHANGED)]
                pred = pred_lut[pred]
            else:
                label = read_label(s)
            cm.update(pred, label)
    model.train(was_training)
    return cm.summary(names)


@dataclass(frozen=True)
class TrainReport:
    """Attributes: checkpoint path, steps run, mean loss of the first and last 10 steps run in
    this call, seconds, best validation mIoU (None without validation data) and its iteration."""

    checkpoint: str
    iters: int
    first_loss: float
    last_loss: float
    seconds: float
    best_miou: float | None = None
    best_iter: int | None = None


def train(cfg: TrainConfig) -> TrainReport:
    """Trains ``cfg.model`` and writes ``cfg.out``; returns a short report."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _save_state(path: str, loaded, opt, it: int, cfg: TrainConfig, best: dict, history: list) -> None:
    """The resumable state, written to a temporary file and renamed (a crash leaves the old one)."""
    info = {
        "model": loaded.spec.name,
        "num_classes": loaded.num_classes,
        "class_names": list(loaded.class_names),
        "iters": it,
    }
    if loaded.output_stride is not None:
        info["output_stride"] = int(loaded.output_stride)
    state = {
        "model_state": loaded.model.state_dict(),
        "segstream": info,
        "train_state": {
            "optimizer": opt.state_dict(),
            "iter": it,
            "config": cfg.resumable(),
            "best": dict(best),
            "history": list(history),
        },
    }
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def _read_resume(path: str, cfg: TrainConfig) -> dict:
    from segstream.models.training_state import read_resumable

    obj, _ = read_resumable(path, cfg.resumable(), lambda o: o.get("train_state"), "config")
    return obj


def _train(cfg: TrainConfig) -> TrainReport:

    torch.manual_seed(cfg.seed)
    resumed = _read_resume(cfg.resume, cfg) if cfg.resume else None
    loaded = load_model(cfg.model, cfg.weights, num_classes=cfg.num_classes, aux=True, strict_classes=False)
    if resumed is not None:
        loaded.model.load_state_dict(resumed["model_state"])
    elif cfg.weights is None and cfg.backbone_init == "imagenet" and loaded.spec.kind == "lite":
        from segstream.models.semantic.efficientnet_lite import load_imagenet_weights

        load_imagenet_weights(loaded.model.backbone)
    samples = find_samples(cfg.images, cfg.labels, cfg.layout, loaded.num_classes)
    val = find_samples(cfg.val_images, cfg.val_labels, cfg.layout, loaded.num_classes) if cfg.val_images else []
    sampler = BatchSampler(
        samples,
        cfg.input_size_hw,
        cfg.seed,
        cfg.scale_range,
        cfg.batch_size,
        cfg.jitter,
        loaded.spec.mean,
        loaded.spec.std,
    )
    per_epoch = max(1, len(samples) // cfg.batch_size)
    total = cfg.iters or cfg.epochs * per_epoch
    weights = None
    if cfg.class_weights in ("balanced", "balanced-sqrt"):
        w = balanced_class_weights(samples, loaded.num_classes)
        weights = torch.from_numpy(np.sqrt(w) if cfg.class_weights == "balanced-sqrt" else w)
        if cfg.progress:
            shown = ", ".join(f"{n} {w:.2f}" for n, w in zip(loaded.class_names, weights.tolist()) if w != 1.0)
            sys.stderr.write(f"class weights: {shown}\n")
    model = loaded.model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    it, best, history = 0, {"miou": None, "iter": None}, []
    if resumed is not None:
        opt.load_state_dict(resumed["train_state"]["optimizer"])
        it = int(resumed["train_state"]["iter"])
        best = dict(resumed["train_state"]["best"])
        history = list(resumed["train_state"]["history"])
    state_path = last_path(cfg.out)
    losses: list[float] = []
    start_it, t0 = it, time.monotonic()

    def evaluate_and_keep() -> None:
        summary = evaluate_model(model, val, loaded, cfg.layout)
        history.append(
            {
                "iter": it,
                "miou": round(summary["miou"], 5),
                "per_class_iou": {k: round(v, 4) for k, v in summary["per_class_iou"].items()},
            }
        )
        if best["miou"] is None or summary["miou"] > best["miou"]:
            best.update(miou=float(summary["miou"]), iter=it)
            save_checkpoint(cfg.out, loaded, extra={"iters": it, "val_miou": round(summary["miou"], 5)})
        if cfg.progress:
            sys.stderr.write(f"\nval at {it}: mIoU {summary['miou']:.4f} (best {best['miou']:.4f} at {best['iter']})\n")

    stop = min(total, cfg.stop_at) if cfg.stop_at else total
    while it < stop:
        lr = poly_lr(cfg.lr, it, total, warmup=cfg.warmup_iters)
        for g in opt.param_groups:
            g["lr"] = lr
        torch.manual_seed(cfg.seed * 1_000_003 + it)  # dropout: a function of the iteration too
        x, y = sampler.batch(it)
        loss = segmentation_loss(model(x), y, cfg.aux_weight, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        it += 1
        if cfg.progress:
            _progress(it, total, losses[-1], lr, time.monotonic() - t0, it - start_it, best["miou"])
        evaluating = bool(val) and cfg.eval_every and it % cfg.eval_every == 0 and it < total
        if evaluating:
            evaluate_and_keep()
        if evaluating or (cfg.save_every and it % cfg.save_every == 0):
            _save_state(state_path, loaded, opt, it, cfg, best, history)
    if cfg.progress:
        sys.stderr.write("\n")
    if val and it == total and (not history or history[-1]["iter"] != it):
        evaluate_and_keep()
    loaded.model.eval()
    _save_state(state_path, loaded, opt, it, cfg, best, history)
    if not val and it == total:
        save_checkpoint(cfg.out, loaded, extra={"iters": it})
    first = float(np.mean(losses[:10])) if losses else float("nan")
    last = float(np.mean(losses[-10:])) if losses else float("nan")
    return TrainReport(cfg.out, it, first, last, time.monotonic() - t0, best["miou"], best["iter"])


def _progress(it: int, total: int, loss: float, lr: float, elapsed: float, done_here: int, best) -> None:
    eta = elapsed / max(1, done_here) * (total - it)
    shown_best = "" if best is None else f" best mIoU {best:.4f}"
    write_line(count_line("train", it, total, f"loss {loss:.4f} lr {lr:.2e}", eta) + shown_best)
