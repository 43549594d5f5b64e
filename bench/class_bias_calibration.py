"""Per-class logit offsets for a semantic model, tuned for mIoU on a tuning set (a script, not a
test). Class-weighted training (``train --class-weights``) shifts the decision between frequent
and rare classes; this finds the offsets that undo the part of that shift which costs IoU, by
coordinate ascent over the classes present in the labels, on logits computed once.

With ``--write OUT.pth`` the offsets are added to the bias of the model's final classifier conv
in a copy of the checkpoint (and listed in its metadata), so its exports carry them with no
runtime change. Tune on one generated set, report on another:

    .venv/bin/python bench/class_bias_calibration.py --model deeplab_tiny \\
        --weights data/deeplab_tiny_stage5.pth --input-size 288x512 \\
        --images data/synth_tune/images --labels data/synth_tune/labels \\
        --write weights/deeplab_tiny_synthetic.pth
    .venv/bin/python -m segstream eval --model deeplab_tiny --weights weights/deeplab_tiny_synthetic.pth \\
        --input-size 288x512 --images data/synth_val/images --labels data/synth_val/labels
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segstream.models.semantic.metrics import ConfusionMatrix  # noqa: E402
from segstream.stream.config import parse_size_hw  # noqa: E402


def model_logits(loaded, image_paths: list[str], label_dir: str, size_hw: tuple[int, int]):
    """(N, C, h, w) float16 logits at ``size_hw`` and (N, h, w) uint8 labels resized (nearest) to it."""
    import torch

    from segstream.models.semantic.zoo import artifact_metadata
    from segstream.pipelines.tasks.road import preprocess_image

    meta = artifact_metadata(loaded, input_size_hw=size_hw)  # the normalisation its exports apply
    logits, labels = [], []
    for path in image_paths:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        stem = os.path.splitext(os.path.basename(path))[0]
        lab = cv2.imread(os.path.join(label_dir, stem + ".png"), cv2.IMREAD_UNCHANGED)
        if img is None or lab is None:
            raise SystemExit(f"{path}: cannot read the image or its label {stem}.png in {label_dir}")
        x = preprocess_image(img, size_hw=size_hw, mean=meta.mean, std=meta.std, color_order=meta.color_order)
        with torch.no_grad():
            out = loaded.model(torch.from_numpy(x))["out"][0]
        if tuple(out.shape[1:]) != tuple(size_hw):
            out = torch.nn.functional.interpolate(out[None], size_hw, mode="bilinear", align_corners=False)[0]
        logits.append(out.numpy().astype(np.float16))
        labels.append(cv2.resize(lab, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST))
    return np.stack(logits), np.stack(labels)


def miou_with(logits: np.ndarray, labels: np.ndarray, bias: np.ndarray, num_classes: int) -> float:
    """mIoU (``ConfusionMatrix``, what ``segstream eval`` reports) of argmax(logits + bias)."""
    cm = ConfusionMatrix(num_classes)
    b = bias.astype(np.float32)[:, None, None]
    for lg, lab in zip(logits, labels):
        cm.update((lg.astype(np.float32) + b).argmax(0), lab)
    return float(cm.summary()["miou"])


def calibrate(
    logits: np.ndarray, labels: np.ndarray, num_classes: int, steps=(-1.0, -0.5, -0.25, 0.25, 0.5, 1.0), rounds: int = 2
) -> tuple[np.ndarray, float, float]:
    """Coordinate ascent on one offset per class present in ``labels``; returns (offsets, mIoU
    before, mIoU after). Only a strict gain moves an offset, so the result never scores lower."""
    present = [int(c) for c in np.unique(labels) if c < num_classes]
    bias = np.zeros(logits.shape[1], np.float32)
    base = best = miou_with(logits, labels, bias, num_classes)
    for _ in range(rounds):
        for c in present:
            for d in steps:
                trial = bias.copy()
                trial[c] += d
                m = miou_with(logits, labels, trial, num_classes)
                if m > best + 1e-5:
                    best, bias = m, trial
    return bias, base, best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="deeplab_tiny")
    ap.add_argument("--weights", required=True, help="the model's .pth checkpoint")
    ap.add_argument("--input-size", required=True, help="HxW the model runs at (the export size)")
    ap.add_argument("--images", required=True)
    ap.add_argument("--labels", required=True, help="class-id PNGs named like the images")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--write", metavar="OUT.pth", help="copy the checkpoint here with the offsets in its classifier bias"
    )
    args = ap.parse_args()
    from segstream.models.semantic.zoo import load_model, save_checkpoint

    size_hw = parse_size_hw(args.input_size)
    images = sorted(
        p for p in glob.glob(os.path.join(args.images, "*")) if p.lower().endswith((".png", ".jpg", ".jpeg"))
    )
    if not images:
        raise SystemExit(f"{args.images}: no .png/.jpg images")
    loaded = load_model(args.model, args.weights)
    logits, labels = model_logits(loaded, images, args.labels, size_hw)
    bias, before, after = calibrate(logits, labels, loaded.num_classes, rounds=args.rounds)
    names = loaded.class_names
    print(f"mIoU at {size_hw[0]}x{size_hw[1]} on {len(images)} images: {before:.4f} -> {after:.4f}")
    print("offsets: " + ", ".join(f"{names[c]} {bias[c]:+.2f}" for c in np.flatnonzero(bias)))
    if args.write:
        import torch

        key = loaded.spec.classifier_key.rsplit(".", 1)[0] + ".bias"
        state = loaded.model.state_dict()
        if key not in state:
            raise SystemExit(f"{args.model}: its final classifier ({key}) has no bias to hold the offsets")
        with torch.no_grad():
            state[key].add_(torch.from_numpy(bias))
        extra = {k: v for k, v in loaded.checkpoint.items() if k not in ("model", "num_classes", "class_names")}
        extra["class_bias"] = [round(float(v), 4) for v in bias]
        save_checkpoint(args.write, loaded, extra=extra)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
