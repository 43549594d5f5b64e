"""Class tables shared by the generator, the writers and the models trained on them."""
from __future__ import annotations

import numpy as np

# Cityscapes train ids 0..18, in order; 255 is "ignore".
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
IGNORE_ID = 255
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = 0, 1, 2, 5, 7, 8, 9, 10, 11, 13

# (19, 3) uint8 RGB, the cityscapesScripts colours.
CITYSCAPES_PALETTE_RGB = np.array(
    [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
     (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
     (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
     (0, 80, 100), (0, 0, 230), (119, 11, 32)], dtype=np.uint8)

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
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(CITYSCAPES_PALETTE_RGB)] = CITYSCAPES_PALETTE_RGB[:, ::-1]
    return lut[class_map]
