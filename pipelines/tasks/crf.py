"""Dense-CRF refinement (the DeepLab v1/v2 post-processing) as an optional offline stage.

A truncated mean-field in numpy + OpenCV, in the spirit of ConvCRF: the Potts model of
Kraehenbuehl & Koltun with
- a smoothness kernel: Gaussian in position (``gaussian_sxy``), done with ``cv2.GaussianBlur``;
- an appearance kernel: Gaussian in position (``bilateral_sxy``) and colour (``bilateral_srgb``),
  evaluated on a sparse window (every pixel within ``near_radius``, plus a dilated ring of
  ``far_radius`` steps spaced to reach ~``bilateral_sxy``) instead of the full image; its
  weights are normalised per pixel so ``bilateral_weight`` is in log-probability units.

Cost grows with classes x pixels x window x iterations: seconds per frame at 1024x512 with 19
classes on 2 CPU cores (``bench/semantic.py`` measures it), so it is off in real-time pipelines.
Torch-free; nothing is modified in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from segstream.pipelines.tasks.results import SemanticMap
from segstream.stream.errors import ConfigError


@dataclass(frozen=True)
class CrfParams:
    """Attributes:
    iterations: mean-field steps (5 as in pydensecrf's example).
    gaussian_sxy / gaussian_weight: smoothness kernel: sigma in px, Potts weight.
    bilateral_sxy / bilateral_srgb / bilateral_weight: appearance kernel: position sigma
        in px, colour sigma on 0-255 values, Potts weight.
    near_radius: dense window radius in px for the appearance kernel.
    far_radius: steps of the dilated ring (spacing ~ bilateral_sxy / (2 * far_radius)).
    """

    iterations: int = 5
    gaussian_sxy: float = 3.0
    gaussian_weight: float = 1.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_weight: float = 4.0
    near_radius: int = 2
    far_radius: int = 2

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"crf iterations must be >= 1, got {self.iterations}")
        if min(self.gaussian_sxy, self.bilateral_sxy, self.bilateral_srgb) <= 0:
            raise ConfigError("crf sigmas must be > 0")
        if self.near_radius < 1 or self.far_radius < 0:
            raise ConfigError(
                f"crf near_radius must be >= 1 and far_radius >= 0, got {self.near_radius}, {self.far_radius}"
            )


def _offsets(p: CrfParams) -> list[tuple[int, int]]:
    r = p.near_radius
    offs = {(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)}
    if p.far_radius:
        step = max(r + 1, int(round(p.bilateral_sxy / (2 * p.far_radius))))
        f = p.far_radius
        offs |= {(dy * step, dx * step) for dy in range(-f, f + 1) for dx in range(-f, f + 1)}
    offs.discard((0, 0))
    return sorted(offs)


def dense_crf(image_bgr: np.ndarray, probabilities: np.ndarray, params: CrfParams = CrfParams()) -> np.ndarray:
    """Refines class probabilities with the image's edges.

    Args:
        image_bgr: (H, W, 3) uint8.
        probabilities: (C, H, W) float softmax at the image's size.
        params: kernel settings.

    Returns:
        (C, H, W) float32 refined probabilities (argmax for labels).
    """
    c, h, w = probabilities.shape
    if image_bgr.shape[:2] != (h, w) or image_bgr.ndim != 3:
        raise ValueError(f"image {image_bgr.shape} and probabilities {probabilities.shape} must share H and W")
    img = image_bgr.astype(np.float32)
    offsets = _offsets(params)
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    img_p = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    inside = np.pad(np.ones((h, w), np.float32), pad)
    weights = []
    for dy, dx in offsets:
        shifted = img_p[pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        colour = ((shifted - img) ** 2).sum(axis=2) / (2 * params.bilateral_srgb**2)
        wgt = np.exp(-colour - (dy * dy + dx * dx) / (2 * params.bilateral_sxy**2))
        weights.append((wgt * inside[pad + dy : pad + dy + h, pad + dx : pad + dx + w]).astype(np.float32))
    norm = np.maximum(np.sum(weights, axis=0), 1e-6)
    weights = [wt / norm for wt in weights]

    unary = np.log(np.clip(probabilities.astype(np.float32), 1e-6, 1.0))
    q = probabilities.astype(np.float32).copy()
    q_p = np.zeros((c, h + 2 * pad, w + 2 * pad), np.float32)
    for _ in range(params.iterations):
        q_p[:, pad : pad + h, pad : pad + w] = q
        appearance = np.zeros_like(q)
        for (dy, dx), wt in zip(offsets, weights):
            appearance += wt * q_p[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        smooth = np.stack([cv2.GaussianBlur(q[k], (0, 0), params.gaussian_sxy) for k in range(c)])
        logits = unary + params.bilateral_weight * appearance + params.gaussian_weight * smooth
        logits -= logits.max(axis=0, keepdims=True)
        np.exp(logits, out=logits)
        q = logits / logits.sum(axis=0, keepdims=True)
    return q


class CrfRefiner:
    """Offline stage: SemanticMap with probabilities -> SemanticMap with CRF-refined labels.

    Needs ``probabilities`` in the map (``SemanticSettings(keep_probabilities=True)``); they are
    resized (bilinear) to the image first. The drivable mask, if present, is recomputed.

    Attributes:
        last_ms: wall time of the last call, milliseconds.
    """

    def __init__(self, params: CrfParams = CrfParams(), drivable_ids=(0,)) -> None:
        self.params = params
        self.drivable_ids = tuple(drivable_ids)
        self.last_ms: float | None = None

    def __call__(self, image_bgr: np.ndarray, sem: SemanticMap) -> SemanticMap:
        from segstream.pipelines.tasks.road import drivable_mask

        if sem.probabilities is None:
            raise ConfigError("CRF refinement needs probabilities in the SemanticMap: set keep_probabilities=True")
        t0 = time.perf_counter()
        h, w = sem.size_hw
        probs = sem.probabilities
        if probs.shape[1:] != (h, w):
            probs = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in probs])
        q = dense_crf(image_bgr, probs, self.params)
        ids = np.argmax(q, axis=0).astype(np.uint8)
        mask = drivable_mask(ids, self.drivable_ids) if sem.drivable_mask is not None else None
        self.last_ms = (time.perf_counter() - t0) * 1000
        return SemanticMap(
            class_ids=ids, class_names=sem.class_names, palette_bgr=sem.palette_bgr, probabilities=q, drivable_mask=mask
        )
