"""YOLACT training that lasts: validation with the best checkpoint kept, exact --resume."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from segstream.cli import main  # noqa: E402
from tests.models.yolact_helpers import write_shapes_dataset  # noqa: E402


def _args(ann, imgs, out, *extra):
    return [
        "train",
        "--model",
        "yolact_tiny",
        "--annotations",
        ann,
        "--images",
        imgs,
        "--val-annotations",
        ann,
        "--val-images",
        imgs,
        "--eval-every",
        "2",
        "--iters",
        "5",
        "--batch-size",
        "2",
        "--input-size",
        "128",
        "--optimizer",
        "adam",
        "--lr",
        "0.001",
        "--out",
        out,
        *extra,
    ]


def test_resume_continues_exactly_and_the_best_is_kept(tmp_path):
    ann, imgs = write_shapes_dataset(str(tmp_path / "data"), 4)
    a, b = str(tmp_path / "a" / "m.pth"), str(tmp_path / "b" / "m.pth")
    assert main(_args(ann, imgs, a)) == 0
    assert main(_args(ann, imgs, b, "--stop-at", "3")) == 0
    assert main(_args(ann, imgs, b, "--resume", os.path.splitext(b)[0] + ".last.pth")) == 0
    sa = torch.load(os.path.splitext(a)[0] + ".last.pth", weights_only=True)
    sb = torch.load(os.path.splitext(b)[0] + ".last.pth", weights_only=True)
    for k, v in sa["state_dict"].items():
        assert torch.equal(v, sb["state_dict"][k]), k
    ha, hb = sa["segstream"]["train_state"]["history"], sb["segstream"]["train_state"]["history"]
    assert ha == hb and [h["iter"] for h in ha] == [2, 4, 5]
    best = max(ha, key=lambda h: h["mask_ap50"])
    assert torch.load(a, weights_only=True)["segstream"]["iterations"] == best["iter"]


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    ann, imgs = write_shapes_dataset(str(tmp_path / "data"), 2)
    out = str(tmp_path / "m.pth")
    assert main(_args(ann, imgs, out, "--stop-at", "1")) == 0
    assert main(_args(ann, imgs, out, "--resume", str(tmp_path / "m.last.pth"), "--lr", "0.002")) == 2
    assert "lr 0.001 in the file, 0.002 now" in capsys.readouterr().err
