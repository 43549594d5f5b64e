"""COCO instances from CamVid's class-id labels (numpy, OpenCV and pycocotools; no torch).

CamVid (SegNet split) labels each pixel with a class id (0 Sky ... 8 Car, 9 Pedestrian,
10 Bicyclist, 11 void) but has no instance ids. The rule used here, and nothing else: every
8-connected component of Car -> ``car``, Pedestrian -> ``person`` or Bicyclist -> ``cyclist``
with at least ``min_area`` pixels (default 50) is one instance, iscrowd 0. Touching objects of
one class therefore merge into one instance (a row of parked cars, a group of pedestrians);
objects of different classes never merge.

The COCO JSON names each image by its basename in the image folder, so it feeds
``segstream train --model yolact_tiny --annotations coco.json --images DIR`` and
``segstream eval`` directly (``models.yolact.data.CocoInstances`` maps category ids 1, 2, 3 in
ascending order to labels 0 car, 1 person, 2 cyclist). Images without instances are listed
too: training skips them, evaluation scores their false positives.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import cv2
import numpy as np

from segstream.stream.errors import ConfigError

#: COCO categories written, in id order.
CATEGORIES: tuple[dict, ...] = (
    {"id": 1, "name": "car"},
    {"id": 2, "name": "person"},
    {"id": 3, "name": "cyclist"},
)
#: CamVid class id -> COCO category id.
CAMVID_CLASS_TO_CATEGORY_ID: dict[int, int] = {8: 1, 9: 2, 10: 3}
#: Largest CamVid class id (11 is void).
CAMVID_MAX_ID = 11
CONNECTIVITY = 8
DEFAULT_MIN_AREA = 50
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class LabelInstance:
    """One instance found in a label image.

    Attributes:
        category_id: COCO category id (1 car, 2 person, 3 cyclist).
        mask: (H, W) uint8, 1 on the component's pixels, 0 elsewhere.
        bbox_xywh: (x, y, w, h) pixels, the component's bounding box (w, h in whole pixels).
        area: pixel count of the component.
    """

    category_id: int
    mask: np.ndarray
    bbox_xywh: tuple[int, int, int, int]
    area: int


@dataclass(frozen=True)
class InstanceConversion:
    """A converted dataset.

    Attributes:
        coco: the COCO instances dict (images, annotations, categories, info).
        counts: instances per category name, in category id order.
    """

    coco: dict
    counts: dict[str, int]

    def write_json(self, path: str) -> None:
        """Write ``coco`` as JSON to ``path`` (its folder is created if missing)."""
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.coco, f)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}; give a writable --out file") from None


def label_instances(label: np.ndarray, min_area: int = DEFAULT_MIN_AREA) -> list[LabelInstance]:
    """The instances of one CamVid label image, by the module's rule.

    Args:
        label: (H, W) uint8 CamVid class ids 0..11.
        min_area: smallest component kept, pixels (>= 1).

    Returns:
        Instances ordered by category id, then by the first pixel of each component in raster order.
    """
    if not isinstance(label, np.ndarray) or label.ndim != 2 or label.dtype != np.uint8:
        found = f"{label.shape} {label.dtype}" if isinstance(label, np.ndarray) else type(label).__name__
        raise ConfigError(f"expected a (H, W) uint8 CamVid class-id label, got {found}")
    _check_min_area(min_area)
    out = []
    for class_id, category_id in CAMVID_CLASS_TO_CATEGORY_ID.items():
        n, components, stats, _ = cv2.connectedComponentsWithStats(
            (label == class_id).view(np.uint8), connectivity=CONNECTIVITY, ltype=cv2.CV_32S
        )
        for k in range(1, n):  # 0 is everything else
            area = int(stats[k, cv2.CC_STAT_AREA])
            if area < min_area:
                continue
            x, y, w, h = (
                int(stats[k, s]) for s in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT)
            )
            out.append(
                LabelInstance(
                    category_id=category_id, mask=(components == k).view(np.uint8), bbox_xywh=(x, y, w, h), area=area
                )
            )
    return out


def convert_camvid_instances(images_dir: str, labels_dir: str, min_area: int = DEFAULT_MIN_AREA) -> InstanceConversion:
    """COCO instances for every image of a CamVid image folder.

    Args:
        images_dir: folder of images (.png, .jpg, .jpeg, .bmp); each is one COCO image named
            by its basename, in sorted order, ids from 1.
        labels_dir: folder of class-id label PNGs, one per image with the image's name and the
            extension .png (SegNet's ``trainannot/`` for ``train/``), same size as the image.
        min_area: smallest component kept, pixels (>= 1).

    Returns:
        An ``InstanceConversion``: segmentation as compressed RLE (counts as str), bbox
        [x, y, w, h] pixels, area in pixels, iscrowd 0, annotation ids from 1.

    Raises:
        ConfigError: a folder is missing or holds no image, an image has no label or cannot be
            read, a label is not a single-channel 8-bit image of ids 0..11 of the image's size.
    """
    from pycocotools import mask as mask_util

    _check_min_area(min_area)
    for what, flag, folder in (("image", "--images", images_dir), ("label", "--labels", labels_dir)):
        if not folder or not os.path.isdir(folder):
            raise ConfigError(f"{what} folder {folder!r} not found; give {flag} DIR")
    names = sorted(
        f
        for f in os.listdir(images_dir)
        if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(images_dir, f))
    )
    if not names:
        raise ConfigError(
            f"{images_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}); give --images DIR of CamVid frames"
        )
    images, annotations = [], []
    counts = {c["id"]: 0 for c in CATEGORIES}
    for image_id, name in enumerate(names, start=1):
        label_path = os.path.join(labels_dir, os.path.splitext(name)[0] + ".png")
        if not os.path.isfile(label_path):
            raise ConfigError(f"image {name} has no label: expected {label_path}")
        label = _read_label(label_path)
        image_path = os.path.join(images_dir, name)
        image = cv2.imread(image_path, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ConfigError(f"{image_path}: cannot read the image")
        if image.shape[:2] != label.shape:
            raise ConfigError(
                f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but its image {name} is "
                f"{image.shape[1]}x{image.shape[0]} (WxH); labels must match their images"
            )
        h, w = label.shape
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for inst in label_instances(label, min_area):
            rle = mask_util.encode(np.asfortranarray(inst.mask))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": inst.category_id,
                    "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                    "area": inst.area,
                    "bbox": [float(v) for v in inst.bbox_xywh],
                    "iscrowd": 0,
                }
            )
            counts[inst.category_id] += 1
    coco = {
        "info": {
            "description": f"CamVid instances: {CONNECTIVITY}-connected components of Car, Pedestrian and "
            f"Bicyclist pixels, at least {min_area} pixels each (touching objects of one class "
            "are one instance)",
            "min_area": min_area,
            "connectivity": CONNECTIVITY,
        },
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in CATEGORIES],
    }
    return InstanceConversion(coco=coco, counts={c["name"]: counts[c["id"]] for c in CATEGORIES})


def _check_min_area(min_area: int) -> None:
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ConfigError(f"--min-area must be a whole number of pixels >= 1, got {min_area!r}")


def _read_label(path: str) -> np.ndarray:
    """A CamVid label as (H, W) uint8 ids, or a one-line ConfigError saying what is wrong with it."""
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if label is None:
        raise ConfigError(f"{path}: cannot read the label image")
    if label.ndim != 2 or label.dtype != np.uint8:
        channels = 1 if label.ndim == 2 else label.shape[2]
        raise ConfigError(
            f"{path}: expected a single-channel 8-bit label of CamVid class ids, found {channels} "
            f"channel(s) of {label.dtype}; give the class-id PNGs (SegNet's *annot/ folders), "
            "not colour labels"
        )
    top = int(label.max())
    if top > CAMVID_MAX_ID:
        raise ConfigError(
            f"{path}: expected CamVid class ids 0..{CAMVID_MAX_ID}, found {top}; "
            "give the class-id PNGs (SegNet's *annot/ folders)"
        )
    return label
