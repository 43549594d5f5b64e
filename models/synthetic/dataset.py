"""Writers for generated scenes: image/label folders, COCO instance JSON, mp4 clips.

Layout of an image set (`write_image_set`)::

    OUT/images/000000.jpg    BGR frames (JPEG quality 95)
    OUT/labels/000000.png    (H, W) uint8 Cityscapes train ids, 255 = ignore
    OUT/instances.json       COCO instances; categories = classes.COCO_CATEGORIES

Layout of a clip (`write_clip`)::

    OUT/clip.mp4             OpenCV 'mp4v', one frame per sample
    OUT/labels/000000.png    train ids per frame
    OUT/instances.json       COCO, one image per frame ("frame_index", "file_name" clip.mp4#N)
    OUT/tracks.json          per frame the ground-truth track ids, and each track's span

Each COCO annotation carries `track_id` (the generator's stable object id) next to the
standard fields: segmentation as RLE (counts as str), area, bbox [x, y, w, h], iscrowd 0.
Objects below the visibility threshold are not annotated; their pixels are 255 in the labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util

from segstream.models.synthetic.classes import COCO_CATEGORIES, LABEL_TO_CATEGORY_ID
from segstream.models.synthetic.scene import SceneSample


@dataclass
class CocoBuilder:
    """Collects samples into one COCO instances dict.

    Attributes:
        images, annotations: the COCO lists built so far.
    """

    images: list
    annotations: list

    @classmethod
    def empty(cls) -> CocoBuilder:
        return cls([], [])

    def add(self, sample: SceneSample, file_name: str, **image_fields) -> int:
        """Add one sample as a COCO image with its instances; returns the image id (>= 1)."""
        h, w = sample.class_map.shape
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": w, "height": h, **image_fields})
        for obj in sample.instances:
            rle = mask_util.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
            x, y, bw, bh = (float(v) for v in mask_util.toBbox(rle))
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": LABEL_TO_CATEGORY_ID[obj.label],
                    "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                    "area": int(mask_util.area(rle)),
                    "bbox": [x, y, bw, bh],
                    "iscrowd": 0,
                    "track_id": obj.object_id,
                }
            )
        return image_id

    def to_dict(self) -> dict:
        return {
            "info": {"description": "segstream synthetic road scenes"},
            "categories": [dict(c) for c in COCO_CATEGORIES],
            "images": self.images,
            "annotations": self.annotations,
        }


def _write_label(path: Path, class_map: np.ndarray) -> None:
    if not cv2.imwrite(str(path), class_map):
        raise OSError(f"could not write label PNG {path}")


def write_image_set(samples: Iterable[SceneSample], out: str | Path) -> Path:
    """Write independent samples as images, label PNGs and one COCO JSON.

    Args:
        samples: rendered samples; they are numbered in iteration order.
        out: output folder, created if missing.

    Returns:
        Path of the COCO JSON.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    coco = CocoBuilder.empty()
    for i, sample in enumerate(samples):
        name = f"{i:06d}"
        if not cv2.imwrite(str(out / "images" / f"{name}.jpg"), sample.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write image {out / 'images' / name}.jpg")
        _write_label(out / "labels" / f"{name}.png", sample.class_map)
        coco.add(sample, f"images/{name}.jpg")
    path = out / "instances.json"
    path.write_text(json.dumps(coco.to_dict()))
    return path


def write_clip(samples: Iterable[SceneSample], out: str | Path, fps: float) -> Path:
    """Write consecutive samples as an mp4 clip with per-frame ground truth.

    Args:
        samples: frames of one `SceneSequence`, in order, all the same size.
        out: output folder, created if missing.
        fps: frame rate stored in the video, frames per second.

    Returns:
        Path of the video file.
    """
    out = Path(out)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    video_path = out / "clip.mp4"
    writer = None
    coco = CocoBuilder.empty()
    frames, tracks = [], {}
    try:
        for i, sample in enumerate(samples):
            h, w = sample.class_map.shape
            if writer is None:
                writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
                if not writer.isOpened():
                    raise OSError(f"OpenCV could not open an mp4v writer for {video_path}")
            writer.write(sample.image_bgr)
            _write_label(out / "labels" / f"{i:06d}.png", sample.class_map)
            image_id = coco.add(sample, f"clip.mp4#{i}", frame_index=i, video="clip.mp4")
            frames.append(
                {
                    "frame_index": i,
                    "image_id": image_id,
                    "objects": [{"track_id": o.object_id, "label": o.label} for o in sample.instances],
                    "ignored_track_ids": list(sample.ignored_ids),
                }
            )
            for o in sample.instances:
                span = tracks.setdefault(str(o.object_id), {"label": o.label, "first_frame": i, "last_frame": i})
                span["last_frame"] = i
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise ValueError("expected at least one frame for the clip, got none")
    (out / "instances.json").write_text(json.dumps(coco.to_dict()))
    (out / "tracks.json").write_text(json.dumps({"video": "clip.mp4", "fps": fps, "frames": frames, "tracks": tracks}))
    return video_path
