"""U-Net through the semantic family: binary masks (0/255 PNGs, ``--layout binary``), training
that must reach Dice > 0.9 on generated shapes, and ``eval``'s Dice figures."""

import json
import os

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.models.semantic.data import find_samples, label_lut, read_label  # noqa: E402
from segstream.models.semantic.metrics import ConfusionMatrix  # noqa: E402
from segstream.models.semantic.train import TrainConfig, train  # noqa: E402
from segstream.models.semantic.zoo import load_model  # noqa: E402
from segstream.stream.errors import ConfigError  # noqa: E402


def write_shapes(root: str, n: int, seed: int, size_hw=(64, 64)) -> tuple[str, str]:
    """``root/images/k.png`` (a brighter disc or rectangle on noise) and ``root/labels/k.png``
    (its 0/255 mask); returns both folders."""
    rng = np.random.default_rng(seed)
    images, labels = os.path.join(root, "images"), os.path.join(root, "labels")
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    h, w = size_hw
    for k in range(n):
        mask = np.zeros((h, w), np.uint8)
        if k % 2:
            cv2.circle(
                mask, (int(rng.integers(16, w - 16)), int(rng.integers(16, h - 16))), int(rng.integers(6, 15)), 255, -1
            )
        else:
            x0, y0 = int(rng.integers(2, w // 2)), int(rng.integers(2, h // 2))
            cv2.rectangle(
                mask, (x0, y0), (x0 + int(rng.integers(8, w // 2)), y0 + int(rng.integers(8, h // 2))), 255, -1
            )
        img = rng.normal(90, 25, (h, w, 3))
        img[mask > 0] += 70
        cv2.imwrite(os.path.join(images, f"{k}.png"), np.clip(img, 0, 255).astype(np.uint8))
        cv2.imwrite(os.path.join(labels, f"{k}.png"), mask)
    return images, labels


def test_binary_layout_reads_0_255_and_0_1_masks(tmp_path):
    images, labels = write_shapes(str(tmp_path), 1, seed=0)
    (sample,) = find_samples(images, labels, "binary", 2)
    mask = cv2.imread(os.path.join(labels, "0.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(read_label(sample), (mask == 255).astype(np.uint8))
    assert label_lut("binary", 2)[[0, 1, 255]].tolist() == [0, 1, 1]
    with pytest.raises(ConfigError, match="layout 'binary' needs a 2-class model"):
        label_lut("binary", 19)


def test_unet_specs_have_two_binary_classes_and_pad_to_their_depth():
    tiny = load_model("unet_tiny_binary")
    assert tiny.num_classes == 2 and tiny.class_names == ("background", "foreground")
    assert tiny.spec.size_policy.pad_multiple == 2**3
    assert load_model("unet_tiny").num_classes == 19
    with torch.no_grad():
        assert tiny.model(torch.zeros(1, 3, 40, 48))["out"].shape == (1, 2, 40, 48)


def test_dice_on_a_hand_made_pair():
    target = np.array([[1, 1, 1, 0], [0, 0, 255, 1]], np.uint8)
    pred = np.array([[1, 1, 0, 0], [1, 0, 1, 1]], np.uint8)
    cm = ConfusionMatrix(2)
    cm.update(pred, target)
    s = cm.summary(("background", "foreground"))
    # foreground: TP 3, FP 1, FN 1 -> 6 / 8; background: TP 2, FP 1, FN 1 -> 4 / 6
    assert s["per_class_dice"] == {"background": pytest.approx(4 / 6), "foreground": pytest.approx(6 / 8)}
    assert s["mean_dice"] == pytest.approx((4 / 6 + 6 / 8) / 2)
    assert s["per_class_iou"] == {"background": pytest.approx(2 / 4), "foreground": pytest.approx(3 / 5)}


def test_tiny_unet_learns_binary_shapes_to_dice_above_0_9(tmp_path, capsys):
    images, labels = write_shapes(str(tmp_path / "train"), 32, seed=1)
    ckpt = str(tmp_path / "unet_tiny_binary.pth")
    report = train(
        TrainConfig(
            model="unet_tiny_binary",
            images=images,
            labels=labels,
            out=ckpt,
            layout="binary",
            input_size_hw=(64, 64),
            iters=40,
            batch_size=8,
            lr=0.05,
            progress=False,
            threads=2,
        )
    )
    assert report.iters == 40

    from segstream.models.options import EvalOptions
    from segstream.models.semantic.commands import evaluate

    val_images, val_labels = write_shapes(str(tmp_path / "val"), 8, seed=99, size_hw=(61, 75))
    out = str(tmp_path / "eval.json")
    assert (
        evaluate(
            EvalOptions(
                model="unet_tiny_binary",
                weights=ckpt,
                backend="torch",
                images=val_images,
                labels=val_labels,
                layout="binary",
                json_out=out,
            )
        )
        == 0
    )
    doc = json.load(open(out))
    assert doc["per_class_dice"]["foreground"] > 0.9, doc
    assert doc["mean_dice"] == pytest.approx(np.mean(list(doc["per_class_dice"].values())))
    assert "mean Dice" in capsys.readouterr().out
