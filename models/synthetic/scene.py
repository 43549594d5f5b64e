"""Seeded synthetic road scenes: a pinhole camera over a flat road, painted far to near.

World frame (metres): X to the right of the camera, Y up from the road, Z forward from the
camera. The camera is at height `camera_height_m` looking along +Z; the road may bend
(a lateral offset `curve * Z**2` added to every world point). Everything is drawn with OpenCV
polygons in painter's order (far first), into the image, the class map and an object-id map
at the same time, so the class map and the instance masks agree exactly.

Instance rule: an object whose visible pixel count (after occlusion and image clipping) is
below `SceneConfig.min_visible_pixels` is *ignored*: it is left out of `SceneSample.instances`
and its pixels are set to 255 (ignore) in the class map, so neither the instance nor the
semantic evaluation counts it. Its ground-truth id stays reserved and comes back when it grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from segstream.models.synthetic.classes import (
    BUILDING,
    CAR,
    IGNORE_ID,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    VEGETATION,
)

LANE_WIDTH_M = 3.5
SIDEWALK_WIDTH_M = 3.0
NEAR_Z_M = 1.0
FAR_Z_M = 400.0
VIEW_Z_M = 160.0  # objects are spawned and kept within this distance


@dataclass(frozen=True)
class SceneConfig:
    """Rendering settings.

    Attributes:
        width, height: output size in pixels.
        fps: frame rate of a clip, frames per second (sets the time step).
        min_visible_pixels: objects with fewer visible pixels are ignored (see module doc).
    """

    width: int = 1280
    height: int = 720
    fps: float = 10.0
    min_visible_pixels: int = 64

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"expected width and height >= 64, got {self.width}x{self.height}")
        if self.fps <= 0:
            raise ValueError(f"expected fps > 0, got {self.fps}")
        if self.min_visible_pixels < 1:
            raise ValueError(f"expected min_visible_pixels >= 1, got {self.min_visible_pixels}")


@dataclass
class SceneObject:
    """One visible car or person in a frame.

    Attributes:
        object_id: ground-truth id, stable across the frames of a `SceneSequence` (>= 1).
        label: "car" or "person".
        mask: (H, W) bool, the visible part after occlusion.
        box_xyxy: (4,) float32 pixel box of the mask, x2/y2 exclusive.
        area: number of visible pixels.
        depth_m: distance of the object's nearest point from the camera along Z, metres.
    """

    object_id: int
    label: str
    mask: np.ndarray
    box_xyxy: np.ndarray
    area: int
    depth_m: float


@dataclass
class SceneSample:
    """One rendered frame with its ground truth.

    Attributes:
        index: frame number in its sequence (0 for a still).
        image_bgr: (H, W, 3) uint8.
        class_map: (H, W) uint8 Cityscapes train ids, 255 = ignore.
        instances: visible objects, nearest last (the painting order).
        ignored_ids: ids of objects present but below the visibility threshold.
    """

    index: int
    image_bgr: np.ndarray
    class_map: np.ndarray
    instances: list[SceneObject]
    ignored_ids: list[int] = field(default_factory=list)


@dataclass
class _Mover:
    """A car or person in world coordinates (metres, metres per second)."""

    object_id: int
    label: str
    x: float
    z: float
    vx: float
    vz: float
    color: tuple
    size: float  # car width or person height, metres
    style: int
    phase: float = 0.0


@dataclass
class _Static:
    """Scenery fixed in the world: 'building', 'tree', 'pole' at (x, z) with sizes in metres."""

    kind: str
    x: float
    z: float
    length: float
    height: float
    color: tuple
    extra: float = 0.0


_CAR_COLORS = [
    (235, 235, 235),
    (180, 180, 185),
    (40, 40, 45),
    (30, 30, 160),
    (150, 60, 20),
    (90, 40, 15),
    (110, 110, 115),
    (30, 170, 210),
    (60, 90, 40),
    (20, 20, 110),
]
_CLOTH_COLORS = [
    (40, 40, 40),
    (150, 60, 30),
    (30, 30, 140),
    (200, 200, 200),
    (60, 120, 60),
    (40, 80, 160),
    (120, 120, 120),
    (90, 30, 90),
]
_SKIN_COLORS = [(150, 180, 225), (110, 140, 190), (60, 80, 120), (170, 200, 235)]
_BUILDING_COLORS = [
    (150, 160, 170),
    (120, 130, 150),
    (95, 105, 120),
    (175, 180, 185),
    (110, 120, 140),
    (140, 150, 165),
    (85, 90, 100),
]


class SceneSequence:
    """A seeded clip: the camera drives along the road, cars drive in lanes, people walk.

    Same seed and config -> identical frames. Iterate it or call `next_sample()`.

    Args:
        seed: seed for `np.random.default_rng` (an int or a tuple of ints).
        config: output size, frame rate and the visibility threshold.
    """

    def __init__(self, seed: int | tuple[int, ...], config: SceneConfig | None = None) -> None:
        self.config = config or SceneConfig()
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        cfg = self.config
        w, h = cfg.width, cfg.height
        self._dt = 1.0 / cfg.fps
        self._f = w / (2 * np.tan(np.radians(rng.uniform(30.0, 37.0))))
        self._cx = w / 2 + rng.uniform(-0.03, 0.03) * w
        self._horizon = h * rng.uniform(0.42, 0.52)
        self._cam_h = rng.uniform(1.3, 1.7)
        self._curve = rng.uniform(-1.5e-3, 1.5e-3) if rng.random() < 0.6 else 0.0
        self._lanes_same = int(rng.integers(1, 3))
        self._lanes_opp = int(rng.integers(1, 3))
        self._ego_lane = int(rng.integers(0, self._lanes_same))
        # lateral road edges relative to the camera
        self._road_right = LANE_WIDTH_M * (self._lanes_same - self._ego_lane - 0.5)
        self._road_left = self._road_right - LANE_WIDTH_M * (self._lanes_same + self._lanes_opp)
        self._center_x = self._road_right - LANE_WIDTH_M * self._lanes_same
        self._cruise_speed = rng.uniform(6.0, 16.0)  # camera car, m/s; it brakes for people
        self._ego_speed = self._cruise_speed
        self._cam_z = 0.0
        self._index = 0
        self._next_id = 1
        # lighting and sensor
        self._gain = rng.uniform(0.65, 1.2)
        # per-channel light: global gain times a colour tint, folded into every painted colour
        self._light = tuple(self._gain * float(t) for t in rng.uniform(0.9, 1.1, 3))
        self._haze = rng.uniform(0.0008, 0.004)
        self._blur = int(rng.choice([0, 3, 3, 5]))
        pad = 32
        # sensor noise: the difference of two uniform banks (triangular, zero mean), cut at
        # a random offset each frame so that it changes without drawing 2.7 M numbers per frame
        shift = np.uint8(8 - int(rng.integers(2, 5)))  # values 0..3, 0..7 or 0..15
        shape = (h + pad, w + pad, 3)
        self._noise_pos = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape) >> shift
        self._noise_neg = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape) >> shift
        top = np.array(rng.uniform([150, 90, 40], [230, 170, 110]))
        bottom = np.array(rng.uniform([215, 195, 170], [250, 240, 235]))
        self._sky_top, self._sky_bottom = top, bottom
        self._sky_rows = None
        self._haze_color = tuple(float(v) for v in bottom)
        self._asphalt = rng.uniform(70, 120) + rng.uniform(-6, 6, 3)
        self._sidewalk = rng.uniform(140, 190) + rng.uniform(-8, 8, 3)
        self._grass = np.array([60, 120, 95]) * rng.uniform(0.7, 1.2) + rng.uniform(-10, 10, 3)
        self._clouds = [
            (
                rng.uniform(0, w),
                rng.uniform(0, 1),
                rng.uniform(0.05, 0.18) * w,
                rng.uniform(0.02, 0.06) * h,
                rng.uniform(0.3, 0.8),
            )
            for _ in range(int(rng.integers(0, 7)))
        ]
        self._density = rng.uniform(0.4, 1.0)
        self._urban = bool(rng.random() < 0.65)  # else open country: hills, trees, few buildings
        self._building_share = rng.uniform(0.45, 0.7) if self._urban else rng.uniform(0.0, 0.1)
        self._setback = rng.uniform(1.0, 6.0)
        self._hills = [
            (rng.uniform(-0.2, 1.2) * w, rng.uniform(0.15, 0.5) * w, rng.uniform(0.03, 0.12) * h)
            for _ in range(int(rng.integers(0, 5)) if not self._urban else 0)
        ]
        self._hill_color = tuple(float(v) for v in rng.uniform([90, 140, 150], [130, 190, 200]))
        self._movers: list[_Mover] = []
        self._painted: list[_Mover] = []  # movers of the frame being rendered, far first
        self._ids_live = False
        self._statics: list[_Static] = []
        self._scenery_until = 0.0
        self._extend_scenery()
        for _ in range(int(rng.integers(3, 9) * self._density) + 2):
            self._spawn_car(rng.uniform(6, VIEW_Z_M * 0.7))
        for _ in range(int(rng.integers(2, 8))):
            self._spawn_person(rng.uniform(4, 60))

    # ---- world bookkeeping -------------------------------------------------------------
    def _new_id(self) -> int:
        if self._next_id >= np.iinfo(np.uint16).max:
            raise OverflowError(f"expected fewer than {np.iinfo(np.uint16).max} objects in one sequence")
        self._next_id += 1
        return self._next_id - 1

    def _spawn_car(self, rel_z: float) -> None:
        rng = self._rng
        lane = int(rng.integers(0, self._lanes_same + self._lanes_opp))
        if lane < self._lanes_same:
            x = self._road_right - LANE_WIDTH_M * (lane + 0.5)
            speed = self._cruise_speed + rng.uniform(-4, 4)
            if abs(x) < 1.5:  # ahead of us in our lane: never slower than the camera car
                speed = self._cruise_speed + rng.uniform(0, 4)
        else:
            x = self._center_x - LANE_WIDTH_M * (lane - self._lanes_same + 0.5)
            speed = -rng.uniform(8, 16)
        x += rng.uniform(-0.3, 0.3)
        z = self._cam_z + rel_z
        for m in self._movers:  # keep a gap to the car ahead or behind in the same lane
            if m.label == "car" and abs(m.x - x) < 1.5 and abs(m.z - z) < 9:
                return
        if abs(x) < 1.5 and rel_z < 8:  # nothing spawns on top of the camera car
            return
        self._movers.append(
            _Mover(
                self._new_id(),
                "car",
                x,
                z,
                0.0,
                speed,
                _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))],
                rng.uniform(1.65, 2.0),
                int(rng.integers(0, 3)),
            )
        )

    def _spawn_person(self, rel_z: float) -> None:
        rng = self._rng
        side = 1 if rng.random() < 0.5 else -1
        edge = self._road_right if side > 0 else self._road_left
        x = edge + side * rng.uniform(0.5, SIDEWALK_WIDTH_M - 0.4)
        vz = rng.choice([-1, 1]) * rng.uniform(0.8, 1.6)
        vx = 0.0
        if rng.random() < 0.25:  # a crossing pedestrian
            vx, vz = -side * rng.uniform(1.0, 1.8), 0.0
        cloth = (
            _CLOTH_COLORS[int(rng.integers(len(_CLOTH_COLORS)))],
            _CLOTH_COLORS[int(rng.integers(len(_CLOTH_COLORS)))],
            _SKIN_COLORS[int(rng.integers(len(_SKIN_COLORS)))],
        )
        self._movers.append(
            _Mover(
                self._new_id(),
                "person",
                x,
                self._cam_z + rel_z,
                vx,
                vz,
                cloth,
                rng.uniform(1.55, 1.9),
                int(rng.integers(0, 2)),
                rng.uniform(0, 6.3),
            )
        )

    def _extend_scenery(self) -> None:
        rng = self._rng
        target = self._cam_z + VIEW_Z_M + 60
        while self._scenery_until < target:
            z = self._scenery_until
            step = rng.uniform(6, 25)
            tree_reach = max(self._setback - 0.3, 0.7) if self._urban else 9.0  # trees stay in front of buildings
            for side, edge in ((1, self._road_right), (-1, self._road_left)):
                kerb = edge + side * SIDEWALK_WIDTH_M
                r = rng.random()
                if r < self._building_share:
                    length = rng.uniform(8, 30)
                    # one building line per side, so that buildings never intersect
                    self._statics.append(
                        _Static(
                            "building",
                            kerb + side * (self._setback + rng.uniform(0, 0.3)),
                            z + rng.uniform(0, 4),
                            length,
                            rng.uniform(5, 28),
                            _BUILDING_COLORS[int(rng.integers(len(_BUILDING_COLORS)))],
                            float(rng.integers(0, 3)),
                        )
                    )
                elif r < self._building_share + (1 - self._building_share) * 0.8:
                    for _ in range(int(rng.integers(1, 4))):
                        self._statics.append(
                            _Static(
                                "tree",
                                kerb + side * rng.uniform(0.5, tree_reach),
                                z + rng.uniform(0, step),
                                0,
                                rng.uniform(4, 11),
                                tuple(np.array([40, 110, 60]) * rng.uniform(0.6, 1.3)),
                                rng.uniform(0.3, 0.5),
                            )
                        )
                if rng.random() < 0.35:
                    self._statics.append(
                        _Static(
                            "pole",
                            edge + side * 0.4,
                            z + rng.uniform(0, step),
                            0,
                            rng.uniform(5, 9),
                            (150, 150, 150),
                            float(rng.random() < 0.4),
                        )
                    )
            self._scenery_until += step

    def _advance(self) -> None:
        rng, dt = self._rng, self._dt
        # the camera car brakes (6 m/s^2) for a person on the road and speeds up again (2 m/s^2)
        blocked = any(
            m.label == "person" and self._road_left < m.x < self._road_right and -1.0 < m.z - self._cam_z < 35
            for m in self._movers
        )
        step = (0.0 - self._ego_speed) if blocked else (self._cruise_speed - self._ego_speed)
        self._ego_speed += float(np.clip(step, -6.0 * dt, 2.0 * dt))
        self._cam_z += self._ego_speed * dt
        # cars keep their lane and do not drive through the car ahead: a follower closer than
        # 10 m takes the leader's speed (leader = nearest car further along the lane's direction)
        cars = sorted(
            (m for m in self._movers if m.label == "car"),
            key=lambda m: (round(m.x / LANE_WIDTH_M), m.z * np.sign(m.vz)),
        )
        for follower, leader in zip(cars, cars[1:]):
            if round(follower.x / LANE_WIDTH_M) == round(leader.x / LANE_WIDTH_M) and abs(leader.z - follower.z) < 10:
                if abs(leader.vz) < abs(follower.vz):
                    follower.vz = leader.vz
        for m in self._movers:
            # a crossing pedestrian waits at the kerb while the camera car is close
            on_kerb = not (self._road_left < m.x < self._road_right)
            entering = (m.x > self._road_right and m.vx < 0) or (m.x < self._road_left and m.vx > 0)
            if on_kerb and entering and m.z - self._cam_z < 40:
                continue
            m.x += m.vx * dt
            m.z += m.vz * dt
            m.phase += dt * 7.0
        keep = []
        for m in self._movers:
            rel = m.z - self._cam_z
            if not (-6 < rel < VIEW_Z_M + 20):
                continue
            if m.label == "person" and not (
                self._road_left - SIDEWALK_WIDTH_M - 1 < m.x < self._road_right + SIDEWALK_WIDTH_M + 1
            ):
                continue
            keep.append(m)
        self._movers = keep
        cars = sum(m.label == "car" for m in self._movers)
        if cars < 3 + 8 * self._density and rng.random() < 0.5:
            self._spawn_car(rng.uniform(VIEW_Z_M * 0.6, VIEW_Z_M) if rng.random() < 0.8 else rng.uniform(-4, 2))
        if sum(m.label == "person" for m in self._movers) < 6 and rng.random() < 0.15:
            self._spawn_person(rng.uniform(30, 80))
        self._statics = [s for s in self._statics if s.z + s.length > self._cam_z + NEAR_Z_M]
        self._extend_scenery()

    # ---- projection --------------------------------------------------------------------
    def _project(self, x, y, z) -> np.ndarray:
        """World points (broadcastable arrays, metres, camera-relative z) -> (N, 2) int32 pixels."""
        z = np.maximum(np.asarray(z, float), 0.05)
        u = self._cx + self._f * (np.asarray(x, float) + self._curve * z * z) / z
        v = self._horizon + self._f * (self._cam_h - np.asarray(y, float)) / z
        shape = np.broadcast_shapes(u.shape, v.shape)
        pts = np.empty(shape + (2,), float)
        pts[..., 0] = u
        pts[..., 1] = v
        pts = pts.reshape(-1, 2)
        np.clip(np.rint(pts), -30000, 30000, out=pts)
        return pts.astype(np.int32)

    def _shade(self, color, z: float, factor: float = 1.0) -> tuple:
        """Colour at distance z (metres): scaled by factor, blended into the haze."""
        a = 1.0 - math.exp(-self._haze * max(float(z), 0.0))
        return tuple(
            min(max((float(c) * factor * (1 - a) + hc * a) * g, 0.0), 255.0)
            for c, hc, g in zip(color, self._haze_color, self._light)
        )

    # ---- rendering ---------------------------------------------------------------------
    def next_sample(self) -> SceneSample:
        """Render the current frame, then advance the world by one time step."""
        sample = self._render()
        self._advance()
        self._index += 1
        return sample

    def __iter__(self):
        return self

    def __next__(self) -> SceneSample:
        return self.next_sample()

    def _render(self) -> SceneSample:
        cfg = self.config
        w, h = cfg.width, cfg.height
        img = np.empty((h, w, 3), np.uint8)
        cls = np.empty((h, w), np.uint8)
        ids = np.zeros((h, w), np.uint16)
        self._ids_live = False  # ids stays all zero until the first car or person is painted
        self._draw_background(img, cls, ids)
        self._draw_items(img, cls, ids)
        self._finish_image(img)
        instances, ignored = self._collect(ids, cls)
        return SceneSample(self._index, img, cls, instances, ignored)

    def _draw_background(self, img, cls, ids) -> None:
        """Sky, ground, road, sidewalks and markings: flat things under everything else."""
        h, w = cls.shape
        hz = int(np.clip(round(self._horizon), 1, h - 1))
        # sky: vertical gradient with soft clouds
        if self._sky_rows is None:
            t = np.linspace(0, 1, hz)[:, None]
            rows = (self._sky_top * (1 - t) + self._sky_bottom * t) * np.array(self._light)
            # a contiguous (hz, W, 3) copy: memcpy per frame instead of a slow broadcast
            self._sky_rows = np.ascontiguousarray(
                np.broadcast_to(np.clip(rows, 0, 255).astype(np.uint8)[:, None, :], (hz, w, 3))
            )
        img[:hz] = self._sky_rows
        for cx, cy, rx, ry, a in self._clouds:
            c = (int(cx - self._cam_z * 0.5) % (w + 400)) - 200
            cy = int(cy * hz * 0.8)
            y0, y1 = max(cy - int(ry) - 2, 0), min(cy + int(ry) + 2, hz)
            x0, x1 = max(c - int(rx) - 2, 0), min(c + int(rx) + 2, w)
            if y1 <= y0 or x1 <= x0:
                continue
            roi = img[y0:y1, x0:x1]
            layer = roi.copy()
            cv2.ellipse(layer, (c - x0, cy - y0), (int(rx), int(ry)), 0, 0, 360, self._shade((245, 245, 245), 0), -1)
            cv2.addWeighted(layer, a, roi, 1 - a, 0, dst=roi)
        cls[:hz] = SKY
        # ground beyond the kerbs
        cv2.rectangle(img, (0, hz), (w, h), self._shade(self._grass, 40), -1)
        cls[hz:] = TERRAIN
        # distant hills (terrain) and a treeline over the horizon gap
        for hx, hw, hh in self._hills:
            c = int(hx - self._cam_z * 0.02)
            cv2.ellipse(
                img, (c, int(self._horizon)), (int(hw), int(hh)), 0, 180, 360, self._shade(self._hill_color, 120), -1
            )
            cv2.ellipse(cls, (c, int(self._horizon)), (int(hw), int(hh)), 0, 180, 360, TERRAIN, -1)
        band = max(2, int(h * 0.012))
        xs = np.arange(0, w + 40, 40)
        bumps = self._horizon - band - (np.sin(xs * 0.05 + 1.3) + 1) * band * 0.8
        poly = np.concatenate([np.stack([xs, bumps], 1), [[w, self._horizon + 2], [0, self._horizon + 2]]]).astype(
            np.int32
        )
        self._fill([poly], self._shade((60, 100, 70), 300), VEGETATION, img, cls, ids, 0)

        # road surface and sidewalks, sampled along Z so that bends stay smooth
        zs = np.geomspace(NEAR_Z_M, FAR_Z_M, 40)

        def strip(x0, x1, y=0.0):
            left = self._project(x0, y, zs)
            right = self._project(x1, y, zs)
            return np.concatenate([left, right[::-1]])

        for side, edge in ((1, self._road_right), (-1, self._road_left)):
            out = edge + side * SIDEWALK_WIDTH_M
            self._fill(
                [strip(min(edge, out), max(edge, out), 0.15)],
                self._shade(self._sidewalk, 30),
                SIDEWALK,
                img,
                cls,
                ids,
                0,
            )
            self._fill(
                [strip(edge - 0.01, edge + 0.01, 0.0), strip(edge, edge, 0.15)],
                self._shade(self._sidewalk, 30, 0.75),
                SIDEWALK,
                img,
                cls,
                ids,
                0,
            )
        # kerb face: between road level and sidewalk level at the road edge
        for edge in (self._road_right, self._road_left):
            lo, hi = self._project(edge, 0.0, zs), self._project(edge, 0.15, zs)
            self._fill(
                [np.concatenate([lo, hi[::-1]])], self._shade(self._sidewalk, 30, 0.6), SIDEWALK, img, cls, ids, 0
            )
        self._fill([strip(self._road_left, self._road_right)], self._shade(self._asphalt, 60), ROAD, img, cls, ids, 0)
        # lane markings: solid edges, a double yellow centre, dashed lane lines
        marks = []
        for x in (self._road_left + 0.25, self._road_right - 0.25):
            marks.append(strip(x - 0.08, x + 0.08))
        yellow = [
            strip(self._center_x - 0.2, self._center_x - 0.08),
            strip(self._center_x + 0.08, self._center_x + 0.2),
        ]
        dash_lines = [self._road_right - LANE_WIDTH_M * k for k in range(1, self._lanes_same)]
        dash_lines += [self._center_x - LANE_WIDTH_M * k for k in range(1, self._lanes_opp)]
        start = np.floor((self._cam_z + NEAR_Z_M) / 12.0) * 12.0
        dz = np.arange(start, self._cam_z + 150, 12.0) - self._cam_z
        z0, z1 = np.maximum(dz, NEAR_Z_M), dz + 3.0
        z0, z1 = z0[z1 > z0], z1[z1 > z0]
        for x in dash_lines:
            quads = self._project(
                np.array([x - 0.07, x + 0.07, x + 0.07, x - 0.07]), 0.0, np.stack([z0, z0, z1, z1], 1)
            ).reshape(-1, 4, 2)
            marks.extend(quads)
        self._fill(marks, self._shade((225, 225, 225), 40, 0.9 * (self._asphalt.mean() / 95)), ROAD, img, cls, ids, 0)
        self._fill(yellow, self._shade((40, 180, 210), 40), ROAD, img, cls, ids, 0)

    def _draw_items(self, img, cls, ids) -> None:
        """Buildings, trees, poles, cars and people in painter's order (far first)."""
        # buildings sit laterally outside everything else, so they all go first
        items = []
        for s in self._statics:
            z = s.z - self._cam_z
            if s.kind == "building":
                if z + s.length > NEAR_Z_M and z < VIEW_Z_M + 100:
                    items.append((1e6 + z, "building", s))
            elif NEAR_Z_M < z < VIEW_Z_M:
                u = self._cx + self._f * (s.x + self._curve * z * z) / z
                reach = self._f * (s.height * 0.4 + 0.5) / z
                if -reach < u < self.config.width + reach:  # skip what is off to the side
                    items.append((z, s.kind, s))
        shadows = []
        for m in self._movers:
            z = m.z - self._cam_z
            if z > 0.3 and z < VIEW_Z_M + 20:
                items.append((z, m.label, m))
                if m.label == "car":
                    shadows.append(m)
        for m in shadows:  # soft dark patch under each car, still road
            z = m.z - self._cam_z
            zz = np.array([max(z - 0.3, 0.3), z + 4.8])
            pts = np.concatenate(
                [self._project(m.x - m.size / 2 - 0.1, 0, zz), self._project(m.x + m.size / 2 + 0.1, 0, zz)[::-1]]
            )
            cv2.fillPoly(img, [pts], self._shade(self._asphalt, z, 0.45))
        items.sort(key=lambda it: -it[0])
        self._painted = []
        for _, kind, obj in items:
            if kind == "building":
                self._draw_building(obj, img, cls, ids)
            elif kind == "tree":
                self._draw_tree(obj, img, cls, ids)
            elif kind == "pole":
                self._draw_pole(obj, img, cls, ids)
            else:
                self._ids_live = True
                (self._draw_car if kind == "car" else self._draw_person)(obj, img, cls, ids)
                self._painted.append(obj)

    def _fill(self, polys, color, class_id, img, cls, ids, object_id) -> None:
        cv2.fillPoly(img, polys, color)
        cv2.fillPoly(cls, polys, int(class_id))
        if self._ids_live:
            cv2.fillPoly(ids, polys, int(object_id))

    @staticmethod
    def _paint(polys, color, img) -> None:
        """Details inside an already-filled silhouette of the same class: image only."""
        cv2.fillPoly(img, polys, color)

    def _fill_convex(self, pts, color, class_id, img, cls, ids, object_id) -> None:
        hull = cv2.convexHull(pts)
        cv2.fillConvexPoly(img, hull, color)
        cv2.fillConvexPoly(cls, hull, int(class_id))
        cv2.fillConvexPoly(ids, hull, int(object_id))

    def _draw_building(self, s: _Static, img, cls, ids) -> None:
        z0 = max(s.z - self._cam_z, NEAR_Z_M)
        z1 = s.z + s.length - self._cam_z
        side = 1 if s.x > 0 else -1
        depth = 12.0
        zz = np.linspace(z0, z1, 6)
        facade = np.concatenate([self._project(s.x, 0, zz), self._project(s.x, s.height, zz[::-1])])
        self._fill([facade], self._shade(s.color, z0, 0.85), BUILDING, img, cls, ids, 0)
        if s.z - self._cam_z > NEAR_Z_M:  # the end wall facing the camera
            xx = np.linspace(s.x, s.x + side * depth, 4)
            end = np.concatenate([self._project(xx, 0, z0), self._project(xx[::-1], s.height, z0)])
            self._fill([end], self._shade(s.color, z0, 1.0), BUILDING, img, cls, ids, 0)
        # windows on the facade: a grid of darker quads, still "building"
        rows = int(s.height // 3.2)
        cols = int(s.length // 3.0)
        if rows < 1 or cols < 1 or z0 > 120:
            return
        za = s.z + np.arange(cols) * 3.0 + 0.8 - self._cam_z
        za = za[za >= NEAR_Z_M]
        ya = np.arange(rows) * 3.2 + 1.0 + s.extra * 0.2
        if len(za) == 0:
            return
        zg, yg = np.meshgrid(za, ya)
        zq = np.stack([zg, zg + 1.4, zg + 1.4, zg], -1)
        yq = np.stack([yg, yg, yg + 1.5, yg + 1.5], -1)
        wins = list(self._project(s.x - side * 0.01, yq, zq).reshape(-1, 4, 2))
        if wins:
            glass = (100, 80, 60) if s.extra < 1 else (170, 150, 120)
            self._paint(wins, self._shade(glass, z0), img)

    def _draw_tree(self, s: _Static, img, cls, ids) -> None:
        z = s.z - self._cam_z
        trunk_h = s.height * 0.4
        trunk = np.concatenate(
            [self._project([s.x - 0.15, s.x + 0.15], 0, z), self._project([s.x + 0.15, s.x - 0.15], trunk_h, z)]
        )
        self._fill([trunk], self._shade((40, 60, 80), z), VEGETATION, img, cls, ids, 0)
        r = s.height * 0.32
        for dx, dy, k, f in (
            (0, 0.62, 1.0, 0.8),
            (-0.3, 0.75, 0.75, 1.0),
            (0.3, 0.78, 0.7, 1.15),
            (0, 0.88, 0.6, 1.25),
        ):
            c = self._project(s.x + dx * r, s.height * dy, z)[0]
            rad = max(1, int(self._f * r * k / z))
            col = self._shade(s.color, z, f)
            cv2.circle(img, (int(c[0]), int(c[1])), rad, col, -1)
            cv2.circle(cls, (int(c[0]), int(c[1])), rad, VEGETATION, -1)
            cv2.circle(ids, (int(c[0]), int(c[1])), rad, 0, -1)

    def _draw_pole(self, s: _Static, img, cls, ids) -> None:
        z = s.z - self._cam_z
        pole = np.concatenate(
            [self._project([s.x - 0.08, s.x + 0.08], 0, z), self._project([s.x + 0.08, s.x - 0.08], s.height, z)]
        )
        self._fill([pole], self._shade(s.color, z, 0.8), POLE, img, cls, ids, 0)
        if s.extra:
            sx = s.x - np.sign(s.x) * 0.1
            sign = np.concatenate(
                [
                    self._project([sx - 0.45, sx + 0.45], s.height * 0.55, z),
                    self._project([sx + 0.45, sx - 0.45], s.height * 0.55 + 0.8, z),
                ]
            )
            self._fill([sign], self._shade((160, 90, 20), z), SIGN, img, cls, ids, 0)

    def _draw_car(self, m: _Mover, img, cls, ids) -> None:
        z = m.z - self._cam_z
        if z < 0.3:
            return
        w, length = m.size, m.size * 2.4
        hb, hc = (1.0, 1.45) if m.style != 2 else (1.15, 1.7)  # style 2: taller (SUV)
        x0, x1 = m.x - w / 2, m.x + w / 2
        oid, col = m.object_id, self._shade(m.color, z)

        def box(xa, xb, ya, yb, za, zb):
            return self._project(
                [xa, xb, xa, xb, xa, xb, xa, xb],
                [ya, ya, yb, yb, ya, ya, yb, yb],
                [max(za, 0.3)] * 4 + [max(zb, 0.3)] * 4,
            )

        wheel = (20, 20, 20)
        for zw in (z + 0.7, z + length - 0.8):
            for xw in (x0 + 0.05, x1 - 0.3):
                if zw > 0.3:
                    self._fill_convex(
                        box(xw, xw + 0.25, 0, 0.6, zw - 0.33, zw + 0.33), self._shade(wheel, z), CAR, img, cls, ids, oid
                    )
        self._fill_convex(box(x0, x1, 0.3, hb, z, z + length), col, CAR, img, cls, ids, oid)
        cz0, cz1 = (z + 0.9, z + length - 1.3) if m.vz > 0 else (z + 1.3, z + length - 0.9)
        if m.style == 1:
            cz0 = z + 0.5 if m.vz > 0 else cz0  # hatchback
        self._fill_convex(box(x0 + 0.12, x1 - 0.12, hb, hc, cz0, cz1), col, CAR, img, cls, ids, oid)
        # near face (rear or front), darker, with glass and lights
        face = self._project([x0, x1, x1, x0], [0.3, 0.3, hb, hb], z)
        self._paint([face], self._shade(m.color, z, 0.8), img)
        glass = self._project(
            [x0 + 0.22, x1 - 0.22, x1 - 0.3, x0 + 0.3],
            [hb + 0.03, hb + 0.03, hc - 0.05, hc - 0.05],
            [cz0, cz0, cz0 + 0.3, cz0 + 0.3],
        )
        self._paint([glass], self._shade((70, 55, 45), z), img)
        # side windows of the side the camera sees
        sx = x0 + 0.12 if m.x > 0 else x1 - 0.12
        side = self._project(
            [sx, sx, sx, sx],
            [hb + 0.05, hb + 0.05, hc - 0.07, hc - 0.07],
            [cz0 + 0.35, cz1 - 0.2, cz1 - 0.35, cz0 + 0.5],
        )
        self._paint([side], self._shade((80, 60, 50), z), img)
        light = (40, 40, 200) if m.vz > 0 else (200, 230, 240)
        lamps = [
            self._project([xa, xa + 0.3, xa + 0.3, xa], [hb - 0.25, hb - 0.25, hb - 0.1, hb - 0.1], z)
            for xa in (x0 + 0.1, x1 - 0.4)
        ]
        plate = self._project([m.x - 0.26, m.x + 0.26, m.x + 0.26, m.x - 0.26], [0.45, 0.45, 0.57, 0.57], z)
        self._paint(lamps, self._shade(light, z), img)
        self._paint([plate], self._shade((225, 225, 225), z), img)

    def _draw_person(self, m: _Mover, img, cls, ids) -> None:
        z = m.z - self._cam_z
        if z < 0.8:
            return
        oid = m.object_id
        hgt = m.size
        s = self._f / z  # pixels per metre
        foot = self._project(m.x, 0, z)[0].astype(float)

        def pt(dx, dy):
            return (int(round(foot[0] + dx * s)), int(round(foot[1] - dy * s)))

        shirt, trousers, skin = (self._shade(c, z) for c in m.color)
        swing = np.sin(m.phase) * (0.18 if (m.vx or m.vz) else 0.0)
        th = max(1, int(round(0.14 * s)))
        hip = 0.52 * hgt

        def line(a, b, color, thick):
            cv2.line(img, a, b, color, thick)
            cv2.line(cls, a, b, PERSON, thick)
            cv2.line(ids, a, b, oid, thick)

        line(pt(-0.08, hip), pt(-0.08 + swing, 0.04), trousers, th)
        line(pt(0.08, hip), pt(0.08 - swing, 0.04), trousers, th)
        torso = np.array([pt(-0.2, hip), pt(0.2, hip), pt(0.22, 0.82 * hgt), pt(-0.22, 0.82 * hgt)], np.int32)
        self._fill([torso], shirt, PERSON, img, cls, ids, oid)
        arm = max(1, int(round(0.09 * s)))
        line(pt(-0.24, 0.8 * hgt), pt(-0.26 - swing * 0.6, 0.45 * hgt), shirt, arm)
        line(pt(0.24, 0.8 * hgt), pt(0.26 + swing * 0.6, 0.45 * hgt), shirt, arm)
        head = pt(0, 0.91 * hgt)
        r = max(1, int(round(0.11 * s)))
        for target, value in ((img, skin), (cls, PERSON), (ids, oid)):
            cv2.circle(target, head, r, value, -1)
        if m.style:  # hair or a cap
            cv2.ellipse(img, head, (r, r), 0, 180, 360, self._shade((30, 30, 40), z), -1)

    def _finish_image(self, img: np.ndarray) -> None:
        """Optical blur and sensor noise, in place (the light is already in the colours)."""
        if self._blur:
            cv2.GaussianBlur(img, (self._blur, self._blur), 0, dst=img)
        h, w = img.shape[:2]
        oy, ox = (int(v) for v in self._rng.integers(0, 32, 2))
        cv2.add(img, self._noise_pos[oy : oy + h, ox : ox + w], dst=img)
        oy, ox = (int(v) for v in self._rng.integers(0, 32, 2))
        cv2.subtract(img, self._noise_neg[oy : oy + h, ox : ox + w], dst=img)

    def _collect(self, ids, cls) -> tuple[list[SceneObject], list[int]]:
        """Visible masks of the painted movers from the id map; ignore the too-small ones."""
        h, w = ids.shape
        instances, ignored = [], []
        for m in self._painted:  # far to near: the painting order
            label = m.label
            ys, xs = self._object_extent(m)
            y0, y1 = max(ys[0], 0), min(ys[1], h)
            x0, x1 = max(xs[0], 0), min(xs[1], w)
            if y1 <= y0 or x1 <= x0:
                continue
            local = ids[y0:y1, x0:x1] == m.object_id
            area = int(np.count_nonzero(local))
            if area == 0:
                continue
            if area < self.config.min_visible_pixels:
                cls[y0:y1, x0:x1][local] = IGNORE_ID
                ignored.append(m.object_id)
                continue
            rows = np.flatnonzero(local.any(axis=1))
            cols = np.flatnonzero(local.any(axis=0))
            mask = np.zeros((h, w), bool)
            mask[y0:y1, x0:x1] = local
            box = np.array([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], np.float32)
            instances.append(SceneObject(m.object_id, label, mask, box, area, float(m.z - self._cam_z)))
        return instances, ignored

    def _object_extent(self, m: _Mover) -> tuple[tuple[int, int], tuple[int, int]]:
        """Generous pixel bounds (rows, cols) of everything drawn for a mover."""
        z = m.z - self._cam_z
        if m.label == "car":
            zc = max(z, 0.3)
            zf = max(z + m.size * 2.4 + 0.5, 0.3)
            pts = self._project([m.x - m.size, m.x + m.size] * 4, [0, 0, 2.0, 2.0] * 2, [zc] * 4 + [zf] * 4)
        else:
            pts = self._project([m.x - 0.8, m.x + 0.8] * 2, [-0.3, -0.3, m.size + 0.3, m.size + 0.3], z)
        pad = 3
        return (
            (int(pts[:, 1].min()) - pad, int(pts[:, 1].max()) + pad),
            (int(pts[:, 0].min()) - pad, int(pts[:, 0].max()) + pad),
        )


def generate_scene(seed: int | tuple[int, ...], config: SceneConfig | None = None) -> SceneSample:
    """Render one still road scene.

    Args:
        seed: seed for `np.random.default_rng`; same seed and config -> identical sample.
        config: output size and visibility threshold; fps is irrelevant for a still.

    Returns:
        The first frame of `SceneSequence(seed, config)`.
    """
    return SceneSequence(seed, config).next_sample()
