"""Synthetic road scenes with exact ground truth (numpy + OpenCV only, no torch).

`SceneSequence` renders a seeded clip; `generate_scene` one still frame; `dataset` writes
image/label folders, COCO instance JSON and mp4 clips; `commands.generate` backs
`segstream generate`.
"""

from segstream.models.synthetic.classes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE_RGB,
    COCO_CATEGORIES,
    IGNORE_ID,
    LABEL_TO_CATEGORY_ID,
    colorize,
)
from segstream.models.synthetic.scene import SceneConfig, SceneObject, SceneSample, SceneSequence, generate_scene

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE_RGB",
    "COCO_CATEGORIES",
    "IGNORE_ID",
    "LABEL_TO_CATEGORY_ID",
    "colorize",
    "SceneConfig",
    "SceneObject",
    "SceneSample",
    "SceneSequence",
    "generate_scene",
]
