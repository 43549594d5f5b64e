"""`segstream convert camvid-instances`: COCO instances from CamVid class-id labels.

A hand-made label checks the rule (8-connected components of one class, at least --min-area
pixels) on shapes that break easy assumptions; the real CamVid val split, where present, checks
that the JSON loads with pycocotools and with the YOLACT data loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from segstream.cli import main
from segstream.models.datasets.camvid_instances import convert_camvid_instances, label_instances
from segstream.models.yolact.data import CocoInstances
from segstream.stream.errors import ConfigError

CAMVID = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"
ROAD, CAR, PEDESTRIAN, BICYCLIST, VOID = 3, 8, 9, 10, 11
H, W = 40, 64


def _rect(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _scene() -> tuple[np.ndarray, list[tuple[str, np.ndarray]], np.ndarray]:
    """A (H, W) label, the instances it must give as (name, bool mask), and the 49-pixel car."""
    touching_cars = _rect(2, 8, 2, 10) | _rect(4, 10, 10, 18)  # side by side: one instance
    diagonal_cars = _rect(14, 20, 2, 8) | _rect(20, 26, 8, 14)  # corners (19, 7) and (20, 8) only
    car_49 = _rect(30, 37, 2, 9)  # 7x7: dropped at the default 50
    car_50 = _rect(30, 35, 12, 22)  # 5x10: kept
    ring_car = _rect(28, 40, 50, 64) & ~_rect(31, 37, 54, 60)  # hole of road, on the bottom and right border
    cyclist_l = _rect(2, 20, 24, 27) | _rect(17, 20, 27, 40)  # L-shape
    pedestrian = _rect(2, 12, 27, 33)  # touches the cyclist: another class, another instance
    thin_pedestrian = _rect(22, 32, 40, 45) | _rect(32, 40, 42, 43)  # one-pixel-wide leg down to the border
    label = np.full((H, W), ROAD, np.uint8)
    label[0, 40:] = VOID
    for cls, m in (
        (CAR, touching_cars),
        (CAR, diagonal_cars),
        (CAR, car_49),
        (CAR, car_50),
        (CAR, ring_car),
        (BICYCLIST, cyclist_l),
        (PEDESTRIAN, pedestrian),
        (PEDESTRIAN, thin_pedestrian),
    ):
        label[m] = cls
    expected = [
        ("car", touching_cars),
        ("car", diagonal_cars),
        ("car", car_50),
        ("car", ring_car),
        ("person", pedestrian),
        ("person", thin_pedestrian),
        ("cyclist", cyclist_l),
    ]
    return label, expected, car_49


def _dataset(root: Path, labels: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """Write images/NAME.png (grey frames of each label's size) and labels/NAME.png."""
    images, annots = root / "images", root / "labels"
    images.mkdir()
    annots.mkdir()
    for name, label in labels.items():
        cv2.imwrite(str(images / f"{name}.png"), np.full((*label.shape[:2], 3), 90, np.uint8))
        cv2.imwrite(str(annots / f"{name}.png"), label)
    return images, annots


def _bbox_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


@pytest.mark.parametrize("min_area, keeps_49", [(50, False), (49, True)])
def test_components_become_instances(tmp_path, min_area, keeps_49):
    label, expected, car_49 = _scene()
    if keeps_49:
        expected = [*expected, ("car", car_49)]
    images, labels = _dataset(tmp_path, {"a": label, "empty": np.full((H, W), ROAD, np.uint8)})
    coco = convert_camvid_instances(str(images), str(labels), min_area=min_area).coco

    assert coco["categories"] == [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}, {"id": 3, "name": "cyclist"}]
    assert coco["images"] == [
        {"id": 1, "file_name": "a.png", "width": W, "height": H},
        {"id": 2, "file_name": "empty.png", "width": W, "height": H},
    ]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    anns = coco["annotations"]
    assert len(anns) == len(expected)
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    found = []
    for a in anns:
        assert a["image_id"] == 1 and a["iscrowd"] == 0
        assert isinstance(a["segmentation"]["counts"], str)
        mask = mask_util.decode(a["segmentation"]).astype(bool)
        match = [name for name, m in expected if np.array_equal(m, mask)]
        assert match == [names[a["category_id"]]], f"annotation {a['id']} matches no expected instance exactly"
        assert a["area"] == int(mask.sum())
        assert a["bbox"] == _bbox_of(mask)
        found.append(match[0])
    assert sorted(found) == sorted(name for name, _ in expected)


def test_rule_is_per_class_8_connectivity():
    label, _, _ = _scene()
    by_class = {}
    for inst in label_instances(label):
        by_class.setdefault(inst.category_id, []).append(inst)
    assert {k: len(v) for k, v in by_class.items()} == {1: 4, 2: 2, 3: 1}
    diagonal = next(i for i in by_class[1] if i.bbox_xywh == (2, 14, 12, 12))
    assert diagonal.area == 72  # two 6x6 blocks meeting at one corner
    assert cv2.connectedComponents(diagonal.mask, connectivity=4)[0] - 1 == 2  # 4-connectivity would split it


def test_cli_writes_json_that_pycocotools_and_the_yolact_loader_read(tmp_path, capsys):
    label, expected, _ = _scene()
    images, labels = _dataset(tmp_path, {"f001": label})
    out = tmp_path / "out" / "coco.json"
    rc = main(["convert", "camvid-instances", "--images", str(images), "--labels", str(labels), "--out", str(out)])
    assert rc == 0
    assert "car 4, person 2, cyclist 1" in capsys.readouterr().out
    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == 7 and coco.imgs[1]["file_name"] == "f001.png"

    data = CocoInstances(str(out), str(images))
    assert data.class_names == ("car", "person", "cyclist")
    sample = data.load(data.image_ids[0])
    assert sample.image_bgr.shape == (H, W, 3) and sample.num_crowds == 0
    got = sorted((data.class_names[int(lab)], m.tobytes()) for lab, m in zip(sample.labels, sample.masks))
    assert got == sorted((name, m.astype(np.uint8).tobytes()) for name, m in expected)
    for box, m in zip(sample.boxes, sample.masks):
        x, y, w, h = _bbox_of(m)
        assert box.tolist() == [x, y, x + w, y + h]


def _missing_images(root: Path) -> list[str]:
    _, labels = _dataset(root, {"a": _scene()[0]})
    return ["--images", str(root / "nope"), "--labels", str(labels)]


def _missing_labels(root: Path) -> list[str]:
    images, _ = _dataset(root, {"a": _scene()[0]})
    return ["--images", str(images), "--labels", str(root / "nope")]


def _image_without_label(root: Path) -> list[str]:
    images, labels = _dataset(root, {"a": _scene()[0], "b": _scene()[0]})
    os.remove(labels / "b.png")
    return ["--images", str(images), "--labels", str(labels)]


def _bad_label(label: np.ndarray):
    def make(root: Path) -> list[str]:
        images, labels = _dataset(root, {"a": _scene()[0]})
        cv2.imwrite(str(labels / "a.png"), label)
        return ["--images", str(images), "--labels", str(labels)]

    return make


def _min_area_zero(root: Path) -> list[str]:
    images, labels = _dataset(root, {"a": _scene()[0]})
    return ["--images", str(images), "--labels", str(labels), "--min-area", "0"]


@pytest.mark.parametrize(
    "make_args, says",
    [
        (_missing_images, "image folder"),
        (_missing_labels, "label folder"),
        (_image_without_label, "image b.png has no label"),
        (_bad_label(np.full((H, W, 3), CAR, np.uint8)), "found 3 channel(s) of uint8"),
        (_bad_label(np.full((H, W), CAR, np.uint16)), "found 1 channel(s) of uint16"),
        (_bad_label(np.full((H, W), 255, np.uint8)), "class ids 0..11, found 255"),
        (_bad_label(np.full((H + 1, W), CAR, np.uint8)), "labels must match their images"),
        (_min_area_zero, "--min-area"),
    ],
    ids=[
        "no-images",
        "no-labels",
        "image-without-label",
        "colour-label",
        "16-bit-label",
        "not-camvid-ids",
        "size-mismatch",
        "min-area-0",
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys, make_args, says):
    out = tmp_path / "coco.json"
    rc = main(["convert", "camvid-instances", *make_args(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("segstream: error: ") and err.count("\n") == 1 and says in err, err
    assert not out.exists()


def test_library_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no images"):
        convert_camvid_instances(str(tmp_path), str(tmp_path))


@pytest.mark.skipif(
    not (CAMVID / "val").is_dir() or not (CAMVID / "valannot").is_dir(),
    reason=f"real CamVid data is absent (expected {CAMVID}/val and valannot, in ../shared/data)",
)
def test_real_camvid_val(tmp_path):
    result = convert_camvid_instances(str(CAMVID / "val"), str(CAMVID / "valannot"))
    assert list(result.counts) == ["car", "person", "cyclist"] and all(n > 0 for n in result.counts.values())
    out = tmp_path / "camvid_val.json"
    result.write_json(str(out))
    coco = COCO(str(out))
    assert len(coco.imgs) == len(os.listdir(CAMVID / "val"))
    assert all(im["width"] == 480 and im["height"] == 360 and "/" not in im["file_name"] for im in coco.imgs.values())
    assert len(coco.getAnnIds()) == sum(result.counts.values())

    data = CocoInstances(str(out), str(CAMVID / "val"))
    image_id = data.image_ids[0]
    sample = data.load(image_id)
    label = cv2.imread(str(CAMVID / "valannot" / sample.file_name), cv2.IMREAD_UNCHANGED)
    assert len(sample.masks) == len(coco.getAnnIds(imgIds=image_id)) > 0
    camvid_class = {0: CAR, 1: PEDESTRIAN, 2: BICYCLIST}
    for lab, m in zip(sample.labels, sample.masks):
        assert m.sum() >= 50 and (label[m.astype(bool)] == camvid_class[int(lab)]).all()
    json.loads(out.read_text())  # plain JSON: counts are str, numbers are Python numbers
