"""Mask R-CNN pre- and post-processing on numpy/OpenCV, as torchvision's
``GeneralizedRCNNTransform`` computes them.

The exported graph (``models/maskrcnn/zoo.py`` ``MaskRCNNGraph``) takes the resized,
normalised image and returns, for N detections in the graph's input pixels:

- ``boxes`` (N, 4) float32 x1 y1 x2 y2; ``labels`` (N,) int64, 1-based (0 is background);
- ``scores`` (N,) float32, sorted best first (per-class NMS and the 0.05 score floor ran inside);
- ``mask_probs`` (N, 28, 28) float32: each box's class mask, sigmoid, not yet pasted.

Here: the frame is resized so that its shorter side is ``min_size`` unless the longer side
would exceed ``max_size`` (bilinear, aspect kept), boxes are scaled back to the frame and each
28x28 mask is pasted into its box at frame resolution (bilinear, thresholded at 0.5), giving the
same ``Instances`` that YOLACT produces. Settings come from the artifact's metadata; no torch.
Nothing here modifies its inputs.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from segstream.pipelines.tasks.inference import instance_artifact
from segstream.pipelines.tasks.masks import bilinear_matrix
from segstream.pipelines.tasks.results import Instances
from segstream.pipelines.tasks.yolact import YolactFrameInfo, YolactPreprocess
from segstream.stream.backends.base import ArtifactMetadata, Backend
from segstream.stream.errors import ModelError

#: Names of the exported graph's input and outputs.
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "labels", "scores", "mask_probs")


def model_size_hw(size_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """(h, w) torchvision resizes a frame of ``size_hw`` to: scale = min(min_size / short side,
    max_size / long side), each side times the scale, floored (in double precision, as eager
    torchvision computes it)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    scale = min(min_size / min(h, w), max_size / max(h, w))
    return max(1, math.floor(h * scale)), max(1, math.floor(w * scale))


#: What post-processing needs to undo pre-processing: ``size_hw`` (H, W) of the frame and
#: ``input_size_hw`` (h, w) the network saw; the same record as YOLACT's.
MaskRCNNFrameInfo = YolactFrameInfo


class MaskRCNNPreprocess:
    """BGR frame -> float bilinear resize by the min/max size rule (align_corners=False, no
    antialias, like ``F.interpolate``) -> RGB -> (x - mean) / std -> (1, 3, h, w) float32.

    Args:
        min_size / max_size: torchvision's transform settings (800 / 1333 for the released models).
        mean / std: per channel on 0-255 values, in ``color_order``.
        color_order: "RGB" (torchvision) or "BGR".
    """

    def __init__(
        self,
        min_size: int = 800,
        max_size: int = 1333,
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375),
        color_order: str = "RGB",
    ) -> None:
        if not 16 <= min_size <= max_size:
            raise ModelError(f"Mask R-CNN resize: need 16 <= min_size <= max_size, got {min_size} and {max_size}")
        if color_order not in ("RGB", "BGR"):
            raise ModelError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.mean, self.std, self.color_order = tuple(mean), tuple(std), color_order

    @classmethod
    def from_metadata(cls, meta: ArtifactMetadata) -> MaskRCNNPreprocess:
        r = meta.extra.get("resize")
        if not isinstance(r, dict) or "min_size" not in r or "max_size" not in r:
            raise ModelError(
                f"{meta.model}: artifact metadata lacks extra.resize {{min_size, max_size}}; "
                "re-export it with 'segstream export'"
            )
        return cls(int(r["min_size"]), int(r["max_size"]), meta.mean, meta.std, meta.color_order)

    def __call__(self, image_bgr: np.ndarray) -> tuple[dict[str, np.ndarray], MaskRCNNFrameInfo]:
        """Args:
            image_bgr: (H, W, 3) uint8 BGR frame (not modified).

        Returns:
            ({"image": (1, 3, h, w) float32}, MaskRCNNFrameInfo).
        """
        size_hw = model_size_hw(image_bgr.shape[:2], self.min_size, self.max_size)
        # The same float resize, colour order and normalisation as YOLACT's, to another size.
        return YolactPreprocess(size_hw, self.mean, self.std, self.color_order)(image_bgr)


def scale_boxes(boxes_xyxy: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Boxes from the network's input pixels to the frame's (torchvision's ``resize_boxes``:
    float32 ratios per axis, no clamping)."""
    rh = np.float32(to_hw[0]) / np.float32(from_hw[0])
    rw = np.float32(to_hw[1]) / np.float32(from_hw[1])
    return (boxes_xyxy.astype(np.float32) * np.array([rw, rh, rw, rh], np.float32)).astype(np.float32)


def paste_masks(
    mask_probs: np.ndarray, boxes_xyxy: np.ndarray, size_hw: tuple[int, int], threshold: float = 0.5, padding: int = 1
) -> np.ndarray:
    """Pastes each M x M mask into its box on an image, as torchvision's ``paste_masks_in_image``.

    The mask is padded by ``padding`` zero cells, its box grown by (M + 2 padding) / M about the
    centre and truncated to integers, the padded mask resized bilinearly to the box's integer
    size (x2 - x1 + 1, y2 - y1 + 1) and the part inside the image kept, thresholded.

    Args:
        mask_probs: (N, M, M) float32 probabilities.
        boxes_xyxy: (N, 4) float32 boxes in the image's pixels.
        size_hw: (H, W) of the image.
        threshold: pixels with probability > threshold are set.

    Returns:
        (N, H, W) bool.
    """
    n = len(mask_probs)
    img_h, img_w = int(size_hw[0]), int(size_hw[1])
    out = np.zeros((n, img_h, img_w), dtype=bool)
    if n == 0:
        return out
    m = mask_probs.shape[-1]
    padded = np.pad(mask_probs.astype(np.float32), ((0, 0), (padding, padding), (padding, padding)))
    scale = np.float32((m + 2 * padding) / m)
    b = boxes_xyxy.astype(np.float32)
    half_w = (b[:, 2] - b[:, 0]) * np.float32(0.5) * scale
    half_h = (b[:, 3] - b[:, 1]) * np.float32(0.5) * scale
    cx = (b[:, 2] + b[:, 0]) * np.float32(0.5)
    cy = (b[:, 3] + b[:, 1]) * np.float32(0.5)
    grown = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1).astype(np.int64)
    for i, (x0, y0, x1, y1) in enumerate(grown.tolist()):
        w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        xa, xb = max(x0, 0), min(x1 + 1, img_w)
        ya, yb = max(y0, 0), min(y1 + 1, img_h)
        if xa >= xb or ya >= yb:
            continue
        # Only the rows and columns of the resized mask that land inside the image.
        wy = bilinear_matrix(h, m + 2 * padding)[0][ya - y0 : yb - y0]
        wx = bilinear_matrix(w, m + 2 * padding)[0][xa - x0 : xb - x0]
        tmp = cv2.gemm(wy, padded[i], 1.0, None, 0.0)  # type: ignore[call-overload]  # cv2 stubs reject src3=None, which OpenCV accepts
        block = cv2.gemm(tmp, wx, 1.0, None, 0.0, flags=cv2.GEMM_2_T)  # type: ignore[call-overload]  # cv2 stubs reject src3=None, which OpenCV accepts
        out[i, ya:yb, xa:xb] = block > threshold
    return out


class MaskRCNNPostprocess:
    """Network outputs -> ``Instances`` in the frame's pixels.

    Args:
        class_names: foreground names; network label k is ``class_names[k - 1]``.
        score_threshold: drop detections with score <= this (the graph already drops < 0.05).
        max_detections: keep at most this many, best first.
        mask_threshold: probability above which a mask pixel is set (torchvision's users: 0.5).
        masks: paste masks (False: boxes only).
    """

    def __init__(
        self,
        class_names=(),
        *,
        score_threshold: float = 0.0,
        max_detections: int = 100,
        mask_threshold: float = 0.5,
        masks: bool = True,
    ) -> None:
        for name, v in (("score_threshold", score_threshold), ("mask_threshold", mask_threshold)):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        self.class_names = tuple(class_names)
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.mask_threshold = mask_threshold
        self.masks = masks

    def __call__(self, outputs: dict[str, np.ndarray], info: MaskRCNNFrameInfo) -> Instances:
        """Args:
        outputs: the backend's outputs (see the module docstring). info: from ``MaskRCNNPreprocess``.
        """
        missing = [n for n in OUTPUT_NAMES if n not in outputs]
        if missing:
            raise ModelError(
                f"Mask R-CNN outputs lack {missing}; expected {list(OUTPUT_NAMES)} (export with 'segstream export')"
            )
        boxes, labels, scores, probs = (outputs[n] for n in OUTPUT_NAMES)
        keep = np.flatnonzero(scores > self.score_threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")][: self.max_detections]
        boxes_px = scale_boxes(boxes[keep].reshape(-1, 4), info.input_size_hw, info.size_hw)
        masks = paste_masks(probs[keep], boxes_px, info.size_hw, self.mask_threshold) if self.masks else None
        return Instances(
            boxes_xyxy=boxes_px,
            scores=scores[keep].astype(np.float32),
            labels=labels[keep].astype(np.int64) - 1,
            masks=masks,
            class_names=self.class_names,
        )


class MaskRCNNRunner:
    """Pre-processing, the backend call and post-processing for one BGR image; the same
    interface as ``pipelines.yolact.YolactRunner``. No threads.

    Args:
        backend: a ``Backend`` running an exported Mask R-CNN (with segstream metadata).
        score_threshold / max_detections: post-processing settings (None: keep what the graph gives).
        mask_threshold: mask probability threshold (None: 0.5).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        mask_threshold: float | None = None,
    ) -> None:
        meta = instance_artifact(backend, "maskrcnn", "Mask R-CNN", [INPUT_NAME], OUTPUT_NAMES)
        self.backend = backend
        self.metadata = meta
        self.preprocess = MaskRCNNPreprocess.from_metadata(meta)
        settings: dict[str, Any] = {
            k: v
            for k, v in (
                ("score_threshold", score_threshold),
                ("max_detections", max_detections),
                ("mask_threshold", mask_threshold),
            )
            if v is not None
        }
        self.postprocess = MaskRCNNPostprocess(meta.class_names, **settings)

    def __call__(self, image_bgr: np.ndarray) -> Instances:
        """Args:
        image_bgr: (H, W, 3) uint8. Returns: Instances in its pixel coordinates."""
        feeds, info = self.preprocess(image_bgr)
        return self.postprocess(self.backend.run(feeds), info)
