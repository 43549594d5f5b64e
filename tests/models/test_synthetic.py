"""Synthetic road scenes: determinism, exact ground truth, stable ids, writers that read back."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from segstream.models.synthetic import (
    CITYSCAPES_CLASSES,
    COCO_CATEGORIES,
    IGNORE_ID,
    SceneConfig,
    SceneSequence,
    colorize,
    generate_scene,
)
from segstream.models.synthetic.commands import GenerateOptions, generate
from segstream.models.synthetic.scene import SceneObject

SMALL = SceneConfig(width=320, height=192, fps=10.0, min_visible_pixels=20)
GEN = SceneConfig(width=320, height=192, fps=8.0)  # what generate() builds from _args
TRAIN_IDS = {"car": 13, "person": 11}


def _clip(seed: int, frames: int, config: SceneConfig = SMALL):
    seq = SceneSequence(seed, config)
    return [seq.next_sample() for _ in range(frames)]


@pytest.mark.parametrize("seed", [0, 7, (3, 1)])
def test_same_seed_same_scene(seed):
    a, b = generate_scene(seed, SMALL), generate_scene(seed, SMALL)
    np.testing.assert_array_equal(a.image_bgr, b.image_bgr)
    np.testing.assert_array_equal(a.class_map, b.class_map)
    assert [(o.object_id, o.label, o.area) for o in a.instances] == [
        (o.object_id, o.label, o.area) for o in b.instances
    ]
    for oa, ob in zip(a.instances, b.instances):
        np.testing.assert_array_equal(oa.mask, ob.mask)


def test_different_seeds_differ():
    a, b = generate_scene(1, SMALL), generate_scene(2, SMALL)
    assert not np.array_equal(a.image_bgr, b.image_bgr)


@pytest.mark.parametrize("seed", range(6))
def test_ground_truth_is_exact(seed):
    s = generate_scene(seed, SMALL)
    h, w = SMALL.height, SMALL.width
    assert s.image_bgr.shape == (h, w, 3) and s.image_bgr.dtype == np.uint8
    assert s.class_map.shape == (h, w) and s.class_map.dtype == np.uint8
    values = set(np.unique(s.class_map).tolist())
    assert values <= set(range(len(CITYSCAPES_CLASSES))) | {IGNORE_ID}
    assert {0, 1, 10} <= values  # road, sidewalk and sky are always there
    seen = np.zeros((h, w), np.int32)
    for obj in s.instances:
        assert isinstance(obj, SceneObject)
        assert obj.mask.shape == (h, w) and obj.mask.dtype == bool
        assert obj.area == int(obj.mask.sum()) >= SMALL.min_visible_pixels
        ys, xs = np.nonzero(obj.mask)
        np.testing.assert_array_equal(obj.box_xyxy, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        seen += obj.mask
    assert seen.max(initial=0) <= 1, "instance masks overlap"
    for label, train_id in TRAIN_IDS.items():
        union = np.zeros((h, w), bool)
        for obj in s.instances:
            if obj.label == label:
                union |= obj.mask
        np.testing.assert_array_equal(
            s.class_map == train_id, union, err_msg=f"{label} pixels != union of {label} masks"
        )


def test_scenes_have_cars_and_people():
    labels = [o.label for seed in range(8) for o in generate_scene(seed, SMALL).instances]
    assert labels.count("car") >= 8 and labels.count("person") >= 4


def test_small_objects_are_ignored_in_both_truths():
    config = SceneConfig(width=320, height=192, min_visible_pixels=400)
    samples = [generate_scene(seed, config) for seed in range(4)]
    assert any(s.ignored_ids for s in samples)
    for s in samples:
        assert all(o.area >= 400 for o in s.instances)
        assert not set(s.ignored_ids) & {o.object_id for o in s.instances}
        assert (s.class_map == IGNORE_ID).any() == bool(s.ignored_ids)


def test_clip_ids_are_stable_and_objects_move():
    frames = _clip(seed=3, frames=40)
    labels, centres = {}, {}
    for f in frames:
        ids = [o.object_id for o in f.instances]
        assert len(ids) == len(set(ids))
        for o in f.instances:
            assert labels.setdefault(o.object_id, o.label) == o.label  # an id never changes class
            centres.setdefault(o.object_id, []).append(
                (f.index, o.mask.nonzero()[1].mean(), o.mask.nonzero()[0].mean())
            )
    # the same object stays under the same id from frame to frame: its centre moves smoothly
    jumps = [np.hypot(b[1] - a[1], b[2] - a[2]) for c in centres.values() for a, b in zip(c, c[1:]) if b[0] == a[0] + 1]
    assert jumps and np.median(jumps) < 6
    assert any(c[-1][0] - c[0][0] >= 20 for c in centres.values()), "no object followed for 20 frames"
    first, last = {o.object_id for o in frames[0].instances}, {o.object_id for o in frames[-1].instances}
    assert first != last  # objects enter and leave
    assert not np.array_equal(frames[0].image_bgr, frames[1].image_bgr)


@pytest.mark.parametrize("seed", [4, 21, 30])
def test_nobody_walks_into_the_camera(seed):
    # crossing pedestrians wait at the kerb while the camera car is near, and it brakes for them;
    # people on the sidewalk may pass close by, but nobody fills a tenth of the frame
    for frame in _clip(seed, 90):
        for obj in frame.instances:
            if obj.label == "person":
                assert obj.area < 0.1 * SMALL.width * SMALL.height, (frame.index, obj.object_id, obj.depth_m)


def test_clip_is_deterministic():
    a, b = _clip(11, 8), _clip(11, 8)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.image_bgr, fb.image_bgr)
        assert [o.object_id for o in fa.instances] == [o.object_id for o in fb.instances]


def test_colorize_uses_the_cityscapes_palette():
    cmap = np.array([[0, 13, 255]], np.uint8)
    np.testing.assert_array_equal(colorize(cmap)[0], [[128, 64, 128], [142, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="uint8 class map"):
        colorize(cmap.astype(np.int32))


def test_bad_config_says_what_was_wrong():
    with pytest.raises(ValueError, match="width and height"):
        SceneConfig(width=10, height=720)
    with pytest.raises(ValueError, match="fps"):
        SceneConfig(fps=0)


def _args(out, kind, count, seed=5):
    return GenerateOptions(
        out=str(out), kind=kind, count=count, width=SMALL.width, height=SMALL.height, seed=seed, fps=8.0
    )


def _check_coco(json_path, samples):
    coco = COCO(str(json_path))
    assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == [c["id"] for c in COCO_CATEGORIES]
    assert len(coco.getImgIds()) == len(samples)
    for image_id, sample in zip(sorted(coco.getImgIds()), samples):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert [a["track_id"] for a in anns] == [o.object_id for o in sample.instances]
        for ann, obj in zip(anns, sample.instances):
            assert ann["iscrowd"] == 0 and ann["category_id"] == {"person": 1, "car": 2}[obj.label]
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), obj.mask)
            np.testing.assert_array_equal(mask_util.decode(ann["segmentation"]).astype(bool), obj.mask)
            assert ann["area"] == obj.area
            x0, y0, x1, y1 = obj.box_xyxy
            assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]


def test_generate_images_writes_readable_ground_truth(tmp_path):
    result = generate(_args(tmp_path, "images", 3))
    samples = [generate_scene((5, i), GEN) for i in range(3)]
    assert result.main_file == tmp_path / "instances.json" and result.count == 3
    _check_coco(result.main_file, samples)
    for i, s in enumerate(samples):
        label = cv2.imread(str(tmp_path / "labels" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(label, s.class_map)
        image = cv2.imread(str(tmp_path / "images" / f"{i:06d}.jpg"))
        assert image.shape == s.image_bgr.shape
        assert np.abs(image.astype(int) - s.image_bgr).mean() < 4  # JPEG q95


def test_generate_video_reads_back(tmp_path):
    result = generate(_args(tmp_path, "video", 12, seed=9))
    samples = _clip(9, 12, GEN)
    cap = cv2.VideoCapture(str(result.main_file))
    read = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        read.append(frame)
    cap.release()
    assert len(read) == 12 and read[0].shape == (SMALL.height, SMALL.width, 3)
    assert np.abs(read[5].astype(int) - samples[5].image_bgr).mean() < 12  # lossy mp4v
    _check_coco(tmp_path / "instances.json", samples)
    tracks = json.loads((tmp_path / "tracks.json").read_text())
    assert [[o["track_id"] for o in f["objects"]] for f in tracks["frames"]] == [
        [o.object_id for o in s.instances] for s in samples
    ]
    for i in range(12):
        label = cv2.imread(str(tmp_path / "labels" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(label, samples[i].class_map)


@pytest.mark.parametrize("field,value,message", [("kind", "gif", "kind"), ("count", 0, "count")])
def test_generate_rejects_bad_arguments(tmp_path, field, value, message):
    args = dataclasses.replace(_args(tmp_path, "images", 2), **{field: value})
    with pytest.raises(ValueError, match=message):
        generate(args)
