"""Stable instance ids over time: IoU (box, and mask where available) matching with a
Hungarian assignment, constant-velocity box prediction and track ageing.

Stable ids keep overlays from flickering and let AR clients follow objects. State is kept
per source; a backwards jump in sequence numbers (a new file, a reconnect that restarts
numbering) resets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipelines.assignment import linear_sum_assignment
from pipelines.results import Instances
from stream.frame import Frame
from stream.graph import Stage

_MASK_SCALE = 4  # mask IoU is computed at 1/4 resolution: enough to separate overlapping boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes.

    Args:
        a: (N, 4) xyxy. b: (M, 4) xyxy.

    Returns:
        (N, M) float64.
    """
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]).clip(0) * (a[..., 3] - a[..., 1]).clip(0)
    area_b = (b[..., 2] - b[..., 0]).clip(0) * (b[..., 3] - b[..., 1]).clip(0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _small_mask(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    return cv2.resize(mask.astype(np.uint8), (max(1, w // _MASK_SCALE), max(1, h // _MASK_SCALE)),
                      interpolation=cv2.INTER_NEAREST).astype(bool)


@dataclass
class Track:
    """One followed object.

    Attributes:
        track_id: the stable id.
        label: class index.
        box_xyxy: last matched box. velocity: per-frame box change (smoothed).
        mask_small: last mask at 1/4 resolution, or None.
        hits: frames matched. misses: consecutive frames unmatched.
    """

    track_id: int
    label: int
    box_xyxy: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    mask_small: np.ndarray | None = None
    hits: int = 1
    misses: int = 0

    def predicted(self) -> np.ndarray:
        return self.box_xyxy + self.velocity * (1 + self.misses)


class InstanceTracker:
    """Assigns stable ``track_ids`` to each frame's instances.

    Args:
        iou_threshold: least IoU (box, or mask where both have masks) to continue a track.
        max_age: frames a track survives unmatched before it is dropped.
        match_labels: only match detections and tracks of the same class.
    """

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 15, match_labels: bool = True) -> None:
        if not 0 < iou_threshold < 1:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.match_labels = match_labels
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_seq: int | None = None

    def reset(self) -> None:
        self.tracks = []
        self._last_seq = None

    def _similarity(self, inst: Instances, smalls: list[np.ndarray] | None) -> np.ndarray:
        if not self.tracks:
            return np.zeros((len(inst), 0))
        pred = np.stack([t.predicted() for t in self.tracks])
        sim = box_iou(inst.boxes_xyxy, pred)
        if smalls is not None:
            for i, j in zip(*np.nonzero(sim > 0)):
                tm = self.tracks[j].mask_small
                if tm is not None and tm.shape == smalls[i].shape:
                    inter = np.count_nonzero(smalls[i] & tm)
                    union = np.count_nonzero(smalls[i] | tm)
                    # Objects move between frames: keep the better of box and mask overlap.
                    sim[i, j] = max(sim[i, j], inter / union if union else 0.0)
        if self.match_labels:
            labels = np.array([t.label for t in self.tracks])
            sim = np.where(inst.labels[:, None] == labels[None, :], sim, 0.0)
        return sim

    def update(self, inst: Instances, seq: int | None = None) -> Instances:
        """Returns ``inst`` with ``track_ids`` set ((N,) int64, every detection gets an id)."""
        if seq is not None and self._last_seq is not None and seq <= self._last_seq:
            self.reset()
        self._last_seq = seq
        smalls = [_small_mask(m) for m in inst.masks] if inst.masks is not None and len(inst) else None
        sim = self._similarity(inst, smalls)
        ids = np.full(len(inst), -1, np.int64)
        matched_tracks = set()
        if sim.size:
            rows, cols = linear_sum_assignment(1.0 - sim)
            for i, j in zip(rows, cols):
                if sim[i, j] >= self.iou_threshold:
                    t = self.tracks[j]
                    box = inst.boxes_xyxy[i].astype(np.float64)
                    step = (box - t.box_xyxy) / (1 + t.misses)
                    t.velocity = 0.5 * t.velocity + 0.5 * step
                    t.box_xyxy = box
                    t.mask_small = smalls[i] if smalls is not None else None
                    t.hits += 1
                    t.misses = 0
                    ids[i] = t.track_id
                    matched_tracks.add(j)
        survivors = []
        for j, t in enumerate(self.tracks):
            if j not in matched_tracks:
                t.misses += 1
            if t.misses <= self.max_age:
                survivors.append(t)
        self.tracks = survivors
        for i in np.nonzero(ids < 0)[0]:
            t = Track(self._next_id, int(inst.labels[i]), inst.boxes_xyxy[i].astype(np.float64),
                      mask_small=smalls[i] if smalls is not None else None)
            self._next_id += 1
            self.tracks.append(t)
            ids[i] = t.track_id
        return Instances(inst.boxes_xyxy, inst.scores, inst.labels, inst.masks, ids, inst.class_names, inst.mask_format)


class TrackStage(Stage):
    """Sets ``track_ids`` on ``results[key]`` (an Instances), with one tracker per source."""

    name = "track"

    def __init__(self, key: str = "instances", **tracker_options) -> None:
        self.key = key
        self.options = tracker_options
        self._trackers: dict[str, InstanceTracker] = {}

    def process(self, frame: Frame) -> Frame:
        inst = frame.results.get(self.key)
        if isinstance(inst, Instances):
            tracker = self._trackers.get(frame.source_id)
            if tracker is None:
                tracker = self._trackers[frame.source_id] = InstanceTracker(**self.options)
            frame.results[self.key] = tracker.update(inst, frame.seq)
        return frame


class IdSwitchCounter:
    """Counts identity switches against ground truth (the MOT definition).

    For each ground-truth object, the track id matched to it (IoU >= ``iou_threshold``, one to
    one by Hungarian assignment) is remembered; a switch is a frame where it is matched to a
    different id than the last time it was matched.
    """

    def __init__(self, iou_threshold: float = 0.5) -> None:
        self.iou_threshold = iou_threshold
        self.last_id: dict[int, int] = {}
        self.switches = 0
        self.matches = 0
        self.misses = 0

    def update(self, gt_ids: np.ndarray, gt_boxes_xyxy: np.ndarray, track_ids: np.ndarray, boxes_xyxy: np.ndarray) -> None:
        if len(gt_ids) == 0:
            return
        if len(track_ids) == 0:
            self.misses += len(gt_ids)
            return
        iou = box_iou(gt_boxes_xyxy, boxes_xyxy)
        rows, cols = linear_sum_assignment(1.0 - iou)
        matched = set()
        for r, c in zip(rows, cols):
            if iou[r, c] < self.iou_threshold:
                continue
            gid, tid = int(gt_ids[r]), int(track_ids[c])
            matched.add(r)
            self.matches += 1
            if gid in self.last_id and self.last_id[gid] != tid:
                self.switches += 1
            self.last_id[gid] = tid
        self.misses += len(gt_ids) - len(matched)
