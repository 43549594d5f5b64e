"""Class tables shared by the generator, the writers and the models trained on them."""

from __future__ import annotations

import numpy as np

from segstream.pipelines.tasks.road import CITYSCAPES_CLASSES as _ROAD_CLASSES
from segstream.pipelines.tasks.road import CITYSCAPES_PALETTE_BGR as _PALETTE_BGR
from segstream.pipelines.tasks.road import IGNORE_INDEX as _IGNORE
from segstream.pipelines.tasks.road import colorize as _road_colorize

# Cityscapes train ids 0..18 and their colours: the runtime's tables (pipelines/tasks/road.py).
CITYSCAPES_CLASSES: tuple[str, ...] = _ROAD_CLASSES
IGNORE_ID = _IGNORE
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = 0, 1, 2, 5, 7, 8, 9, 10, 11, 13

# (19, 3) uint8 RGB, the cityscapesScripts colours.
CITYSCAPES_PALETTE_RGB = np.ascontiguousarray(_PALETTE_BGR[:, ::-1])

# COCO categories of the instance task: the one list models import.
COCO_CATEGORIES: tuple[dict, ...] = (
    {"id": 1, "name": "person", "supercategory": "human"},
    {"id": 2, "name": "car", "supercategory": "vehicle"},
)
LABEL_TO_CATEGORY_ID: dict[str, int] = {c["name"]: c["id"] for c in COCO_CATEGORIES}
LABEL_TO_TRAIN_ID: dict[str, int] = {"person": PERSON, "car": CAR}


def colorize(class_map: np.ndarray) -> np.ndarray:
    """Colour a train-id map for viewing.

    Args:
        class_map: (H, W) uint8 train ids; 255 (ignore) and unknown ids come out black.

    Returns:
        (H, W, 3) uint8 BGR image.
    """
    if class_map.ndim != 2 or class_map.dtype != np.uint8:
        raise ValueError(f"expected an (H, W) uint8 class map, got {class_map.shape} {class_map.dtype}")
    return _road_colorize(class_map, _PALETTE_BGR)
