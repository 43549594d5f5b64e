"""Training and fine-tuning on image + label folders.

Cross-entropy with ignore index 255, torchvision's aux loss (weight 0.5) where the model has an
aux head, SGD with momentum and the poly schedule ``lr * (1 - it / iters) ** 0.9``,
augmentation (random scale, crop with ignore padding, horizontal flip, brightness/contrast),
a progress line on stderr, and a checkpoint that ``load_model`` reads back.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.semantic.data import LAYOUTS, Sample, find_samples, read_image, read_label
from models.semantic.zoo import IMAGENET_MEAN_255, IMAGENET_STD_255, load_model, save_checkpoint
from pipelines.road import IGNORE_INDEX
from stream.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Attributes:
        model: registry name. images / labels / layout: the data (see data.py).
        out: checkpoint path written at the end (and every ``save_every`` iterations).
        weights: start from this checkpoint (other class counts: all but the classifier).
        num_classes: classes (default: the checkpoint's, else 19).
        input_size_hw: (H, W) crop size.
        iters: optimiser steps; None: ``epochs`` passes over the data.
        epochs / batch_size / lr / momentum / weight_decay: optimiser settings.
        scale_range: random rescale range before cropping; (1, 1) disables it.
        aux_weight: weight of the aux head's loss where the model has one.
        seed: seeds torch, numpy and the sampler.
        progress: print a progress line to stderr.
        threads: torch intra-op threads while training (None: leave torch's setting); on a
            busy 2-core machine 1 thread is several times faster than 2.
        class_weights: "none", or "balanced": median-frequency balancing (each class's loss
            weighted by the median class frequency over its own, from the training labels,
            clipped to [0.1, 10]) so that thin classes (poles, signs, people) count; or
            "balanced-sqrt": the square root of those weights, a milder push that trades
            less precision on the common classes for the recall of the rare ones.
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
            raise ConfigError(f"class weights must be 'none', 'balanced' or 'balanced-sqrt', got {self.class_weights!r}")


def augment(image_bgr: np.ndarray, label: np.ndarray, size_hw: tuple[int, int], rng: np.random.Generator,
            scale_range=(0.75, 1.25)) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, crop to ``size_hw`` (padding: image 0, label 255), flip, photometric jitter.

    Args:
        image_bgr: (H, W, 3) uint8. label: (H, W) uint8.

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
    image_bgr, label = image_bgr[y:y + th, x:x + tw], label[y:y + th, x:x + tw]
    if rng.random() < 0.5:
        image_bgr, label = image_bgr[:, ::-1], label[:, ::-1]
    alpha, beta = float(rng.uniform(0.8, 1.2)), float(rng.uniform(-20, 20))
    image_bgr = cv2.convertScaleAbs(np.ascontiguousarray(image_bgr), alpha=alpha, beta=beta)
    return image_bgr, np.ascontiguousarray(label)


def to_tensor(image_bgr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 BGR -> (3, H, W) float32 RGB normalised like the exported artifact's preprocess."""
    rgb = image_bgr[:, :, ::-1].astype(np.float32)
    x = (rgb - np.asarray(IMAGENET_MEAN_255, np.float32)) / np.asarray(IMAGENET_STD_255, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class SegmentationDataset(torch.utils.data.Dataset):
    """Samples read on demand and augmented; items ((3, h, w) float32, (h, w) int64)."""

    def __init__(self, samples: list[Sample], size_hw: tuple[int, int], seed: int, scale_range) -> None:
        self.samples = samples
        self.size_hw = size_hw
        self.scale_range = scale_range
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        img, lab = augment(read_image(s.image_path), read_label(s), self.size_hw, self.rng, self.scale_range)
        return to_tensor(img), torch.from_numpy(lab.astype(np.int64))


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


def segmentation_loss(outputs: dict, target: torch.Tensor, aux_weight: float,
                      class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy (ignore 255, optional per-class weights) on ``out``, plus ``aux_weight`` x
    that of ``aux`` if present."""
    loss = F.cross_entropy(outputs["out"], target, weight=class_weights, ignore_index=IGNORE_INDEX)
    if "aux" in outputs and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(outputs["aux"], target, weight=class_weights,
                                                   ignore_index=IGNORE_INDEX)
    return loss


def poly_lr(base_lr: float, it: int, total: int, power: float = 0.9) -> float:
    return base_lr * (1 - min(it, total) / total) ** power


@dataclass(frozen=True)
class TrainReport:
    """Attributes: checkpoint path, steps run, mean loss of the first and last 10 steps, seconds."""

    checkpoint: str
    iters: int
    first_loss: float
    last_loss: float
    seconds: float


def train(cfg: TrainConfig) -> TrainReport:
    """Trains ``cfg.model`` and writes ``cfg.out``; returns a short report."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig) -> TrainReport:
    torch.manual_seed(cfg.seed)
    loaded = load_model(cfg.model, cfg.weights, num_classes=cfg.num_classes, aux=True, strict_classes=False)
    samples = find_samples(cfg.images, cfg.labels, cfg.layout, loaded.num_classes)
    data = SegmentationDataset(samples, cfg.input_size_hw, cfg.seed, cfg.scale_range)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=len(data) > cfg.batch_size,
                                         generator=gen, num_workers=0)
    total = cfg.iters or cfg.epochs * len(loader)
    weights = None
    if cfg.class_weights in ("balanced", "balanced-sqrt"):
        w = balanced_class_weights(samples, loaded.num_classes)
        weights = torch.from_numpy(np.sqrt(w) if cfg.class_weights == "balanced-sqrt" else w)
        if cfg.progress:
            shown = ", ".join(f"{n} {w:.2f}" for n, w in zip(loaded.class_names, weights.tolist()) if w != 1.0)
            sys.stderr.write(f"class weights: {shown}\n")
    model = loaded.model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    it, t0 = 0, time.monotonic()
    while it < total:
        for x, y in loader:
            if it >= total:
                break
            lr = poly_lr(cfg.lr, it, total)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = segmentation_loss(model(x), y, cfg.aux_weight, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            it += 1
            if cfg.progress:
                _progress(it, total, losses[-1], lr, time.monotonic() - t0)
            if cfg.save_every and it % cfg.save_every == 0:
                save_checkpoint(cfg.out, loaded, extra={"iters": it})
    if cfg.progress:
        sys.stderr.write("\n")
    loaded.model.eval()
    save_checkpoint(cfg.out, loaded, extra={"iters": it})
    return TrainReport(cfg.out, it, float(np.mean(losses[:10])), float(np.mean(losses[-10:])), time.monotonic() - t0)


def _progress(it: int, total: int, loss: float, lr: float, elapsed: float) -> None:
    width = 30
    done = int(width * it / total)
    eta = elapsed / it * (total - it)
    sys.stderr.write(f"\rtrain [{'#' * done}{'.' * (width - done)}] {it}/{total} loss {loss:.4f} lr {lr:.2e} "
                     f"eta {eta:.0f}s")
    sys.stderr.flush()
