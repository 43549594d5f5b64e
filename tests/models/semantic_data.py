"""Generated road-like scenes with exact labels (Cityscapes train ids), for the semantic tests."""

from __future__ import annotations

import os

import cv2
import numpy as np

ROAD, TERRAIN, SKY, CAR = 0, 9, 10, 13


def road_scene(seed: int, size_hw=(64, 128)) -> tuple[np.ndarray, np.ndarray]:
    """A sky band, a road trapezoid to the bottom edge, terrain beside it and one car.

    Returns:
        ((H, W, 3) uint8 BGR image with pixel noise, (H, W) uint8 train-id label).
    """
    rng = np.random.default_rng(seed)
    h, w = size_hw
    label = np.full((h, w), TERRAIN, np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.45))
    label[:horizon] = SKY
    cx = w / 2 + rng.uniform(-0.1, 0.1) * w
    top_half, bottom_half = w * rng.uniform(0.04, 0.1), w * rng.uniform(0.35, 0.5)
    road = np.array(
        [[cx - top_half, horizon], [cx + top_half, horizon], [cx + bottom_half, h], [cx - bottom_half, h]], np.int32
    )
    cv2.fillPoly(label, [road], ROAD)
    cw, ch = int(w * rng.uniform(0.12, 0.2)), int(h * rng.uniform(0.12, 0.2))
    x0 = int(cx + rng.uniform(-0.25, 0.1) * w)
    y0 = int(rng.uniform(horizon + 2, h - ch - 2))
    label[y0 : y0 + ch, x0 : x0 + cw] = CAR
    colours = {ROAD: (90, 90, 95), TERRAIN: (40, 140, 70), SKY: (220, 170, 120), CAR: (40, 30, 170)}
    img = np.zeros((h, w, 3), np.float32)
    for cid, bgr in colours.items():
        jitter = rng.uniform(-15, 15, 3)
        img[label == cid] = np.asarray(bgr, np.float32) + jitter
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), label


def write_dataset(root: str, n: int, size_hw=(64, 128), seed: int = 0) -> tuple[str, str]:
    """``root/images/scene_k.png`` and ``root/labels/scene_k.png`` (plain layout); returns both folders."""
    images, labels = os.path.join(root, "images"), os.path.join(root, "labels")
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    for k in range(n):
        img, lab = road_scene(seed + k, size_hw)
        cv2.imwrite(os.path.join(images, f"scene_{k}.png"), img)
        cv2.imwrite(os.path.join(labels, f"scene_{k}.png"), lab)
    return images, labels
