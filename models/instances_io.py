"""What the instance families (YOLACT, Mask R-CNN) share around their runners: opening an
exported artifact for ``--backend onnxruntime``, the ``predict`` output (COCO-style detections
JSON with RLE masks, overlays) and the printed and written COCO figures of ``eval``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import cv2
import numpy as np

from segstream.models.options import EvalOptions, PredictOptions
from segstream.stream.errors import ConfigError, ModelError


def onnx_backend(model: str, weights: str | None, backend: str, what: str):
    """For ``--backend onnxruntime``: the ONNX Runtime backend of ``--weights`` (an .onnx file
    exported from ``--model``); for ``--backend torch``: None, once ``--weights`` is known not to
    be an ONNX file. ``what`` names the family in messages."""
    if not weights:
        raise ConfigError(
            f"--weights is required: a {what} .pth checkpoint, or an .onnx file with --backend onnxruntime"
        )
    is_onnx = weights.lower().endswith(".onnx")
    if backend == "onnxruntime":
        if not is_onnx:
            raise ConfigError(
                f"--backend onnxruntime needs an .onnx file, got {weights!r}; export one with 'segstream export'"
            )
        from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend

        be = OnnxRuntimeBackend(weights, providers=("cpu",))
        if be.metadata is not None and be.metadata.model != model:
            raise ModelError(
                f"{weights}: exported from {be.metadata.model!r}, but --model is {model!r}; pass --model {be.metadata.model}"
            )
        return be
    if is_onnx:
        raise ConfigError(f"{weights} is an ONNX file; run it with --backend onnxruntime")
    return None


def _read_image(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ConfigError(f"{path}: cannot read it as an image (missing, empty or not an image file)")
    return img


def detections_json(inst, image_name: str) -> list[dict]:
    """One entry per detection: image, label, label_name, score, bbox [x, y, w, h] px, segmentation (COCO RLE)."""
    from pycocotools import mask as mask_util

    names = inst.label_names()
    out = []
    for i in range(len(inst)):
        x1, y1, x2, y2 = (float(v) for v in inst.boxes_xyxy[i])
        entry = {
            "image": image_name,
            "label": int(inst.labels[i]),
            "label_name": names[i],
            "score": round(float(inst.scores[i]), 5),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
        }
        if inst.masks is not None:
            rle = mask_util.encode(np.asfortranarray(inst.masks[i].astype(np.uint8)))
            entry["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        out.append(entry)
    return out


def predict_instances(opts: PredictOptions, make_runner: Callable) -> int:
    """``segstream predict`` for an instance family: runs the model on images; writes the
    detections JSON (``detections_json``) and/or overlays.

    Args:
        make_runner: the family's ``make_runner(model, weights, backend, **settings)``; its runner
            maps a BGR image to ``Instances``.
    """
    from segstream.pipelines.tasks.overlay import OverlayStyle, draw_instances

    if opts.top_k is not None and opts.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {opts.top_k}")
    if not 0 <= opts.score_threshold <= 1:
        raise ConfigError(f"--score-threshold must be in [0, 1], got {opts.score_threshold}")
    if not opts.json_out and not opts.overlay:
        raise ConfigError("nothing to write: give --json OUT.json and/or --overlay DIR")
    images = [(p, _read_image(p)) for p in opts.images]
    runner = make_runner(
        opts.model,
        opts.weights,
        opts.backend,
        score_threshold=opts.score_threshold,
        max_detections=opts.top_k,
        mask_threshold=opts.mask_threshold,
    )
    entries = []
    style = OverlayStyle()
    if opts.overlay:
        os.makedirs(opts.overlay, exist_ok=True)
    for path, img in images:
        inst = runner(img)
        entries.extend(detections_json(inst, os.path.basename(path)))
        if opts.overlay:
            out = img.copy()
            draw_instances(out, inst, style)
            stem = os.path.splitext(os.path.basename(path))[0]
            if not cv2.imwrite(os.path.join(opts.overlay, stem + ".png"), out):
                raise ConfigError(f"cannot write the overlay of {path} into {opts.overlay}")
        print(f"{os.path.basename(path)}: {len(inst)} detections", file=sys.stderr)
    if opts.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(opts.json_out)), exist_ok=True)
        with open(opts.json_out, "w", encoding="utf-8") as f:
            json.dump(entries, f)
    return 0


def report_coco(opts: EvalOptions, figures: dict) -> int:
    """Prints box and mask AP / AP50 / AP75 and writes them to ``--json`` if given; returns 0."""
    for kind in ("box", "mask"):
        f = figures[kind]
        print(f"{kind:>4}: AP {f['AP'] * 100:.2f}  AP50 {f['AP50'] * 100:.2f}  AP75 {f['AP75'] * 100:.2f}")
        if f.get("per_class_AP50"):
            print("      AP50 " + "  ".join(f"{name} {v * 100:.2f}" for name, v in f["per_class_AP50"].items()))
            for area, row in f.get("per_class_AP50_by_area", {}).items():
                print(
                    f"      AP50 {area:<6} "
                    + "  ".join(f"{name} {'-' if v is None else f'{v * 100:.2f}'}" for name, v in row.items())
                )
    if opts.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(opts.json_out)), exist_ok=True)
        with open(opts.json_out, "w", encoding="utf-8") as fh:
            json.dump({"model": opts.model, "weights": opts.weights, **figures}, fh, indent=2)
    return 0
