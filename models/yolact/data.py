"""COCO-format instance data for YOLACT: reading, SSD-style augmentation, batching.

Annotation JSON + image folder. Categories are mapped to 0-based labels in ascending category
id order (for COCO's 80 classes this equals the official ``COCO_LABEL_MAP``). Crowd annotations
are kept as crowd regions (last in each image's list) for matching, as the official loader does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import cv2
import numpy as np

from segstream.pipelines.tasks.boxes import box_iou
from segstream.stream.errors import ConfigError


@dataclass
class Sample:
    """One image and its instances, in pixels.

    Attributes:
        image_bgr: (H, W, 3) uint8. boxes: (n, 4) float32 x1 y1 x2 y2 pixels (crowds last).
        labels: (n,) int64 0-based. masks: (n, H, W) uint8 0/1. num_crowds: trailing crowd entries.
        image_id: COCO image id. file_name: image file name.
    """

    image_bgr: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    num_crowds: int
    image_id: int
    file_name: str


class CocoInstances:
    """Reads a COCO-format annotation file and its image folder.

    Args:
        annotations: path to the JSON file. images: folder of the images it names.

    Attributes:
        class_names: category names by 0-based label. category_ids: COCO id by label.
        image_ids: ids of images with at least one non-crowd annotation, in file order.
    """

    def __init__(self, annotations: str, images: str) -> None:
        from pycocotools.coco import COCO

        for what, path, isdir in (("annotation file", annotations, False), ("image folder", images, True)):
            if not path or not (os.path.isdir(path) if isdir else os.path.isfile(path)):
                raise ConfigError(f"{what} {path!r} not found; give --annotations FILE.json and --images DIR")
        try:
            with open(annotations, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{annotations}: not a readable COCO JSON file ({exc})") from None
        missing = [k for k in ("images", "annotations", "categories") if k not in data]
        if missing:
            raise ConfigError(f"{annotations}: COCO JSON lacks {missing}; expected images, annotations and categories")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = tuple(int(c["id"]) for c in cats)
        self.class_names = tuple(str(c["name"]) for c in cats)
        self._label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        self.images_dir = images
        self.image_ids = [
            int(im["id"])
            for im in data["images"]
            if any(not a.get("iscrowd", 0) for a in self.coco.imgToAnns.get(im["id"], []))
        ]
        self.all_image_ids = [int(im["id"]) for im in data["images"]]

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> str:
        return os.path.join(self.images_dir, self.coco.imgs[image_id]["file_name"])

    def load(self, image_id: int) -> Sample:
        """The image and its annotations (crowds last)."""
        info = self.coco.imgs[image_id]
        path = self.image_path(image_id)
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigError(f"{path}: cannot read image {info['file_name']!r} named in the annotations")
        h, w = img.shape[:2]
        anns = sorted(self.coco.imgToAnns.get(image_id, []), key=lambda a: int(a.get("iscrowd", 0)))
        boxes, labels, masks = [], [], []
        crowds = 0
        for a in anns:
            x, y, bw, bh = a["bbox"]
            if bw < 1 or bh < 1:
                continue
            boxes.append([x, y, x + bw, y + bh])
            labels.append(self._label_of[int(a["category_id"])])
            masks.append(self.coco.annToMask(a) if "segmentation" in a else _box_mask(h, w, x, y, bw, bh))
            crowds += int(a.get("iscrowd", 0))
        return Sample(
            image_bgr=img,
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64),
            masks=np.asarray(masks, np.uint8).reshape(-1, h, w),
            num_crowds=crowds,
            image_id=image_id,
            file_name=info["file_name"],
        )


def _box_mask(h, w, x, y, bw, bh) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[int(y) : int(np.ceil(y + bh)), int(x) : int(np.ceil(x + bw))] = 1
    return m


# --------------------------------------------------------------------------- augmentation


def _iou_with_rect(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    return box_iou(boxes, rect[None])[:, 0]


class SSDAugmentation:
    """The official training augmentation, in order: photometric distortion, expand (p 0.5, up to
    4x, mean fill), SSD random crop (min IoU from None/0.1/0.3/0.7/0.9/any, centres inside),
    horizontal mirror (p 0.5). Resizing and normalisation happen in ``to_network``.

    Args:
        mean_bgr: fill colour for expand (0-255, BGR). rng: numpy Generator.
    """

    def __init__(
        self,
        mean_bgr=(103.94, 116.78, 123.68),
        rng: np.random.Generator | None = None,
        photometric: bool = True,
        expand: bool = True,
        crop: bool = True,
        mirror: bool = True,
    ) -> None:
        self.mean_bgr = np.asarray(mean_bgr, np.float32)
        self.rng = rng or np.random.default_rng()
        self.photometric, self.expand, self.crop, self.mirror = photometric, expand, crop, mirror

    def __call__(self, img: np.ndarray, masks: np.ndarray, boxes: np.ndarray, labels: np.ndarray, num_crowds: int):
        """img float32 (H, W, 3) BGR; masks (n, H, W) uint8; boxes (n, 4) pixels. Returns the same, augmented."""
        r = self.rng
        if self.photometric:
            img = self._photometric(img)
        if self.expand and r.random() < 0.5:
            h, w = img.shape[:2]
            ratio = r.uniform(1, 4)
            left, top = int(r.uniform(0, w * ratio - w)), int(r.uniform(0, h * ratio - h))
            big = np.empty((int(h * ratio), int(w * ratio), 3), np.float32)
            big[:] = self.mean_bgr
            big[top : top + h, left : left + w] = img
            bm = np.zeros((len(masks), big.shape[0], big.shape[1]), np.uint8)
            bm[:, top : top + h, left : left + w] = masks
            img, masks = big, bm
            boxes = boxes + np.array([left, top, left, top], np.float32)
        if self.crop:
            img, masks, boxes, labels, num_crowds = self._random_crop(img, masks, boxes, labels, num_crowds)
        if self.mirror and r.random() < 0.5:
            w = img.shape[1]
            img = img[:, ::-1].copy()
            masks = masks[:, :, ::-1].copy()
            boxes = boxes.copy()
            boxes[:, 0::2] = w - boxes[:, 2::-2]
        return img, masks, boxes, labels, num_crowds

    def _photometric(self, img: np.ndarray) -> np.ndarray:
        r = self.rng
        img = img.copy()
        if r.random() < 0.5:
            img += r.uniform(-32, 32)
        contrast_first = r.random() < 0.5
        if contrast_first and r.random() < 0.5:
            img *= r.uniform(0.5, 1.5)
        hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.float32), cv2.COLOR_BGR2HSV)
        if r.random() < 0.5:
            hsv[:, :, 1] *= r.uniform(0.5, 1.5)
        if r.random() < 0.5:
            hsv[:, :, 0] = (hsv[:, :, 0] + r.uniform(-18, 18)) % 360
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if not contrast_first and r.random() < 0.5:
            img *= r.uniform(0.5, 1.5)
        if r.random() < 0.5:
            img = img[:, :, r.permutation(3)]
        return np.ascontiguousarray(img, dtype=np.float32)

    def _random_crop(self, img, masks, boxes, labels, num_crowds):
        r = self.rng
        h, w = img.shape[:2]
        options = (None, 0.1, 0.3, 0.7, 0.9, -np.inf)
        while True:
            mode = options[r.integers(len(options))]
            if mode is None or len(boxes) == 0:
                return img, masks, boxes, labels, num_crowds
            for _ in range(50):
                cw, ch = r.uniform(0.3 * w, w), r.uniform(0.3 * h, h)
                if not 0.5 <= ch / cw <= 2:
                    continue
                left, top = r.uniform(0, w - cw), r.uniform(0, h - ch)
                rect = np.array([int(left), int(top), int(left + cw), int(top + ch)])
                overlap = _iou_with_rect(boxes, rect)
                if overlap.max() < mode:
                    continue
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                inside = (
                    (rect[0] < centres[:, 0])
                    & (rect[1] < centres[:, 1])
                    & (rect[2] > centres[:, 0])
                    & (rect[3] > centres[:, 1])
                )
                crowd = np.zeros(len(boxes), bool)
                if num_crowds:
                    crowd[-num_crowds:] = True
                if not (inside & ~crowd).any():
                    continue
                nb = boxes[inside].copy()
                nb[:, :2] = np.maximum(nb[:, :2], rect[:2]) - rect[:2]
                nb[:, 2:] = np.minimum(nb[:, 2:], rect[2:]) - rect[:2]
                return (
                    img[rect[1] : rect[3], rect[0] : rect[2]],
                    masks[inside][:, rect[1] : rect[3], rect[0] : rect[2]],
                    nb.astype(np.float32),
                    labels[inside],
                    int((inside & crowd).sum()),
                )


def to_network(
    img_bgr: np.ndarray,
    masks: np.ndarray,
    boxes: np.ndarray,
    size: int,
    mean,
    std,
    color_order: str,
    min_box_px: float = 4.0,
):
    """Resize to (size, size) ignoring aspect, normalise, and put boxes in [0, 1].

    Returns:
        image (3, size, size) float32, masks (n, size, size) float32, boxes (n, 4) float32
        normalised, keep (n,) bool (boxes at least ``min_box_px`` wide and high at the input size).
    """
    h, w = img_bgr.shape[:2]
    img = cv2.resize(img_bgr.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    if color_order == "RGB":
        img = img[:, :, ::-1]
    img = (img - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    if len(masks):
        m = cv2.resize(masks.transpose(1, 2, 0).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        m = m.reshape(size, size, -1).transpose(2, 0, 1)
    else:
        m = np.zeros((0, size, size), np.float32)
    nb = (boxes / np.array([w, h, w, h], np.float32)).astype(np.float32).reshape(-1, 4)
    nb = np.clip(nb, 0, 1)
    keep = ((nb[:, 2] - nb[:, 0]) * size >= min_box_px) & ((nb[:, 3] - nb[:, 1]) * size >= min_box_px)
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32), np.ascontiguousarray(m, np.float32), nb, keep
