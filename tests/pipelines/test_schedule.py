"""Frame scheduling: models on a cadence, results carried (warped by optical flow) to the frames
in between, and every output saying how fresh each result is."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segstream.pipelines.tasks.results import Instances, SemanticMap
from segstream.pipelines.tasks.schedule import (
    SCHEDULE_KEY,
    CarryStage,
    ModelScheduler,
    MotionField,
    ScheduledStage,
    ScheduleStage,
    warp_instances,
    warp_semantic,
)
from segstream.stream.frame import Frame
from segstream.stream.graph import FunctionStage, Graph, GraphSettings, Parallel
from segstream.stream.sinks import CallbackSink, JsonlSink
from segstream.stream.sources import open_source

H, W = 180, 320


def _background(seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (H // 12, W // 12, 3), dtype=np.uint8)
    return cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)


def _object_texture(h, w, seed=1):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def _scene(t, step=5):
    """A textured 40x60 object moving right by ``step`` px per frame over a static textured
    background; returns the image and the object's true mask."""
    img = _background()
    x = 40 + step * t
    img[60:100, x : x + 60] = _object_texture(40, 60)
    mask = np.zeros((H, W), bool)
    mask[60:100, x : x + 60] = True
    return img, mask


def _iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def _instances(t, track_id=7):
    _, mask = _scene(t)
    x = 40 + 5 * t
    return Instances(
        np.array([[x, 60, x + 60, 100]], np.float32),
        np.array([0.9], np.float32),
        np.array([0]),
        mask[None],
        track_ids=np.array([track_id]),
    )


def test_a_new_object_is_carried_by_optical_flow():
    motion = MotionField(width=320)
    img0, mask0 = _scene(0)
    img1, truth = _scene(1)
    inst0 = _instances(0)
    carried = warp_instances(inst0, motion.flow(motion.grey(img0), motion.grey(img1)), (H, W))
    assert carried.track_ids.tolist() == [7]
    assert carried.boxes_xyxy[0, 0] == pytest.approx(45, abs=1.5)
    assert _iou(carried.masks[0], truth) > 0.9 > _iou(mask0, truth)
    assert inst0.boxes_xyxy[0, 0] == 40 and inst0.masks[0].sum() == mask0.sum()  # input untouched


def test_carried_masks_follow_a_moving_object():
    """Instances every 3rd frame of a generated sequence: on the frames between, the carried mask
    moves with the object (its tracked motion), where a copy of the last mask would lag."""
    stage = CarryStage(keys=("instances",), flow_width=160)
    for t in range(10):
        img, truth = _scene(t)
        f = Frame("clip", t, t / 30, 0, img)
        fresh = t % 3 == 0
        f.results[SCHEDULE_KEY] = frozenset({"instances"} if fresh else ())
        if fresh:
            f.results["instances"] = _instances(t)
        out = stage.process(f)
        carried = out.results["instances"]
        assert out.results["freshness"]["instances"]["fresh"] == fresh
        if t > 3 and not fresh:
            key = 3 * (t // 3)
            _, stale = _scene(key)
            assert carried.track_ids.tolist() == [7]
            assert carried.boxes_xyxy[0, 0] == pytest.approx(40 + 5 * t, abs=1)
            assert _iou(carried.masks[0], truth) > 0.95 > 0.9 > _iou(stale, truth)


def test_carried_class_map_follows_the_camera_motion():
    """A camera panning 4 px per frame over a textured scene: the class map and the drivable area
    carried 3 frames follow the pan."""
    rng = np.random.default_rng(5)
    world = cv2.resize(
        rng.integers(0, 255, (H // 10, (W + 60) // 10, 3), dtype=np.uint8), (W + 60, H), interpolation=cv2.INTER_CUBIC
    )
    labels = np.zeros((H, W + 60), np.uint8)
    labels[:, 150:230] = 13  # a class region (a building) in the world
    labels[120:, :] = 0

    def view(t):
        return np.ascontiguousarray(world[:, 40 - 4 * t : 40 - 4 * t + W]), labels[:, 40 - 4 * t : 40 - 4 * t + W] == 13

    motion = MotionField(width=160)
    img0, region0 = view(0)
    sem0 = SemanticMap(
        class_ids=region0.astype(np.uint8) * 13,
        class_names=tuple(str(i) for i in range(19)),
        drivable_mask=region0.copy(),
    )
    img3, truth = view(3)
    for backward in (False, True):
        g0, g3 = motion.grey(img0), motion.grey(img3)
        flow = motion.flow(g3, g0) if backward else motion.flow(g0, g3)
        carried = warp_semantic(sem0, flow, motion, backward=backward)
        assert carried.class_ids.shape == (H, W) and carried.class_ids.dtype == np.uint8
        assert _iou(carried.class_ids == 13, truth) > 0.95 > 0.9 > _iou(region0, truth)
        assert _iou(carried.drivable_mask, truth) > 0.95


def test_scheduler_runs_models_in_staggered_phases_and_adapts_to_costs():
    s = ModelScheduler(["instances", "semantic"], fixed={"instances": 2, "semantic": 2})
    plan = [s.models_for(n) for n in range(4)]
    assert plan == [{"instances"}, {"semantic"}, {"instances"}, {"semantic"}]
    # Automatic: a cheap model runs every frame, an expensive one as often as the budget allows.
    auto = ModelScheduler(["instances", "semantic"], target_fps=10, cores=1, cpu_share=1.0, replan_frames=2)
    for _ in range(3):
        auto.record("instances", "instances.infer", 5.0)
        auto.record("semantic", "semantic.infer", 150.0)
    auto._window.append((0.0, 0.0, {"instances": 0, "semantic": 0}))
    auto._window.append((0.0, 0.1, {"instances": 0, "semantic": 0}))  # one frame per 100 ms: on time
    auto._replan()
    assert auto.every["instances"] == 1 and auto.every["semantic"] == 2  # 5 + 150 / 2 <= 100 ms
    # Frames come every 200 ms while this process got only 0.5 of a core: the budget shrinks.
    auto._window.clear()
    auto._window.append((0.0, 0.0, {"instances": 0, "semantic": 0}))
    auto._window.append((0.1, 0.2, {"instances": 1, "semantic": 1}))
    auto._replan()
    assert auto.cores_obtained == 0.5
    assert auto.every["semantic"] >= 4  # 5 + 150 / s must fit 50 ms


def _fake_instances(frame):
    img = frame.image_bgr
    frame.results["instances"] = Instances(
        np.array([[1, 1, 9, 9]], np.float32),
        np.array([0.9], np.float32),
        np.array([0]),
        np.zeros((1, *img.shape[:2]), bool),
    )
    return frame


def _fake_semantic(frame):
    frame.results["semantic"] = SemanticMap(class_ids=np.zeros(frame.size_hw, np.uint8), class_names=("road",))
    return frame


def test_a_scheduled_run_marks_carried_results_with_their_age(tmp_path):
    scheduler = ModelScheduler(["instances", "semantic"], fixed={"instances": 2, "semantic": 3})
    branches = {
        "instances": [ScheduledStage(FunctionStage("instances.post", _fake_instances), "instances", scheduler)],
        "semantic": [ScheduledStage(FunctionStage("semantic.post", _fake_semantic), "semantic", scheduler)],
    }
    frames = []
    jsonl = tmp_path / "r.jsonl"
    g = Graph(
        open_source("synthetic://?width=64&height=48&frames=12"),
        [ScheduleStage(scheduler), Parallel(branches), CarryStage(flow_width=32)],
        [CallbackSink(frames.append), JsonlSink(str(jsonl))],
        GraphSettings(max_in_flight=3),
    )
    report = g.run(timeout=60)
    assert report.error is None
    assert [f.seq for f in frames] == list(range(12))
    for f in frames:
        run = f.results[SCHEDULE_KEY]
        fresh = f.results["freshness"]
        for key, every in (("instances", 2), ("semantic", 3)):
            assert key in f.results  # carried where the model did not run
            assert fresh[key]["fresh"] == (key in run)
            if fresh[key]["fresh"]:
                assert fresh[key]["age_frames"] == 0 and fresh[key]["from_frame"] == f.seq
            elif fresh[key]["from_frame"] is not None:
                assert 0 < fresh[key]["age_frames"] < every
                assert fresh[key]["from_frame"] == f.seq - fresh[key]["age_frames"]
                assert fresh[key]["age_ms"] == pytest.approx(fresh[key]["age_frames"] * 1000 / 30, abs=0.2)
    assert sum(f.results["freshness"]["instances"]["fresh"] for f in frames) == 6
    assert sum(f.results["freshness"]["semantic"]["fresh"] for f in frames) == 5  # frame 0 runs every model
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["results"]["freshness"] for r in records] == [f.results["freshness"] for f in frames]
    assert "_schedule" not in records[0]["results"]
    assert report.metrics["extra"]["carry"]["carried"] == {"instances": 6, "semantic": 7}


def test_unscheduled_frames_are_all_fresh():
    stage = CarryStage(keys=("semantic",), flow_width=32)
    f = _fake_semantic(Frame("s", 0, 0.0, 0, np.zeros((48, 64, 3), np.uint8)))
    out = stage.process(f)
    assert out.results["freshness"] == {"semantic": {"fresh": True, "from_frame": 0, "age_frames": 0, "age_ms": 0.0}}
