"""Stable instance ids over time: IoU (box, and mask where available) matching with a
Hungarian assignment, constant-velocity box prediction, confirmation after ``min_hits``
matches and coasting of lost tracks for a configured time.

Stable ids keep overlays from flickering and let AR clients follow objects. State is kept
per source; a backwards jump in sequence numbers (a new file, a reconnect that restarts
numbering) resets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from segstream.pipelines.tasks.assignment import linear_sum_assignment
from segstream.pipelines.tasks.boxes import box_iou as iou_of_boxes
from segstream.pipelines.tasks.results import Instances
from segstream.stream.frame import Frame
from segstream.stream.graph import Stage

_MASK_SCALE = 4  # mask IoU is computed at 1/4 resolution: enough to separate overlapping boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes: (N, 4) and (M, 4) xyxy -> (N, M) float64 (``boxes.box_iou``)."""
    return iou_of_boxes(np.asarray(a, np.float64), np.asarray(b, np.float64))


def _small_mask(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    return cv2.resize(
        mask.astype(np.uint8), (max(1, w // _MASK_SCALE), max(1, h // _MASK_SCALE)), interpolation=cv2.INTER_NEAREST
    ).astype(bool)


@dataclass
class Track:
    """One followed object.

    Attributes:
        track_id: the stable id.
        label: class index.
        box_xyxy: last matched box. velocity: box change per second (smoothed).
        mask_small: last mask at 1/4 resolution, or None.
        hits: instance-model frames matched. misses: consecutive instance-model frames unmatched.
        first_seq / last_seq: source frame numbers of the first and the last match.
        last_t: media time in seconds of the last match.
        confirmed: matched in ``min_hits`` frames; only confirmed tracks are reported by default.
    """

    track_id: int
    label: int
    box_xyxy: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    mask_small: np.ndarray | None = None
    hits: int = 1
    misses: int = 0
    first_seq: int = 0
    last_seq: int = 0
    last_t: float = 0.0
    confirmed: bool = False

    def predicted(self, t: float) -> np.ndarray:
        """The box expected at media time ``t`` (constant velocity)."""
        return self.box_xyxy + self.velocity * max(0.0, t - self.last_t)

    @property
    def span_frames(self) -> int:
        """Source frames from the first match to the last, both included."""
        return self.last_seq - self.first_seq + 1


@dataclass
class TrackStats:
    """What a run's tracks did (the AR client's view: only confirmed tracks are sent).

    Attributes:
        started: tracks created (every unmatched detection starts a tentative one).
        confirmed: tracks that reached ``min_hits`` matches.
        confirmed_short: confirmed tracks that ended having lived fewer than ``short_frames``
            source frames (first to last match). Tracks still alive when the run ends were cut
            short by the end, not lost: they are counted in ``alive_at_end`` instead.
        alive_at_end: confirmed tracks alive when the run ended (``finish``).
        short_frames: the threshold of ``confirmed_short``.
    """

    started: int = 0
    confirmed: int = 0
    confirmed_short: int = 0
    alive_at_end: int = 0
    short_frames: int = 5

    def to_json_dict(self) -> dict:
        share = self.confirmed_short / self.confirmed if self.confirmed else 0.0
        return {
            "tracks_started": self.started,
            "tracks_confirmed": self.confirmed,
            f"confirmed_under_{self.short_frames}_frames": self.confirmed_short,
            "confirmed_short_share": round(share, 4),
            "confirmed_alive_at_end": self.alive_at_end,
        }


class InstanceTracker:
    """Assigns stable ``track_ids`` to each frame's instances.

    A track starts tentative; it becomes confirmed once matched in ``min_hits`` instance-model
    frames, and a tentative track that misses one is dropped. Only confirmed tracks are
    reported unless ``report_tentative`` (AR clients should not see one-frame flukes). A
    confirmed track that stops matching coasts on its predicted box, unreported, for
    ``coast_s`` seconds of media time (and at most ``max_age`` instance-model frames), so an
    object missed by the detector for a moment keeps its id.

    Time is the frame's media time (``pts_s``) where the source gives one, else ``seq / 30``;
    velocities are per second, so the tracker works the same whether the instance model runs on
    every frame or every n-th.

    Args:
        iou_threshold: least IoU (box, or mask where both have masks) to continue a track.
        max_age: instance-model frames a confirmed track survives unmatched.
        match_labels: only match detections and tracks of the same class.
        min_hits: matches that confirm a track (1: every detection is reported at once).
        coast_s: seconds a confirmed track survives unmatched (None: only ``max_age`` counts).
        report_tentative: also report detections of tracks not yet confirmed.
        short_frames: the lifetime under which a confirmed track counts as short in ``stats``.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_age: int = 15,
        match_labels: bool = True,
        min_hits: int = 1,
        coast_s: float | None = None,
        report_tentative: bool = False,
        short_frames: int = 5,
    ) -> None:
        if not 0 < iou_threshold < 1:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        if min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {min_hits}")
        if coast_s is not None and coast_s < 0:
            raise ValueError(f"coast_s must be >= 0, got {coast_s}")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.match_labels = match_labels
        self.min_hits = int(min_hits)
        self.coast_s = coast_s
        self.report_tentative = report_tentative
        self.tracks: list[Track] = []
        self.stats = TrackStats(short_frames=short_frames)
        self._next_id = 1
        self._last_seq: int | None = None

    def reset(self) -> None:
        for t in self.tracks:
            self._retire(t)
        self.tracks = []
        self._last_seq = None

    def finish(self) -> TrackStats:
        """Ends the run: counts the confirmed tracks still alive and returns ``stats``."""
        self.stats.alive_at_end += sum(1 for t in self.tracks if t.confirmed)
        self.tracks = []
        self._last_seq = None
        return self.stats

    def _retire(self, t: Track) -> None:
        if t.confirmed and t.span_frames < self.stats.short_frames:
            self.stats.confirmed_short += 1

    def _similarity(self, inst: Instances, smalls: list[np.ndarray] | None, t_now: float) -> np.ndarray:
        if not self.tracks:
            return np.zeros((len(inst), 0))
        pred = np.stack([t.predicted(t_now) for t in self.tracks])
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
        # Confirmed tracks win ties against tentative ones: a fluke next to an object must not
        # take its id.
        bonus = np.array([1e-3 if t.confirmed else 0.0 for t in self.tracks])
        return np.where(sim > 0, sim + bonus[None, :], 0.0)

    def update(self, inst: Instances, seq: int | None = None, t_s: float | None = None) -> Instances:
        """Matches ``inst`` (one instance-model frame) to the tracks.

        Args:
            inst: the frame's detections.
            seq: the frame's source sequence number (a jump back resets the tracker).
            t_s: the frame's media time in seconds (None: ``seq / 30``).

        Returns:
            The reported instances (confirmed tracks only unless ``report_tentative``) with
            ``track_ids`` set ((N,) int64).
        """
        if seq is not None and self._last_seq is not None and seq <= self._last_seq:
            self.reset()
        self._last_seq = seq
        seq_i = 0 if seq is None else int(seq)
        t_now = float(t_s) if t_s is not None else seq_i / 30.0
        smalls = [_small_mask(m) for m in inst.masks] if inst.masks is not None and len(inst) else None
        sim = self._similarity(inst, smalls, t_now)
        ids = np.full(len(inst), -1, np.int64)
        report = np.zeros(len(inst), bool)
        matched_tracks = set()
        if sim.size:
            rows, cols = linear_sum_assignment(1.0 - sim)
            for i, j in zip(rows, cols):
                if sim[i, j] >= self.iou_threshold:
                    t = self.tracks[j]
                    box = inst.boxes_xyxy[i].astype(np.float64)
                    dt = t_now - t.last_t
                    if dt > 0:
                        step = (box - t.box_xyxy) / dt
                        t.velocity = step if t.hits == 1 else 0.5 * t.velocity + 0.5 * step
                    t.box_xyxy = box
                    t.mask_small = smalls[i] if smalls is not None else None
                    t.hits += 1
                    t.misses = 0
                    t.last_seq, t.last_t = seq_i, t_now
                    if not t.confirmed and t.hits >= self.min_hits:
                        t.confirmed = True
                        self.stats.confirmed += 1
                    ids[i] = t.track_id
                    report[i] = t.confirmed or self.report_tentative
                    matched_tracks.add(j)
        survivors = []
        for j, t in enumerate(self.tracks):
            if j not in matched_tracks:
                t.misses += 1
                if (
                    not t.confirmed
                    or t.misses > self.max_age
                    or (self.coast_s is not None and t_now - t.last_t > self.coast_s)
                ):
                    self._retire(t)
                    continue
            survivors.append(t)
        self.tracks = survivors
        for i in np.nonzero(ids < 0)[0]:
            t = Track(
                self._next_id,
                int(inst.labels[i]),
                inst.boxes_xyxy[i].astype(np.float64),
                mask_small=smalls[i] if smalls is not None else None,
                first_seq=seq_i,
                last_seq=seq_i,
                last_t=t_now,
            )
            self._next_id += 1
            self.stats.started += 1
            if self.min_hits <= 1:
                t.confirmed = True
                self.stats.confirmed += 1
            self.tracks.append(t)
            ids[i] = t.track_id
            report[i] = t.confirmed or self.report_tentative
        out = Instances(inst.boxes_xyxy, inst.scores, inst.labels, inst.masks, ids, inst.class_names, inst.mask_format)
        return out if report.all() else out[report]


class TrackStage(Stage):
    """Sets ``track_ids`` on ``results[key]`` (an Instances), with one tracker per source.

    Frames without ``results[key]`` (the instance model did not run on them) pass untouched;
    tracks neither age nor match there.
    """

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
            frame.results[self.key] = tracker.update(inst, frame.seq, frame.pts_s)
        return frame

    def metrics(self) -> dict:
        """Track statistics summed over sources (confirmed tracks still alive: ``alive_at_end``)."""
        total = TrackStats()
        for tracker in self._trackers.values():
            s = tracker.stats
            total.started += s.started
            total.confirmed += s.confirmed
            total.confirmed_short += s.confirmed_short
            total.alive_at_end += s.alive_at_end + sum(1 for t in tracker.tracks if t.confirmed)
            total.short_frames = s.short_frames
        return total.to_json_dict() if self._trackers else {}


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

    def update(
        self, gt_ids: np.ndarray, gt_boxes_xyxy: np.ndarray, track_ids: np.ndarray, boxes_xyxy: np.ndarray
    ) -> None:
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
