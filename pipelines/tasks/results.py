"""Validated result types that pipelines put into ``Frame.results``.

Parallel numpy arrays checked at construction, with errors that say what was expected and
what was found (shapes in the names of the fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np


def _check(name: str, arr: np.ndarray, shape: tuple, dtype_kind: str | None = None) -> None:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(arr.shape)}")
    if dtype_kind is not None and arr.dtype.kind not in dtype_kind:
        raise ValueError(f"{name}: expected dtype kind {dtype_kind!r}, got {arr.dtype}")


@dataclass
class Instances:
    """N detected instances in one image, in pixel coordinates of that image.

    Attributes:
        boxes_xyxy: (N, 4) float32, x1 y1 x2 y2 in pixels.
        scores: (N,) float32 in [0, 1].
        labels: (N,) int64, 0-based class index without background.
        masks: (N, H, W) bool full-image masks, or None when the model has no masks.
        track_ids: (N,) int64 stable ids from a tracker, -1 where untracked, or None.
        class_names: names indexed by ``labels``.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    class_names: tuple[str, ...] = field(default_factory=tuple)
    mask_format: str = "rle"

    def __post_init__(self) -> None:
        if self.mask_format not in ("rle", "polygon", "none"):
            raise ValueError(f"Instances.mask_format: expected rle, polygon or none, got {self.mask_format!r}")
        n = len(self.boxes_xyxy) if isinstance(self.boxes_xyxy, np.ndarray) else None
        _check("Instances.boxes_xyxy", self.boxes_xyxy, (None, 4), "f")
        _check("Instances.scores", self.scores, (n,), "f")
        _check("Instances.labels", self.labels, (n,), "iu")
        if self.masks is not None:
            _check("Instances.masks", self.masks, (n, None, None), "b")
        if self.track_ids is not None:
            _check("Instances.track_ids", self.track_ids, (n,), "iu")

    def __len__(self) -> int:
        return len(self.boxes_xyxy)

    def __getitem__(self, index) -> Instances:
        """Select instances with a boolean mask, an index array or a slice."""
        return Instances(
            boxes_xyxy=self.boxes_xyxy[index],
            scores=self.scores[index],
            labels=self.labels[index],
            masks=None if self.masks is None else self.masks[index],
            track_ids=None if self.track_ids is None else self.track_ids[index],
            class_names=self.class_names,
            mask_format=self.mask_format,
        )

    @classmethod
    def empty(cls, size_hw: tuple[int, int] | None = None, class_names: tuple[str, ...] = ()) -> Instances:
        masks = None if size_hw is None else np.zeros((0, *size_hw), dtype=bool)
        return cls(
            boxes_xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            labels=np.zeros((0,), np.int64),
            masks=masks,
            class_names=class_names,
        )

    def label_names(self) -> list[str]:
        return [self.class_names[i] if 0 <= i < len(self.class_names) else str(int(i)) for i in self.labels]

    def to_json_dict(self, mask_format: str | None = None) -> list[dict]:
        """One dict per instance for JSON Lines and AR clients.

        Args:
            mask_format: "rle" (COCO compressed RLE), "polygon" ([[x, y], ...] outlines) or "none";
                None uses ``self.mask_format`` (set from ``instances.mask_format`` in the config).
        """
        from segstream.pipelines.tasks.masks import mask_polygons, rle_encode

        mask_format = mask_format or self.mask_format
        names = self.label_names()
        out = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (round(float(v), 2) for v in self.boxes_xyxy[i])
            item: dict[str, Any] = {
                "track_id": None if self.track_ids is None else int(self.track_ids[i]),
                "label": int(self.labels[i]),
                "label_name": names[i],
                "score": round(float(self.scores[i]), 4),
                "box_xyxy": [x1, y1, x2, y2],
            }
            if self.masks is not None and mask_format == "rle":
                item["mask_rle"] = rle_encode(self.masks[i])
            elif self.masks is not None and mask_format == "polygon":
                item["mask_polygons"] = mask_polygons(self.masks[i])
            out.append(item)
        return out


@dataclass
class SemanticMap:
    """A per-pixel class map for one image.

    Attributes:
        class_ids: (H, W) uint8 class index per pixel, at the image's size.
        class_names: names indexed by class id.
        palette_bgr: (C, 3) uint8 colour per class, BGR, or None.
        probabilities: (C, h, w) float32 softmax at model resolution, or None.
        drivable_mask: (H, W) bool free-space mask, or None when not computed.
    """

    class_ids: np.ndarray
    class_names: tuple[str, ...] = field(default_factory=tuple)
    palette_bgr: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    drivable_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check("SemanticMap.class_ids", self.class_ids, (None, None), "u")
        if self.class_ids.dtype != np.uint8:
            raise ValueError(f"SemanticMap.class_ids: expected uint8, got {self.class_ids.dtype}")
        if self.palette_bgr is not None:
            _check("SemanticMap.palette_bgr", self.palette_bgr, (None, 3), "u")
        if self.probabilities is not None:
            _check("SemanticMap.probabilities", self.probabilities, (None, None, None), "f")
        if self.drivable_mask is not None:
            _check("SemanticMap.drivable_mask", self.drivable_mask, self.class_ids.shape, "b")

    @property
    def size_hw(self) -> tuple[int, int]:
        return (int(self.class_ids.shape[0]), int(self.class_ids.shape[1]))

    def class_shares(self, step: int = 1) -> dict[str, float]:
        """Fraction of the image per class name (classes present only).

        Args:
            step: count every ``step``-th pixel in each direction (2 on a 720p map: a quarter of
                the work, shares within about 1e-3 of the full count).
        """
        ids = np.ascontiguousarray(self.class_ids[::step, ::step]) if step > 1 else self.class_ids
        counts = cv2.calcHist([ids], [0], None, [256], [0, 256]).ravel()  # ~2x faster than bincount
        total = float(ids.size)
        return {
            (self.class_names[i] if i < len(self.class_names) else str(i)): round(float(c) / total, 5)
            for i, c in enumerate(counts)
            if c
        }

    def to_json_dict(self) -> dict:
        """Class shares and, when computed, the drivable area's share and outline polygons."""
        from segstream.pipelines.tasks.masks import mask_polygons

        # Shares from every 2nd pixel of a map wider than 640 px (it came from a model at lower
        # resolution); the drivable share and outline from every pixel.
        out: dict = {
            "size_hw": list(self.size_hw),
            "class_shares": self.class_shares(2 if self.size_hw[1] > 640 else 1),
        }
        if self.drivable_mask is not None:
            drivable = np.ascontiguousarray(self.drivable_mask).view(np.uint8)
            out["drivable_share"] = round(cv2.countNonZero(drivable) / float(drivable.size), 5)
            out["drivable_polygons"] = mask_polygons(self.drivable_mask, epsilon_px=3.0, min_area_px=64.0)
        return out
