import json

import numpy as np

from segstream.pipelines.tasks.overlay import OverlayStage, track_colour_bgr
from segstream.pipelines.tasks.results import Instances, SemanticMap
from segstream.stream.frame import Frame
from segstream.stream.sinks.files import frame_record


def _frame():
    img = np.full((60, 80, 3), 100, np.uint8)
    img.flags.writeable = False
    f = Frame("cam", 4, 0.1, 0, img)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 35:55, 40:70] = True
    f.results["instances"] = Instances(
        np.array([[10, 10, 30, 30], [40, 35, 70, 55]], np.float32),
        np.array([0.9, 0.6], np.float32),
        np.array([0, 1]),
        masks,
        np.array([5, 9]),
        ("person", "car"),
    )
    ids = np.zeros((60, 80), np.uint8)
    ids[40:, :] = 0
    ids[:40, :] = 10
    drivable = np.zeros((60, 80), bool)
    drivable[40:, :] = True
    f.results["semantic"] = SemanticMap(ids, tuple(f"c{i}" for i in range(19)), drivable_mask=drivable)
    return f


def test_overlay_draws_on_a_copy_in_track_colours():
    f = _frame()
    from segstream.pipelines.tasks.overlay import OverlayStyle

    out = OverlayStage(OverlayStyle(hud=False)).process(f).overlay_bgr
    assert out is not f.image_bgr and np.all(f.image_bgr == 100)  # the frame itself is untouched
    # Inside each mask (away from contour and label) the colour moves towards the track colour.
    for (y, x), tid in (((24, 22), 5), ((50, 60), 9)):
        colour = np.array(track_colour_bgr(tid), float)
        before = np.abs(100 - colour).sum()
        after = np.abs(out[y, x].astype(float) - colour).sum()
        assert after < before * 0.7
    # The drivable area (rows 40+) outside instances is tinted green.
    assert out[58, 5, 1] > out[58, 5, 2]
    hud = OverlayStage().process(_frame()).overlay_bgr
    assert np.any(hud[5:30, 10:200] == 255)  # the heads-up line is drawn in white


def test_results_serialise_to_json_with_rle_and_drivable_polygons():
    rec = frame_record(_frame())
    text = json.dumps(rec)
    doc = json.loads(text)
    inst = doc["results"]["instances"]
    assert [i["track_id"] for i in inst] == [5, 9]
    assert inst[1]["label_name"] == "car" and inst[1]["box_xyxy"] == [40.0, 35.0, 70.0, 55.0]
    assert inst[0]["mask_rle"]["size"] == [60, 80]
    sem = doc["results"]["semantic"]
    assert sem["drivable_share"] == round(20 / 60, 5)
    assert len(sem["drivable_polygons"]) == 1
    assert sem["class_shares"] == {"c0": round(20 / 60, 5), "c10": round(40 / 60, 5)}


def test_mask_format_polygon_and_none():
    f = _frame()
    inst = f.results["instances"]
    inst.mask_format = "polygon"
    rec = frame_record(f)["results"]["instances"]
    assert "mask_polygons" in rec[0] and "mask_rle" not in rec[0]
    inst.mask_format = "none"
    rec = frame_record(f)["results"]["instances"]
    assert "mask_polygons" not in rec[0] and "mask_rle" not in rec[0]


def test_blend_is_exact_inside_the_mask_and_leaves_the_rest():
    from segstream.pipelines.tasks.overlay import _blend_region

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    mask = np.zeros((90, 160), bool)
    mask[20:70, 30:50] = True
    mask[40:45, 100:140] = True  # two blobs: the blended box spans both, only mask pixels change
    out = img.copy()
    _blend_region(out, mask, (10, 200, 250), 0.4)
    want = np.clip(np.rint(img.astype(float) * 0.6 + np.array([10, 200, 250]) * 0.4), 0, 255)
    assert np.abs(out[mask].astype(int) - want[mask]).max() <= 1
    assert np.array_equal(out[~mask], img[~mask])
    _blend_region(out, np.zeros((90, 160), bool), (0, 0, 0), 0.5)  # empty mask: nothing to do
