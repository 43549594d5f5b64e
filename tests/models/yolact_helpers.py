"""Generated data and small models for the YOLACT tests: coloured shapes on textured
backgrounds written as a COCO-format dataset, and a tiny network trained on it once per
test session."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

SHAPE_CLASSES = ("disc", "box", "triangle")


def reference_dir() -> Path:
    """``../shared/reference`` next to the repository."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"


def textured_background(rng: np.random.Generator, size_hw) -> np.ndarray:
    h, w = size_hw
    noise = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    bg = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    stripes = (np.sin(np.arange(w) / rng.uniform(3, 9)) * 25).astype(np.int16)
    bg = np.clip(bg.astype(np.int16) // 2 + 60 + stripes[None, :, None], 0, 255).astype(np.uint8)
    return bg


def draw_shape(rng: np.random.Generator, size_hw, label: int) -> np.ndarray:
    """A (H, W) uint8 0/1 mask of one shape of class ``label`` at a random place and size."""
    h, w = size_hw
    m = np.zeros((h, w), np.uint8)
    r = int(rng.uniform(0.12, 0.22) * min(h, w))
    cx, cy = int(rng.uniform(r, w - r)), int(rng.uniform(r, h - r))
    if label == 0:
        cv2.circle(m, (cx, cy), r, 1, -1)
    elif label == 1:
        cv2.rectangle(m, (cx - r, cy - int(r * 0.8)), (cx + r, cy + int(r * 0.8)), 1, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m


def shapes_image(rng, size_hw=(120, 160), max_objects=3):
    """(image_bgr, masks (n, H, W) uint8, labels (n,)) with non-overlapping-ish shapes."""
    img = textured_background(rng, size_hw)
    masks, labels = [], []
    occupied = np.zeros(size_hw, bool)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            label = int(rng.integers(0, len(SHAPE_CLASSES)))
            m = draw_shape(rng, size_hw, label)
            if (m.astype(bool) & occupied).sum() == 0:
                break
        else:
            continue
        occupied |= m.astype(bool)
        colour = [(40, 40, 230), (230, 60, 40), (40, 220, 60)][label]
        img[m.astype(bool)] = colour
        masks.append(m)
        labels.append(label)
    return img, np.asarray(masks, np.uint8), np.asarray(labels, np.int64)


def write_shapes_dataset(folder: str, n_images: int, seed: int = 0, size_hw=(120, 160)) -> tuple[str, str]:
    """Writes ``images/*.png`` and ``annotations.json`` (polygon segmentations); returns both paths."""
    rng = np.random.default_rng(seed)
    img_dir = os.path.join(folder, "images")
    os.makedirs(img_dir, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        img, masks, labels = shapes_image(rng, size_hw)
        name = f"img_{i:03d}.png"
        cv2.imwrite(os.path.join(img_dir, name), img)
        images.append({"id": i + 1, "file_name": name, "height": size_hw[0], "width": size_hw[1]})
        for m, lab in zip(masks, labels):
            cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            poly = [c.reshape(-1).astype(float).tolist() for c in cs if len(c) >= 3]
            ys, xs = np.nonzero(m)
            x0, y0 = float(xs.min()), float(ys.min())
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(lab) + 1,
                    "segmentation": poly,
                    "area": float(m.sum()),
                    "bbox": [x0, y0, float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)],
                    "iscrowd": 0,
                }
            )
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(SHAPE_CLASSES)]
    path = os.path.join(folder, "annotations.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return path, img_dir


@functools.lru_cache(maxsize=1)
def trained_tiny():
    """A yolact_tiny trained on 8 generated images, shared by the tests of one session.

    Returns:
        (net, cfg, report, annotations path, images dir).
    """
    import torch

    from segstream.models.yolact.config import get_config
    from segstream.models.yolact.data import CocoInstances
    from segstream.models.yolact.model import Yolact
    from segstream.models.yolact.train import train_yolact

    folder = tempfile.mkdtemp(prefix="yolact_shapes_")
    atexit.register(shutil.rmtree, folder, True)
    ann, imgs = write_shapes_dataset(folder, 8, seed=1)
    data = CocoInstances(ann, imgs)
    cfg = get_config("yolact_tiny").with_classes(data.class_names)
    torch.manual_seed(0)
    net = Yolact(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)  # one thread: steadier than two on a shared 2-core machine
    try:
        report = train_yolact(
            net,
            data,
            iters=TRAIN_ITERS,
            batch_size=4,
            lr=TRAIN_LR,
            seed=0,
            augment=False,
            optimizer="adam",
            progress=False,
            warmup_iters=20,
        )
    finally:
        torch.set_num_threads(threads)
    return net, cfg, report, ann, imgs


TRAIN_ITERS = 100
TRAIN_LR = 2e-3
TRAIN_THREADS = 1
