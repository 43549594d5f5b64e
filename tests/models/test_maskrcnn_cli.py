"""The Mask R-CNN commands through the real CLI: export, verify, predict (both backends), eval."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
mask_util = pytest.importorskip("pycocotools.mask")

from segstream.cli import main  # noqa: E402
from segstream.models.maskrcnn.commands import dataset_labels  # noqa: E402
from segstream.models.maskrcnn.zoo import coco_class_names, load_maskrcnn, save_maskrcnn  # noqa: E402
from segstream.stream.errors import ConfigError  # noqa: E402
from tests.models.yolact_helpers import SHAPE_CLASSES, write_shapes_dataset  # noqa: E402


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A random tiny Mask R-CNN named for the shapes dataset, as a checkpoint and (through the CLI) ONNX."""
    folder = tmp_path_factory.mktemp("maskrcnn_cli")
    ann, imgs = write_shapes_dataset(str(folder / "data"), 4, seed=3)
    loaded = load_maskrcnn(None, "maskrcnn_tiny", num_classes=len(SHAPE_CLASSES) + 1)
    loaded.class_names = SHAPE_CLASSES
    ckpt = save_maskrcnn(loaded, str(folder / "tiny.pth"))
    onnx_path = str(folder / "tiny.onnx")
    assert main(["export", "--model", "maskrcnn_tiny", "--weights", ckpt, "--out", onnx_path]) == 0
    images = [os.path.join(imgs, f) for f in sorted(os.listdir(imgs))[:2]]
    return ckpt, onnx_path, ann, imgs, images


def test_verify_passes(artifacts, capsys):
    ckpt, onnx_path, *_ = artifacts
    assert main(["verify", onnx_path, "--model", "maskrcnn_tiny", "--weights", ckpt, "--input-size", "300x500"]) == 0
    out = capsys.readouterr().out
    assert "frame 300x500 -> network input 128x213" in out and out.strip().endswith("OK")


def test_verify_without_weights_checks_the_seeded_random_export(tmp_path, capsys):
    path = str(tmp_path / "random.onnx")
    assert main(["export", "--model", "maskrcnn_tiny", "--num-classes", "2", "--out", path]) == 0
    assert main(["verify", path, "--model", "maskrcnn_tiny"]) == 0
    assert "OK" in capsys.readouterr().out


def test_predict_torch_and_onnxruntime_agree(artifacts, tmp_path):
    ckpt, onnx_path, _, _, images = artifacts
    outs = {}
    for backend, weights in (("torch", ckpt), ("onnxruntime", onnx_path)):
        path = tmp_path / f"{backend}.json"
        assert (
            main(
                [
                    "predict",
                    "--model",
                    "maskrcnn_tiny",
                    "--weights",
                    weights,
                    "--backend",
                    backend,
                    "--score-threshold",
                    "0.2",
                    "--top-k",
                    "5",
                    "--json",
                    str(path),
                    "--overlay",
                    str(tmp_path / backend),
                    images[0],
                ]
            )
            == 0
        )
        outs[backend] = json.loads(path.read_text())
    assert len(outs["torch"]) == 5 and len(os.listdir(tmp_path / "torch")) == 1
    a, b = outs["torch"], outs["onnxruntime"]
    assert [d["label_name"] for d in a] == [d["label_name"] for d in b]
    assert {d["label_name"] for d in a} <= set(SHAPE_CLASSES)
    assert [d["score"] for d in a] == pytest.approx([d["score"] for d in b], abs=1e-4)
    for da, db in zip(a, b):
        ma = mask_util.decode({"size": da["segmentation"]["size"], "counts": da["segmentation"]["counts"].encode()})
        mb = mask_util.decode({"size": db["segmentation"]["size"], "counts": db["segmentation"]["counts"].encode()})
        assert ma.shape == (120, 160) and (ma & mb).sum() >= 0.99 * max((ma | mb).sum(), 1)


def test_eval_reports_coco_figures(artifacts, tmp_path, capsys):
    _, onnx_path, ann, imgs, _ = artifacts
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "--model",
                "maskrcnn_tiny",
                "--weights",
                onnx_path,
                "--backend",
                "onnxruntime",
                "--annotations",
                ann,
                "--images",
                imgs,
                "--json",
                str(out),
            ]
        )
        == 0
    )
    figures = json.loads(out.read_text())
    assert figures["images"] == 4 and figures["detections"] > 0
    for kind in ("box", "mask"):
        assert set(figures[kind]) == {"AP", "AP50", "AP75", "per_class_AP50", "per_class_AP", "per_class_AP50_by_area"}
        assert 0 <= figures[kind]["AP50"] <= 1
    assert "mask: AP" in capsys.readouterr().out


def test_coco_labels_map_by_name():
    """torchvision's 90 names (with "N/A") against a COCO file's 80 categories."""
    names = coco_class_names()
    coco80 = tuple(n for n in names if n != "N/A")
    lut = dataset_labels(names, coco80, "instances_val2017.json")
    assert len(coco80) == 80 and lut[0] == 0 and lut[names.index("N/A")] == -1
    assert lut[names.index("toothbrush")] == 79
    with pytest.raises(ConfigError, match="categories \\['disc'"):
        dataset_labels(names, ("disc",), "shapes.json")


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            [
                "predict",
                "--model",
                "maskrcnn_resnet50_fpn",
                "--weights",
                "{onnx}",
                "--backend",
                "onnxruntime",
                "--json",
                "x.json",
                "{img}",
            ],
            "exported from 'maskrcnn_tiny'",
        ),
        (
            ["predict", "--model", "maskrcnn_tiny", "--weights", "{onnx}", "--json", "x.json", "{img}"],
            "run it with --backend onnxruntime",
        ),
        (
            ["predict", "--model", "maskrcnn_resnet50_fpn_v2", "--weights", "{ckpt}", "--json", "x.json", "{img}"],
            "a segstream checkpoint of 'maskrcnn_tiny', not 'maskrcnn_resnet50_fpn_v2'",
        ),
        (["export", "--model", "maskrcnn_tiny", "--input-size", "512x512", "--out", "x.onnx"], "drop --input-size"),
        (["export", "--model", "maskrcnn_tiny", "--format", "tensorrt", "--out", "x.onnx"], "ONNX only"),
        (["verify", "{onnx}", "--model", "maskrcnn_resnet50_fpn"], "exported from 'maskrcnn_tiny'"),
        (["train", "--model", "maskrcnn_tiny", "--out", "x.pth"], "not wired"),
    ],
)
def test_usage_errors_are_one_line(artifacts, tmp_path, capsys, argv, message):
    ckpt, onnx_path, _, _, images = artifacts
    argv = [a.format(ckpt=ckpt, onnx=onnx_path, img=images[0]) for a in argv]
    argv = [str(tmp_path / a) if a.endswith((".json", "x.onnx")) else a for a in argv]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and message in err and len(err.splitlines()) == 1, err
    assert not np.any([os.path.exists(tmp_path / "x.onnx")])
