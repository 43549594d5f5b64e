"""The YOLACT commands through the real CLI: predict (JSON schema, RLE), eval, train, export, verify."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
mask_util = pytest.importorskip("pycocotools.mask")

from segstream.cli import main  # noqa: E402
from segstream.models.yolact.checkpoint import load_yolact, save_yolact  # noqa: E402
from tests.models.yolact_helpers import SHAPE_CLASSES, trained_tiny, write_shapes_dataset  # noqa: E402


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The trained tiny model as a checkpoint and as an ONNX file exported through the CLI."""
    net, cfg, _, ann, imgs = trained_tiny()
    folder = tmp_path_factory.mktemp("yolact_cli")
    ckpt = save_yolact(net, str(folder / "shapes.pth"))
    onnx_path = str(folder / "shapes.onnx")
    assert main(["export", "--model", "yolact_tiny", "--weights", ckpt, "--out", onnx_path]) == 0
    images = [os.path.join(imgs, f) for f in sorted(os.listdir(imgs))[:3]]
    return ckpt, onnx_path, ann, imgs, images


def test_predict_writes_coco_style_json_and_overlays(artifacts, tmp_path):
    ckpt, _, _, _, images = artifacts
    out = tmp_path / "det.json"
    code = main(
        [
            "predict",
            "--model",
            "yolact_tiny",
            "--weights",
            ckpt,
            "--score-threshold",
            "0.3",
            "--json",
            str(out),
            "--overlay",
            str(tmp_path / "ov"),
            *images,
        ]
    )
    assert code == 0
    dets = json.loads(out.read_text())
    assert len(dets) >= 3
    for d in dets:
        assert set(d) == {"image", "label", "label_name", "score", "bbox", "segmentation"}
        assert d["image"] in {os.path.basename(p) for p in images}
        assert d["label_name"] == SHAPE_CLASSES[d["label"]] and d["score"] > 0.3
        img = cv2.imread(images[[os.path.basename(p) for p in images].index(d["image"])])
        x, y, w, h = d["bbox"]
        assert 0 <= x and 0 <= y and x + w <= img.shape[1] and y + h <= img.shape[0]
        m = mask_util.decode({"size": d["segmentation"]["size"], "counts": d["segmentation"]["counts"].encode()})
        assert m.shape == img.shape[:2] and m.sum() > 0
        ys, xs = np.nonzero(m)
        assert xs.min() >= x - 8 and xs.max() <= x + w + 8  # mask inside its box (crop padding)
    assert sorted(os.listdir(tmp_path / "ov")) == sorted(
        os.path.splitext(os.path.basename(p))[0] + ".png" for p in images
    )


def test_predict_top_k_and_onnxruntime_agree_with_torch(artifacts, tmp_path):
    ckpt, onnx_path, _, _, images = artifacts
    outs = {}
    for backend, weights in (("torch", ckpt), ("onnxruntime", onnx_path)):
        path = tmp_path / f"{backend}.json"
        assert (
            main(
                [
                    "predict",
                    "--model",
                    "yolact_tiny",
                    "--weights",
                    weights,
                    "--backend",
                    backend,
                    "--top-k",
                    "2",
                    "--json",
                    str(path),
                    images[0],
                ]
            )
            == 0
        )
        outs[backend] = json.loads(path.read_text())
    assert len(outs["torch"]) == 2
    assert [d["label"] for d in outs["torch"]] == [d["label"] for d in outs["onnxruntime"]]
    assert [d["score"] for d in outs["torch"]] == pytest.approx([d["score"] for d in outs["onnxruntime"]], rel=1e-3)


def _gt_names(annotations: str) -> set[str]:
    doc = json.loads(open(annotations).read())
    used = {a["category_id"] for a in doc["annotations"]}
    return {c["name"] for c in doc["categories"] if c["id"] in used}


def test_eval_reports_box_and_mask_ap(artifacts, tmp_path, capsys):
    _, onnx_path, ann, imgs, _ = artifacts
    out = tmp_path / "not-yet" / "eval.json"  # the folder is created
    assert (
        main(
            [
                "eval",
                "--model",
                "yolact_tiny",
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
    for kind in ("box", "mask"):
        f = figures[kind]
        assert set(f) == {"AP", "AP50", "AP75", "per_class_AP50", "per_class_AP", "per_class_AP50_by_area"}
        # COCO's AP50 is the mean over the categories that have ground truth
        scored = [v for name, v in f["per_class_AP50"].items() if name in _gt_names(ann)]
        assert abs(np.mean(scored) - f["AP50"]) < 1e-3
    assert figures["mask"]["AP50"] > 0.5
    assert "mask: AP" in capsys.readouterr().out


def test_verify_passes_for_the_exported_artifact(artifacts, capsys):
    ckpt, onnx_path, _, _, _ = artifacts
    assert main(["verify", onnx_path, "--model", "yolact_tiny", "--weights", ckpt]) == 0
    assert "OK" in capsys.readouterr().out


def test_train_writes_a_checkpoint_the_loader_reads(tmp_path):
    ann, imgs = write_shapes_dataset(str(tmp_path / "data"), 3, seed=9)
    out = tmp_path / "run" / "tiny.pth"
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "3",
                "--batch-size",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    net, cfg = load_yolact(str(out))
    assert cfg.class_names == SHAPE_CLASSES and cfg.name == "yolact_tiny"
    # Fine-tuning from it (augmentation on) also runs and writes a new checkpoint.
    out2 = tmp_path / "run" / "tiny2.pth"
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--weights",
                str(out),
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "2",
                "--batch-size",
                "2",
                "--out",
                str(out2),
            ]
        )
        == 0
    )
    assert load_yolact(str(out2))[1].class_names == SHAPE_CLASSES


def test_train_with_tall_anchors_records_them_for_the_loader_and_the_export(tmp_path):
    """--aspect-ratios / --square-anchors off: the checkpoint carries the anchor shapes, the loader
    rebuilds them, and the exported priors (what the runtime decodes against) are tall, not square."""
    import onnx

    ann, imgs = write_shapes_dataset(str(tmp_path / "data"), 3, seed=9)
    square = tmp_path / "square.pth"
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "2",
                "--batch-size",
                "2",
                "--out",
                str(square),
            ]
        )
        == 0
    )
    assert load_yolact(str(square))[1].square_anchors is True
    tall = tmp_path / "tall.pth"
    # Fine-tuning a square-anchor checkpoint into tall anchors: same anchor count, so every tensor fits.
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--weights",
                str(square),
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "2",
                "--batch-size",
                "2",
                "--aspect-ratios",
                "1,0.5,0.25",
                "--square-anchors",
                "off",
                "--out",
                str(tall),
            ]
        )
        == 0
    )
    net, cfg = load_yolact(str(tall))
    assert cfg.aspect_ratios == (1.0, 0.5, 0.25) and cfg.square_anchors is False
    priors = net.priors_for([(2, 2)] * len(cfg.pred_scales), "cpu").numpy()
    w, h = priors[:3, 2], priors[:3, 3]  # the first P3 location, one prior per aspect ratio
    np.testing.assert_allclose(h / w, [1.0, 2.0, 4.0], rtol=1e-5)
    # Fine-tuning it further without the options keeps its anchors and input size.
    again = tmp_path / "again.pth"
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--weights",
                str(tall),
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "1",
                "--batch-size",
                "2",
                "--input-size",
                "128",
                "--out",
                str(again),
            ]
        )
        == 0
    )
    again_again = tmp_path / "again2.pth"
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--weights",
                str(again),
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "1",
                "--batch-size",
                "2",
                "--out",
                str(again_again),
            ]
        )
        == 0
    )
    kept = load_yolact(str(again_again))[1]
    assert (kept.max_size, kept.aspect_ratios, kept.square_anchors) == (128, (1.0, 0.5, 0.25), False)
    onnx_path = str(tmp_path / "tall.onnx")
    assert main(["export", "--model", "yolact_tiny", "--weights", str(tall), "--out", onnx_path]) == 0
    meta = json.loads({p.key: p.value for p in onnx.load(onnx_path).metadata_props}["segstream"])
    assert meta["extra"]["anchors"]["aspect_ratios"] == [1.0, 0.5, 0.25] and meta["extra"]["anchors"]["square"] is False


def test_periodic_checkpoints_keep_the_anchors_and_mask_settings(tmp_path):
    """A --checkpoint-every file is a complete checkpoint: it once lacked the anchor shapes, so it
    loaded with square anchors and scored far below the model it held."""
    from dataclasses import replace

    from segstream.models.yolact.config import get_config
    from segstream.models.yolact.data import CocoInstances
    from segstream.models.yolact.model import Yolact
    from segstream.models.yolact.train import train_yolact

    ann, imgs = write_shapes_dataset(str(tmp_path / "data"), 2, seed=4)
    cfg = replace(
        get_config("yolact_tiny").with_classes(SHAPE_CLASSES),
        max_size=128,
        aspect_ratios=(1.0, 0.5, 0.25),
        square_anchors=False,
        mask_targets="soft",
        mask_threshold=0.4,
    )
    path = str(tmp_path / "periodic.pth")
    train_yolact(
        Yolact(cfg),
        CocoInstances(ann, imgs),
        iters=1,
        batch_size=1,
        checkpoint_path=path,
        checkpoint_every=1,
        progress=False,
    )
    got = load_yolact(path)[1]
    assert (got.max_size, got.aspect_ratios, got.square_anchors, got.mask_targets, got.mask_threshold) == (
        128,
        (1.0, 0.5, 0.25),
        False,
        "soft",
        0.4,
    )


def test_proto_skip_starts_from_the_same_outputs_and_is_recorded_and_exported(artifacts, tmp_path):
    """--proto-skip on adds a zero-initialised conv: the fine-tuned network starts from exactly the
    checkpoint's outputs, the checkpoint records it, and the export runs it in ONNX Runtime as in torch."""
    import torch

    from segstream.models.yolact.commands import make_runner

    ckpt, _, ann, imgs, images = artifacts
    base, cfg = load_yolact(ckpt)
    from dataclasses import replace

    from segstream.models.yolact.model import Yolact

    skip = Yolact(replace(cfg, proto_skip_layer=1)).eval()
    skip.load_state_dict(base.state_dict(), strict=False)
    x = torch.randn(1, 3, cfg.max_size, cfg.max_size)
    with torch.no_grad():
        a, b = base(x), skip(x)
    torch.testing.assert_close(a["proto"], b["proto"], rtol=0, atol=0)
    out = tmp_path / "skip.pth"
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--weights",
                ckpt,
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "2",
                "--batch-size",
                "2",
                "--lr",
                "0.01",
                "--proto-skip",
                "on",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    net, got = load_yolact(str(out))
    assert got.proto_skip_layer == 1 and float(net.proto_skip.weight.detach().abs().sum()) > 0  # trained, loaded back
    onnx_path = str(tmp_path / "skip.onnx")
    assert main(["export", "--model", "yolact_tiny", "--weights", str(out), "--out", onnx_path]) == 0
    img = cv2.imread(images[0])
    ours = make_runner("yolact_tiny", onnx_path, "onnxruntime")(img)
    ref = make_runner("yolact_tiny", str(out), "torch")(img)
    assert len(ours) == len(ref) and np.allclose(ours.scores, ref.scores, atol=1e-4)
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_darknet53",
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "1",
                "--proto-skip",
                "on",
                "--out",
                str(tmp_path / "d.pth"),
            ]
        )
        == 2
    )


def test_mask_settings_are_recorded_inherited_exported_and_overridable(artifacts, tmp_path):
    """--mask-targets / --mask-threshold go into the checkpoint, carry over when fine-tuning, reach
    the exported metadata (what the runtime reads), and eval's --mask-threshold overrides them."""
    import onnx

    ckpt, _, ann, imgs, _ = artifacts
    tuned = tmp_path / "tuned.pth"
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--weights",
                ckpt,
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "1",
                "--batch-size",
                "2",
                "--mask-targets",
                "soft",
                "--mask-threshold",
                "0.4",
                "--out",
                str(tuned),
            ]
        )
        == 0
    )
    cfg = load_yolact(str(tuned))[1]
    assert (cfg.mask_targets, cfg.mask_threshold) == ("soft", 0.4)
    again = tmp_path / "again.pth"
    assert (
        main(
            [
                "train",
                "--model",
                "yolact_tiny",
                "--weights",
                str(tuned),
                "--annotations",
                ann,
                "--images",
                imgs,
                "--iters",
                "1",
                "--batch-size",
                "2",
                "--out",
                str(again),
            ]
        )
        == 0
    )
    cfg = load_yolact(str(again))[1]
    assert (cfg.mask_targets, cfg.mask_threshold) == ("soft", 0.4)
    onnx_path = str(tmp_path / "tuned.onnx")
    assert main(["export", "--model", "yolact_tiny", "--weights", str(tuned), "--out", onnx_path]) == 0
    meta = json.loads({p.key: p.value for p in onnx.load(onnx_path).metadata_props}["segstream"])
    assert meta["extra"]["nms"]["mask_threshold"] == 0.4
    from segstream.models.yolact.commands import make_runner

    assert make_runner("yolact_tiny", onnx_path, "onnxruntime").postprocess.mask_threshold == 0.4
    assert make_runner("yolact_tiny", str(tuned), "torch").postprocess.mask_threshold == 0.4
    assert make_runner("yolact_tiny", onnx_path, "onnxruntime", mask_threshold=0.7).postprocess.mask_threshold == 0.7
    figures = {}
    for t in ("0.2", "0.8"):
        out = tmp_path / f"eval{t}.json"
        assert (
            main(
                [
                    "eval",
                    "--model",
                    "yolact_tiny",
                    "--weights",
                    onnx_path,
                    "--backend",
                    "onnxruntime",
                    "--annotations",
                    ann,
                    "--images",
                    imgs,
                    "--mask-threshold",
                    t,
                    "--json",
                    str(out),
                ]
            )
            == 0
        )
        figures[t] = json.loads(out.read_text())
    assert figures["0.2"]["box"] == figures["0.8"]["box"]  # the threshold touches masks only
    assert figures["0.2"]["mask"]["AP"] != figures["0.8"]["mask"]["AP"]


def test_mask_threshold_sweep_matches_eval_at_each_threshold(artifacts):
    """bench/mask_threshold_sweep.py runs the network once and re-assembles the masks per
    threshold: each row equals a full evaluation at that threshold."""
    import importlib.util

    from segstream.models.coco_eval import evaluate_coco
    from segstream.models.yolact.commands import make_runner
    from segstream.models.yolact.data import CocoInstances

    _, onnx_path, ann, imgs, _ = artifacts
    path = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "mask_threshold_sweep.py")
    spec = importlib.util.spec_from_file_location("mask_threshold_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = CocoInstances(ann, imgs)
    rows = module.sweep(make_runner("yolact_tiny", onnx_path, "onnxruntime"), data, [0.3, 0.6])
    for row in rows:
        direct = evaluate_coco(
            make_runner("yolact_tiny", onnx_path, "onnxruntime", mask_threshold=row["mask_threshold"]), data
        )
        assert row["mask"] == direct["mask"] and row["box"] == direct["box"]
    assert rows[0]["mask"]["AP"] != rows[1]["mask"]["AP"]


def test_mask_threshold_sweep_writes_the_best_threshold_into_a_copy(artifacts, tmp_path):
    import subprocess
    import sys

    import torch

    ckpt, _, ann, imgs, _ = artifacts
    script = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "mask_threshold_sweep.py")
    out = tmp_path / "tuned.pth"
    run = subprocess.run(
        [
            sys.executable,
            script,
            "--weights",
            ckpt,
            "--backend",
            "torch",
            "--annotations",
            ann,
            "--images",
            imgs,
            "--thresholds",
            "0.3,0.5,0.7",
            "--json",
            str(tmp_path / "sweep.json"),
            "--write",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "sweep.json").read_text())
    best = max(rows, key=lambda r: r["mask"]["AP50"])["mask_threshold"]
    net, cfg = load_yolact(str(out))
    assert cfg.mask_threshold == best and f"mask threshold {best}" in run.stdout
    original = load_yolact(ckpt)[0].state_dict()
    assert all(torch.equal(v, original[k]) for k, v in net.state_dict().items())  # the weights are untouched
    bad = subprocess.run(
        [
            sys.executable,
            script,
            "--model",
            "deeplab_tiny",
            "--weights",
            ckpt,
            "--annotations",
            ann,
            "--images",
            imgs,
            "--write",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "--write needs a YOLACT .pth" in bad.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            [
                "train",
                "--model",
                "yolact_tiny",
                "--annotations",
                "{ann}",
                "--images",
                "{imgs}",
                "--aspect-ratios",
                "1,tall",
                "--out",
                "x.pth",
            ],
            "--aspect-ratios: expected comma-separated numbers",
        ),
        (
            [
                "train",
                "--model",
                "yolact_tiny",
                "--annotations",
                "{ann}",
                "--images",
                "{imgs}",
                "--aspect-ratios",
                "1,1",
                "--out",
                "x.pth",
            ],
            "expected distinct ratios",
        ),
        (
            [
                "train",
                "--model",
                "deeplab_tiny",
                "--images",
                "{imgs}",
                "--labels",
                "{imgs}",
                "--square-anchors",
                "off",
                "--out",
                "x.pth",
            ],
            "is for YOLACT models",
        ),
        (
            [
                "train",
                "--model",
                "deeplab_tiny",
                "--images",
                "{imgs}",
                "--labels",
                "{imgs}",
                "--mask-targets",
                "soft",
                "--mask-threshold",
                "0.4",
                "--out",
                "x.pth",
            ],
            "--mask-targets/--mask-threshold are for YOLACT models",
        ),
        (
            [
                "train",
                "--model",
                "yolact_tiny",
                "--annotations",
                "{ann}",
                "--images",
                "{imgs}",
                "--mask-threshold",
                "1.5",
                "--out",
                "x.pth",
            ],
            "--mask-threshold must be between 0 and 1",
        ),
        (
            [
                "eval",
                "--model",
                "yolact_tiny",
                "--weights",
                "{onnx}",
                "--backend",
                "onnxruntime",
                "--annotations",
                "{ann}",
                "--images",
                "{imgs}",
                "--mask-threshold",
                "0",
            ],
            "--mask-threshold must be between 0 and 1",
        ),
        (
            [
                "eval",
                "--model",
                "deeplab_tiny",
                "--weights",
                "{onnx}",
                "--backend",
                "onnxruntime",
                "--images",
                "{imgs}",
                "--labels",
                "{imgs}",
                "--mask-threshold",
                "0.4",
            ],
            "--mask-threshold is for instance models",
        ),
        (
            [
                "predict",
                "--model",
                "yolact_tiny",
                "--weights",
                "{ckpt}",
                "--backend",
                "onnxruntime",
                "--json",
                "x.json",
                "{img}",
            ],
            "needs an .onnx file",
        ),
        (
            ["predict", "--model", "yolact_tiny", "--weights", "{onnx}", "--json", "x.json", "{img}"],
            "run it with --backend onnxruntime",
        ),
        (
            [
                "predict",
                "--model",
                "yolact_resnet50",
                "--weights",
                "{onnx}",
                "--backend",
                "onnxruntime",
                "--json",
                "x.json",
                "{img}",
            ],
            "exported from 'yolact_tiny'",
        ),
        (
            ["predict", "--model", "yolact_tiny", "--weights", "{ckpt}", "--json", "x.json", "missing.png"],
            "cannot read it as an image",
        ),
        (["export", "--model", "yolact_tiny", "--dynamic", "--out", "x.onnx"], "drop --dynamic"),
    ],
)
def test_usage_errors_are_one_line(artifacts, tmp_path, capsys, argv, message):
    ckpt, onnx_path, ann, imgs, images = artifacts
    argv = [a.format(ckpt=ckpt, onnx=onnx_path, img=images[0], ann=ann, imgs=imgs) for a in argv]
    argv = [str(tmp_path / a) if a.endswith((".json", "x.onnx", "x.pth")) else a for a in argv]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and message in err and len(err.splitlines()) == 1
