"""Image + label PNG folders in three layouts, and the label remapping each needs.

Layouts (``--layout``):
- ``plain``: ``images/<stem>.{png,jpg}`` with ``labels/<stem>.png`` holding class ids as they
  are (255 = ignore).
- ``cityscapes``: ``leftImg8bit/<split>/<city>/<x>_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/<x>_gtFine_labelTrainIds.png`` (used as is) or
  ``..._gtFine_labelIds.png`` (mapped labelId -> train id, the rest -> 255).
- ``camvid``: SegNet's CamVid (``train/`` + ``trainannot/``): ids 0..10, 11 = void -> 255.
  For a 19-class (Cityscapes) model the ids are remapped to Cityscapes train ids.
- ``binary``: the ``plain`` folders holding masks for a 2-class model (``*_binary``): 0 is
  background, any other value (255 in 0/255 masks, or 1) foreground; nothing is ignored.

numpy + OpenCV only, so evaluation and the torch dataset share it.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import cv2
import numpy as np

from segstream.pipelines.tasks.road import CITYSCAPES_CLASSES, CITYSCAPES_LABEL_TO_TRAIN, IGNORE_INDEX, lookup_table
from segstream.stream.errors import ConfigError, ModelError

LAYOUTS = ("plain", "cityscapes", "camvid", "binary")

#: SegNet CamVid classes (ids 0..10; 11 is void).
CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
#: CamVid id -> Cityscapes train id, for evaluating Cityscapes models on CamVid.
CAMVID_TO_CITYSCAPES = {0: 10, 1: 2, 2: 5, 3: 0, 4: 1, 5: 8, 6: 7, 7: 4, 8: 13, 9: 11, 10: 12}
#: Cityscapes train id -> the nearest CamVid class, for the standard 11-class CamVid scores of a
#: Cityscapes-class model: wall -> building, traffic light -> sign symbol, terrain -> tree,
#: rider, motorcycle, bicycle -> bicyclist, truck, bus, train -> car.
CITYSCAPES_TO_CAMVID = {
    0: 3,
    1: 4,
    2: 1,
    3: 1,
    4: 7,
    5: 2,
    6: 6,
    7: 6,
    8: 5,
    9: 5,
    10: 0,
    11: 9,
    12: 10,
    13: 8,
    14: 8,
    15: 8,
    16: 8,
    17: 10,
    18: 10,
}

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class Sample:
    """One image and its label file, plus the (256,) uint8 table applied to the label's values."""

    image_path: str
    label_path: str
    lut: np.ndarray


def label_lut(layout: str, num_classes: int, *, label_ids: bool = False) -> np.ndarray:
    """(256,) uint8 remapping table for a layout and a model's class count.

    Args:
        layout: one of ``LAYOUTS``.
        num_classes: the model's classes (19 turns CamVid ids into Cityscapes train ids).
        label_ids: cityscapes only: the file holds labelIds (not train ids).
    """
    if layout == "cityscapes":
        return lookup_table(CITYSCAPES_LABEL_TO_TRAIN) if label_ids else _identity(len(CITYSCAPES_CLASSES))
    if layout == "camvid":
        if num_classes == len(CITYSCAPES_CLASSES):
            return lookup_table(CAMVID_TO_CITYSCAPES)
        return _identity(len(CAMVID_CLASSES))
    if layout == "plain":
        return _identity(num_classes)
    if layout == "binary":
        if num_classes != 2:
            raise ConfigError(
                f"layout 'binary' needs a 2-class model (a *_binary model or --num-classes 2), "
                f"got {num_classes} classes"
            )
        lut = np.ones(256, np.uint8)
        lut[0] = 0
        return lut
    raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def camvid_prediction_lut(class_names: tuple[str, ...]) -> np.ndarray | None:
    """(256,) uint8 table from a model's class ids to CamVid ids (0..10), for scoring it on
    CamVid's 11 classes: Cityscapes classes by ``CITYSCAPES_TO_CAMVID``, a model with CamVid's
    own classes as they are; None for any other class set (scored on its own classes)."""
    names = tuple(class_names)
    if names == CITYSCAPES_CLASSES:
        return lookup_table(CITYSCAPES_TO_CAMVID)
    if names == CAMVID_CLASSES:
        return _identity(len(CAMVID_CLASSES))
    return None


def _identity(n: int) -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[:n] = np.arange(n, dtype=np.uint8)
    return lut


def find_samples(images_dir: str, labels_dir: str, layout: str, num_classes: int) -> list[Sample]:
    """Pairs every image with its label file; raises ConfigError if a folder is missing or empty,
    or an image has no label."""
    for what, d in (("images", images_dir), ("labels", labels_dir)):
        if not d or not os.path.isdir(d):
            raise ConfigError(f"{what} folder {d!r} does not exist; pass --images and --labels folders")
    if layout == "cityscapes":
        images = sorted(glob.glob(os.path.join(images_dir, "**", "*_leftImg8bit.png"), recursive=True))
        labels = {
            os.path.basename(p): p for p in glob.glob(os.path.join(labels_dir, "**", "*_gtFine_*.png"), recursive=True)
        }
        samples = []
        for img in images:
            prefix = os.path.basename(img)[: -len("_leftImg8bit.png")]
            train = labels.get(f"{prefix}_gtFine_labelTrainIds.png")
            ids = labels.get(f"{prefix}_gtFine_labelIds.png")
            if train is None and ids is None:
                raise ConfigError(f"{img}: no {prefix}_gtFine_labelTrainIds.png or _labelIds.png under {labels_dir}")
            samples.append(Sample(img, train or ids, label_lut(layout, num_classes, label_ids=train is None)))
    else:
        images = sorted(p for p in glob.glob(os.path.join(images_dir, "*")) if p.lower().endswith(_IMAGE_EXTS))
        lut = label_lut(layout, num_classes)
        samples = []
        for img in images:
            stem = os.path.splitext(os.path.basename(img))[0]
            lab = os.path.join(labels_dir, stem + ".png")
            if not os.path.isfile(lab):
                colour = os.path.join(labels_dir, stem + "_L.png")
                hint = (
                    " (colour-coded _L.png labels are not read: convert them to class ids)"
                    if os.path.isfile(colour)
                    else ""
                )
                raise ConfigError(f"{img}: no label {lab}{hint}")
            samples.append(Sample(img, lab, lut))
    if not samples:
        raise ConfigError(f"no images found in {images_dir} for layout {layout!r}")
    return samples


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR, or ModelError."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ModelError(f"{path}: cannot be read as an image")
    return img


def read_label(sample: Sample) -> np.ndarray:
    """(H, W) uint8 remapped label of a sample (255 = ignore)."""
    lab = cv2.imread(sample.label_path, cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise ModelError(f"{sample.label_path}: cannot be read as a label PNG")
    if lab.ndim != 2 or lab.dtype != np.uint8:
        raise ModelError(
            f"{sample.label_path}: expected a single-channel 8-bit PNG of class ids, got shape {lab.shape} {lab.dtype}"
        )
    return sample.lut[lab]
