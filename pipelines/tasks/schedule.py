"""Frame scheduling for video: each model runs on a cadence the CPU can hold, and its results
are carried, warped by measured motion, to the frames in between.

    source -> schedule -> [instances branch] -+-> join -> track -> carry -> overlay -> sinks
                       -> [semantic branch ] -+

``ScheduleStage`` decides per frame which models run (``results["_schedule"]``, a frozenset of
branch keys); the branch stages are wrapped in ``ScheduledStage``, which passes frames a model
does not run on untouched and measures the CPU time of the ones it does. ``ModelScheduler``
chooses each model's cadence ("every n-th frame") from those measured costs, the CPU time the
rest of the pipeline takes per frame and the budget (cores x frame interval x share), or uses
the cadence the config fixes. Nothing here knows what the models cost in advance: a slower
model gets a sparser cadence by itself.

``CarryStage`` keeps each model's last fresh result per source and, on frames where the model
did not run, puts a copy warped to the current frame in its place: instance masks and boxes
shifted by their tracked motion (box-centre velocity of the track id over its last fresh
frames) or, for a track seen once, by the median optical flow inside the middle of its mask;
class maps and the drivable area remapped by the backward flow field (OpenCV's DIS optical
flow at low resolution, between the result's own frame and the current one, so warps never
accumulate). Every frame gets ``results["freshness"]``: per
model, whether the result is fresh, which frame it came from and how old it is in frames and
milliseconds of media time. It is published with the results (JSON Lines, WebSocket).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np

from segstream.pipelines.tasks.results import Instances, SemanticMap
from segstream.stream.frame import Frame
from segstream.stream.graph import Stage

#: Where ScheduleStage puts the set of models that run on a frame (not published: "_" prefix).
SCHEDULE_KEY = "_schedule"
#: Where CarryStage puts the freshness of each model's result (published).
FRESHNESS_KEY = "freshness"


def available_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ModelScheduler:
    """Chooses how often each model runs from measured CPU costs.

    Plan: a cadence ``every[key]`` per model (1 = every frame). With ``fixed[key] > 0`` that
    model's cadence is fixed; the others are chosen automatically as the densest plan whose
    CPU per frame fits the budget::

        base + sum(cost[key] / every[key]) <= cores * 1000 / target_fps * cpu_share   (ms)

    (``cores`` is lowered to the CPU time this process actually got per wall second when frames
    come slower than ``target_fps``: other processes may hold some of the cores), where
    ``cost[key]`` is the model's measured CPU time per run (its stages' thread time,
    exponentially averaged) and ``base`` the rest of the process's CPU time per frame (decoding,
    tracking, carrying, overlay, sinks), measured over the last window. Plans are ranked by the
    first key's cadence (instances: tracking needs them fresh, and carried masks of small
    moving objects lose more accuracy than carried class maps of a road scene,
    ``bench/scheduling.py``), then by their sparsest cadence, then by the sum of cadences. Until every automatic model
    has been measured twice all models run on every frame. The plan is revised every
    ``replan_frames`` frames; a denser plan is taken only if it fits 90 % of the budget, so the
    plan does not flap at the edge.

    Models run in staggered phases (with two models every 2nd frame, one runs on even frames
    and the other on odd ones), so the CPU load and the latency are even from frame to frame.

    Args:
        keys: model keys in priority order (freshest first).
        fixed: key -> fixed cadence (0 or absent: automatic).
        target_fps: the frame rate the CPU must hold.
        cores: CPU cores the budget counts (0: those this process may use).
        cpu_share: fraction of those cores' time the plan may use.
        max_every: sparsest automatic cadence.
        replan_frames: frames between plan revisions.
    """

    def __init__(
        self,
        keys,
        fixed: dict[str, int] | None = None,
        target_fps: float = 30.0,
        cores: int = 0,
        cpu_share: float = 0.85,
        max_every: int = 4,
        replan_frames: int = 15,
    ) -> None:
        self.keys = tuple(keys)
        if not self.keys:
            raise ValueError("ModelScheduler needs at least one model key")
        fixed = dict(fixed or {})
        unknown = set(fixed) - set(self.keys)
        if unknown:
            raise ValueError(f"fixed cadence for unknown models {sorted(unknown)}; known: {list(self.keys)}")
        if target_fps <= 0 or not 0 < cpu_share <= 1 or max_every < 1 or replan_frames < 1:
            raise ValueError(
                "ModelScheduler: target_fps > 0, cpu_share in (0, 1], max_every >= 1 and "
                f"replan_frames >= 1 needed, got {target_fps}, {cpu_share}, {max_every}, {replan_frames}"
            )
        self.fixed = {k: int(v) for k, v in fixed.items() if v}
        self.target_fps = float(target_fps)
        self.cores = int(cores) or available_cores()
        self.cpu_share = float(cpu_share)
        self.max_every = int(max_every)
        self.replan_frames = int(replan_frames)
        self._lock = threading.Lock()
        self._stage_ms: dict[str, dict[str, float]] = {k: {} for k in self.keys}  # key -> stage -> EWMA ms
        self._runs: dict[str, int] = {k: 0 for k in self.keys}
        self.every: dict[str, int] = {k: self.fixed.get(k, 1) for k in self.keys}
        # (process CPU s, wall s, runs per model so far) at each frame
        self._window: deque[tuple[float, float, dict[str, int]]] = deque(maxlen=replan_frames + 1)
        self.cores_obtained: float | None = None
        self._frames = 0
        self.plans: list[dict] = []  # the plans chosen, with the figures behind them
        self.base_ms = 0.0

    @property
    def budget_ms(self) -> float:
        return self.cores * 1000.0 / self.target_fps * self.cpu_share

    def record(self, key: str, stage: str, cpu_ms: float) -> None:
        """One run of one of ``key``'s stages took ``cpu_ms`` of its thread's CPU time."""
        with self._lock:
            per = self._stage_ms[key]
            old = per.get(stage)
            per[stage] = cpu_ms if old is None else 0.8 * old + 0.2 * cpu_ms
            if stage.endswith(".infer"):
                self._runs[key] += 1

    def cost_ms(self, key: str) -> float | None:
        """Measured CPU time of one run of model ``key`` (None before it has run twice)."""
        with self._lock:
            if self._runs[key] < 2:
                return None
            return sum(self._stage_ms[key].values())

    def models_for(self, n: int) -> frozenset:
        """Models that run on the ``n``-th frame of a source (phases staggered across models)."""
        with self._lock:
            every = dict(self.every)
        run = set()
        for i, key in enumerate(self.keys):
            e = every[key]
            if e <= 1 or (n + (i * e) // len(self.keys)) % e == 0:
                run.add(key)
        return frozenset(run)

    def frame_seen(self, run: frozenset) -> None:
        """Called once per frame by the schedule stage; revises the plan every few frames."""
        now, wall = time.process_time(), time.monotonic()
        with self._lock:
            self._frames += 1
            counts = dict(self._window[-1][2]) if self._window else {k: 0 for k in self.keys}
            for k in run:
                counts[k] += 1
            self._window.append((now, wall, counts))
            due = self._frames % self.replan_frames == 0
        if due or (not self.plans and len(self.fixed) < len(self.keys)):
            self._replan()

    def _replan(self) -> None:
        costs = {k: self.cost_ms(k) for k in self.keys}
        auto = [k for k in self.keys if k not in self.fixed]
        if not auto or any(costs[k] is None for k in auto) or len(self._window) < 2:
            return
        with self._lock:
            (t0, w0, c0), (t1, w1, c1) = self._window[0], self._window[-1]
            frames = len(self._window) - 1
        total_ms = (t1 - t0) * 1000.0 / frames
        model_ms = sum((costs[k] or 0.0) * (c1[k] - c0[k]) / frames for k in self.keys)
        base = max(0.0, total_ms - model_ms)
        # Other processes may hold some of the cores: when frames come slower than the target
        # rate, the CPU this process actually got per wall second is what the budget can count.
        wall_ms = (w1 - w0) * 1000.0 / frames
        cores = float(self.cores)
        if wall_ms > 1.1 * 1000.0 / self.target_fps:
            cores = max(0.25, min(cores, total_ms / wall_ms))
        budget = cores * 1000.0 / self.target_fps * self.cpu_share

        def load(every: dict[str, int]) -> float:
            return base + sum((costs[k] or 0.0) / every[k] for k in self.keys)

        candidates = []
        for combo in itertools.product(range(1, self.max_every + 1), repeat=len(auto)):
            every = {**self.fixed, **dict(zip(auto, combo))}
            rank = (every[self.keys[0]], max(combo), sum(combo), combo)
            candidates.append((rank, every))
        candidates.sort(key=lambda c: c[0])
        current = dict(self.every)
        chosen = candidates[-1][1]  # the sparsest: when nothing fits, do the least
        for _, every in candidates:
            denser = any(every[k] < current[k] for k in auto)
            if load(every) <= budget * (0.9 if denser else 1.0):
                chosen = every
                break
        with self._lock:
            self.base_ms = base
            self.cores_obtained = round(cores, 2)
            if chosen != self.every or not self.plans:
                self.plans.append(
                    {
                        "frame": self._frames,
                        "every": dict(chosen),
                        "base_ms": round(base, 2),
                        "cost_ms": {k: round(v or 0.0, 2) for k, v in costs.items()},
                        "load_ms": round(load(chosen), 2),
                        "budget_ms": round(budget, 2),
                    }
                )
            self.every = chosen

    def report(self) -> dict:
        with self._lock:
            doc = {
                "every": dict(self.every),
                "fixed": dict(self.fixed),
                "target_fps": self.target_fps,
                "cores": self.cores,
                "cores_obtained": self.cores_obtained,
                "budget_ms": round(self.budget_ms, 2),
                "base_ms": round(self.base_ms, 2),
                "runs": dict(self._runs),
                "frames": self._frames,
                "plan_changes": len(self.plans),
                "plans": self.plans[-5:],
            }
        doc["cost_ms"] = {k: None if (c := self.cost_ms(k)) is None else round(c, 2) for k in self.keys}
        return doc


class ScheduleStage(Stage):
    """Marks each frame with the models that run on it (``results["_schedule"]``)."""

    name = "schedule"

    def __init__(self, scheduler: ModelScheduler) -> None:
        self.scheduler = scheduler
        self._counters: dict[str, int] = {}

    def process(self, frame: Frame) -> Frame:
        n = self._counters.get(frame.source_id, 0)
        self._counters[frame.source_id] = n + 1
        # The first frame of a source runs every model, so every result exists from the start.
        run = frozenset(self.scheduler.keys) if n == 0 else self.scheduler.models_for(n)
        frame.results[SCHEDULE_KEY] = run
        self.scheduler.frame_seen(run)
        return frame

    def metrics(self) -> dict:
        return self.scheduler.report()


class ScheduledStage(Stage):
    """A model's stage that runs only on the frames its model is scheduled for.

    Frames it does not run on pass untouched (a frame without ``results["_schedule"]`` runs
    every model). The CPU time of each run goes to the scheduler.

    Attributes:
        inner: the wrapped stage (its name, workers, setup, close and metrics are used).
    """

    def __init__(self, inner: Stage, key: str, scheduler: ModelScheduler | None) -> None:
        self.inner = inner
        self.key = key
        self.scheduler = scheduler
        self.name = inner.name
        self.workers = inner.workers

    def setup(self) -> None:
        self.inner.setup()

    def close(self) -> None:
        self.inner.close()

    def metrics(self) -> dict:
        return self.inner.metrics()

    def process(self, frame: Frame) -> Frame | None:
        run = frame.results.get(SCHEDULE_KEY)
        if run is not None and self.key not in run:
            return frame
        c0 = time.thread_time()
        out = self.inner.process(frame)
        if self.scheduler is not None:
            self.scheduler.record(self.key, self.name, (time.thread_time() - c0) * 1e3)
        return out


# --------------------------------------------------------------------------- carrying results


@dataclass
class _Kept:
    """A model's last fresh result and the frame it belongs to.

    Attributes:
        velocity: instances: track id -> (2,) box-centre velocity in pixels per ms, from the
            track's boxes in the last fresh frames (its tracked motion).
    """

    value: object
    seq: int
    t_ms: float
    grey: np.ndarray
    velocity: dict[int, np.ndarray] = field(default_factory=dict)


def _centres(inst: Instances) -> np.ndarray:
    b = inst.boxes_xyxy.astype(np.float64)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)


def _track_velocities(old: _Kept | None, new: Instances, t_ms: float) -> dict[int, np.ndarray]:
    """Box-centre velocities (px/ms) of the tracks in both ``old`` and ``new``, smoothed."""
    if old is None or not isinstance(old.value, Instances) or new.track_ids is None or old.value.track_ids is None:
        return {}
    dt = t_ms - old.t_ms
    if dt <= 0:
        return {}
    before = dict(zip(old.value.track_ids.tolist(), _centres(old.value)))
    out = {}
    for tid, c in zip(new.track_ids.tolist(), _centres(new)):
        if tid in before:
            v = (c - before[tid]) / dt
            prev = old.velocity.get(tid)
            out[tid] = v if prev is None else 0.5 * prev + 0.5 * v
    return out


def _media_ms(frame: Frame) -> float:
    return frame.pts_s * 1e3 if frame.pts_s is not None else frame.capture_ns / 1e6


class MotionField:
    """Dense motion between two frames at low resolution (OpenCV DIS, ultrafast preset).

    Args:
        width: the width frames are reduced to before the flow (height keeps the aspect).
    """

    def __init__(self, width: int = 320) -> None:
        if width < 16:
            raise ValueError(f"flow width must be >= 16, got {width}")
        self.width = int(width)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)  # type: ignore[attr-defined]  # cv2 stubs lack this factory, which OpenCV has
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def grey(self, image_bgr: np.ndarray) -> np.ndarray:
        """(h, width) uint8 grey copy of a frame."""
        h, w = image_bgr.shape[:2]
        step = max(1, w // self.width)
        # Every step-th pixel, then a resize to the exact width: a quarter of the cost of an
        # area resize of the whole 720p frame, and the flow does not need the anti-aliasing.
        sub = cv2.cvtColor(np.ascontiguousarray(image_bgr[::step, ::step]), cv2.COLOR_BGR2GRAY)
        small_w = min(self.width, w)
        small_h = max(1, round(h * small_w / w))
        if sub.shape[:2] != (small_h, small_w):
            sub = cv2.resize(sub, (small_w, small_h), interpolation=cv2.INTER_LINEAR)
        return sub

    def flow(self, grey_from: np.ndarray, grey_to: np.ndarray) -> np.ndarray:
        """(h, w, 2) float32 displacement in low-resolution pixels: from(x) ~ to(x + flow(x))."""
        return self._dis.calc(grey_from, grey_to, None)

    def grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        key = (h, w)
        if key not in self._grids:
            xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            self._grids[key] = (xs, ys)
        return self._grids[key]


def warp_instances(
    inst: Instances, flow: np.ndarray | None, size_hw: tuple[int, int], shifts_xy: np.ndarray | None = None
) -> Instances:
    """Shifts each instance (box and mask) by its tracked motion where ``shifts_xy`` gives one,
    else by the median optical flow inside the middle of its mask (its box where it has no mask).
    Returns a new Instances; ``inst`` is not modified.

    Args:
        inst: instances of the frame the flow starts from.
        flow: (h, w, 2) float32 low-resolution flow from that frame to the target one, or None
            (then instances without a shift stay where they were).
        size_hw: (H, W) of the frames in pixels.
        shifts_xy: (N, 2) float displacement in pixels per instance, NaN where unknown.
    """
    n = len(inst)
    if n == 0:
        return inst
    h, w = size_hw
    boxes = inst.boxes_xyxy.copy()
    masks = None if inst.masks is None else np.zeros_like(inst.masks)
    for i in range(n):
        x0, y0, x1, y1 = (int(v) for v in np.clip(np.round(inst.boxes_xyxy[i]), 0, [w, h, w, h]))
        if shifts_xy is not None and np.all(np.isfinite(shifts_xy[i])):
            dx, dy = float(shifts_xy[i, 0]), float(shifts_xy[i, 1])
        elif flow is not None:
            d = _flow_shift(inst, i, flow, (x0, y0, x1, y1), size_hw)
            if d is None:
                dx = dy = 0.0
            else:
                dx, dy = d
        else:
            dx = dy = 0.0
        boxes[i] = np.clip(inst.boxes_xyxy[i] + np.array([dx, dy, dx, dy], np.float32), 0, [w, h, w, h])
        if masks is not None:
            ix, iy = int(round(dx)), int(round(dy))
            mx0, my0, mx1, my1 = max(0, x0 - 16), max(0, y0 - 16), min(w, x1 + 16), min(h, y1 + 16)
            # source rows/cols that land inside the frame after the shift
            sx0, sx1 = max(mx0, -ix), min(mx1, w - ix)
            sy0, sy1 = max(my0, -iy), min(my1, h - iy)
            if sx1 > sx0 and sy1 > sy0:
                # masks is not None only where inst.masks is not None
                masks[i, sy0 + iy : sy1 + iy, sx0 + ix : sx1 + ix] = cast(np.ndarray, inst.masks)[i, sy0:sy1, sx0:sx1]
    return Instances(boxes, inst.scores, inst.labels, masks, inst.track_ids, inst.class_names, inst.mask_format)


def _flow_shift(
    inst: Instances, i: int, flow: np.ndarray, box: tuple[int, int, int, int], size_hw: tuple[int, int]
) -> tuple[float, float] | None:
    """Median flow (full-resolution pixels) over the middle half of instance ``i``'s box,
    restricted to its mask where it has one: the edges mix the object's motion with the
    background's."""
    h, w = size_hw
    fh, fw = flow.shape[:2]
    sy, sx = fh / h, fw / w
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return None
    qx, qy = (x1 - x0) // 4, (y1 - y0) // 4
    cx0, cy0, cx1, cy1 = x0 + qx, y0 + qy, max(x0 + qx + 1, x1 - qx), max(y0 + qy + 1, y1 - qy)
    step = max(1, round(1 / min(sx, sy)))
    if inst.masks is not None:
        ys, xs = np.nonzero(inst.masks[i, cy0:cy1:step, cx0:cx1:step])
        if len(ys) == 0:
            ys, xs = np.nonzero(inst.masks[i, y0:y1:step, x0:x1:step])
            cx0, cy0 = x0, y0
    else:
        ys, xs = np.mgrid[0 : cy1 - cy0 : step, 0 : cx1 - cx0 : step].reshape(2, -1)
    if len(ys) == 0:
        return None
    fy = np.clip(((cy0 + ys * step) * sy).astype(np.int64), 0, fh - 1)
    fx = np.clip(((cx0 + xs * step) * sx).astype(np.int64), 0, fw - 1)
    v = flow[fy, fx]
    return float(np.median(v[:, 0])) / sx, float(np.median(v[:, 1])) / sy


def warp_semantic(
    sem: SemanticMap, flow: np.ndarray, motion: MotionField, max_width: int = 640, backward: bool = False
) -> SemanticMap:
    """The class map (and drivable mask) remapped by the flow, at no more than ``max_width``
    columns and resized back (nearest). Returns a new SemanticMap without probabilities.

    Args:
        flow: with ``backward``, the flow from the target frame to the map's frame (exact:
            target(x) = map(x + flow(x))); otherwise the forward flow, and the backward map at
            each pixel is minus the forward flow there (right for smooth motion, approximate at
            object edges).
    """
    h, w = sem.size_hw
    step = max(1, -(-w // max_width))
    cls_small = sem.class_ids[::step, ::step]
    sh, sw = cls_small.shape[:2]
    f = cv2.resize(flow, (sw, sh), interpolation=cv2.INTER_LINEAR)
    fx_scale, fy_scale = sw / flow.shape[1], sh / flow.shape[0]
    xs, ys = motion.grid(sh, sw)
    sign = 1.0 if backward else -1.0
    map_x = xs + sign * fx_scale * f[..., 0]
    map_y = ys + sign * fy_scale * f[..., 1]
    # Fixed-point maps once, then one remap and one resize per plane (no stacking and splitting).
    m1, m2 = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2, nninterpolation=True)

    def warp(plane: np.ndarray) -> np.ndarray:
        small = cv2.remap(np.ascontiguousarray(plane), m1, m2, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST) if step > 1 else small

    class_ids = warp(cls_small)
    drivable = None
    if sem.drivable_mask is not None:
        drivable = warp(sem.drivable_mask[::step, ::step].view(np.uint8)).view(bool)
    return SemanticMap(
        class_ids=class_ids,
        class_names=sem.class_names,
        palette_bgr=sem.palette_bgr,
        probabilities=None,
        drivable_mask=drivable,
    )


class CarryStage(Stage):
    """Fills in the results of models that did not run on a frame, warped from their last
    fresh frame, and says for every model how fresh its result is (``results["freshness"]``).

    Args:
        keys: the models' result keys ("instances", "semantic").
        flow_width: width of the frames the optical flow is computed on.
    """

    name = "carry"

    def __init__(self, keys=("instances", "semantic"), flow_width: int = 320) -> None:
        self.keys = tuple(keys)
        self.motion = MotionField(flow_width)
        self._kept: dict[str, dict[str, _Kept]] = {}
        self._last_seq: dict[str, int] = {}
        self.carried = {k: 0 for k in self.keys}
        self.fresh = {k: 0 for k in self.keys}
        self._age_max = {k: 0 for k in self.keys}

    def process(self, frame: Frame) -> Frame:
        src = frame.source_id
        if frame.seq <= self._last_seq.get(src, -1):
            self._kept.pop(src, None)  # a new file or a restarted stream: nothing carries over
        self._last_seq[src] = frame.seq
        kept = self._kept.setdefault(src, {})
        run = frame.results.get(SCHEDULE_KEY)
        t_ms = _media_ms(frame)
        grey = None
        flows: dict[int, np.ndarray] = {}
        freshness: dict[str, dict[str, bool | int | float | None]] = {}
        for key in self.keys:
            value = frame.results.get(key)
            if value is not None and (run is None or key in run):
                if grey is None:
                    grey = self.motion.grey(frame.image_bgr)
                velocity = _track_velocities(kept.get(key), value, t_ms) if isinstance(value, Instances) else {}
                kept[key] = _Kept(value, frame.seq, t_ms, grey, velocity)
                freshness[key] = {"fresh": True, "from_frame": frame.seq, "age_frames": 0, "age_ms": 0.0}
                self.fresh[key] += 1
                continue
            old = kept.get(key)
            if old is None:
                freshness[key] = {"fresh": False, "from_frame": None, "age_frames": None, "age_ms": None}
                continue
            shifts = None
            if isinstance(old.value, Instances) and old.value.track_ids is not None:
                dt = t_ms - old.t_ms
                shifts = np.array(
                    [
                        old.velocity[t] * dt if t in old.velocity else (np.nan, np.nan)
                        for t in old.value.track_ids.tolist()
                    ],
                    np.float64,
                ).reshape(-1, 2)
            if isinstance(old.value, Instances):
                flow = flows.get(old.seq)
                if flow is None and (shifts is None or not np.isfinite(shifts).all()):
                    if grey is None:
                        grey = self.motion.grey(frame.image_bgr)
                    flow = flows[old.seq] = self.motion.flow(old.grey, grey)
                frame.results[key] = warp_instances(old.value, flow, frame.size_hw, shifts)
            elif isinstance(old.value, SemanticMap):
                # The backward flow (current frame -> the map's frame) remaps the map exactly.
                if grey is None:
                    grey = self.motion.grey(frame.image_bgr)
                back = flows.get(-1 - old.seq)
                if back is None:
                    back = flows[-1 - old.seq] = self.motion.flow(grey, old.grey)
                frame.results[key] = warp_semantic(old.value, back, self.motion, backward=True)
            else:
                frame.results[key] = old.value
            age = frame.seq - old.seq
            freshness[key] = {
                "fresh": False,
                "from_frame": old.seq,
                "age_frames": age,
                "age_ms": round(t_ms - old.t_ms, 1),
            }
            self.carried[key] += 1
            self._age_max[key] = max(self._age_max[key], age)
        frame.results[FRESHNESS_KEY] = freshness
        return frame

    def metrics(self) -> dict:
        return {"fresh": dict(self.fresh), "carried": dict(self.carried), "max_age_frames": dict(self._age_max)}
