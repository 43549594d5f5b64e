"""Semantic models: DeepLabV3+ key layouts (VainF), torchvision files round-trip, loader errors."""

import pytest

torch = pytest.importorskip("torch")

from segstream.models.semantic.deeplabv3plus import DeepLabV3PlusConfig  # noqa: E402
from segstream.models.semantic.zoo import (  # noqa: E402
    LogitsOnly,
    build_model,
    load_model,
    output_stride_from_filename,
    save_checkpoint,
)
from segstream.stream.errors import ConfigError, ModelError  # noqa: E402


def _dilations(model):
    """Dilation of each ASPP atrous branch and the largest dilation in the backbone."""
    aspp = [model.classifier.aspp.convs[i][0].dilation[0] for i in (1, 2, 3)]
    backbone = max(m.dilation[0] for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    return aspp, backbone


# Key counts and parameter counts of VainF's builders at 19 classes (reference, section 2.1).
@pytest.mark.parametrize(
    "name, keys, params, first, low_level",
    [
        ("deeplabv3plus_mobilenet", 356, 5_225_203, "backbone.low_level_features.0.0.weight", 24),
        ("deeplabv3plus_resnet101", 674, 58_753_459, "backbone.conv1.weight", 256),
    ],
)
def test_deeplabv3plus_key_layout_matches_vainf(name, keys, params, first, low_level):
    model = build_model(name, num_classes=19)
    sd = model.state_dict()
    assert len(sd) == keys
    assert sum(p.numel() for p in model.parameters()) == params
    assert next(iter(sd)) == first
    assert sd["classifier.project.0.weight"].shape == (48, low_level, 1, 1)
    assert sd["classifier.aspp.convs.4.1.weight"].shape[0] == 256  # the image-pooling branch's conv
    assert sd["classifier.aspp.project.0.weight"].shape == (256, 5 * 256, 1, 1)
    assert sd["classifier.classifier.0.weight"].shape == (256, 304, 3, 3)
    assert sd["classifier.classifier.3.weight"].shape == (19, 256, 1, 1)
    assert not any(k.startswith("aux_classifier") for k in sd)


def test_deeplabv3plus_resnet50_and_mobilenet_block_split():
    r50 = build_model("deeplabv3plus_resnet50").state_dict()
    assert "backbone.layer4.2.bn3.weight" in r50 and "backbone.fc.weight" not in r50
    mb = build_model("deeplabv3plus_mobilenet").state_dict()
    # VainF keeps features[:4] and features[4:-1]; a slice of an nn.Sequential keeps the child
    # names, so its files number the high-level blocks 4..17 (tests/models/test_vainf_layouts.py)
    assert {int(k.split(".")[2]) for k in mb if k.startswith("backbone.low_level_features.")} == {0, 1, 2, 3}
    assert {int(k.split(".")[2]) for k in mb if k.startswith("backbone.high_level_features.")} == set(range(4, 18))
    assert mb["backbone.high_level_features.17.conv.2.weight"].shape[0] == 320


@pytest.mark.parametrize("name", ["deeplabv3plus_mobilenet", "deeplabv3plus_resnet50"])
@pytest.mark.parametrize("stride, rates", [(16, [6, 12, 18]), (8, [12, 24, 36])])
def test_output_stride_sets_aspp_rates_and_backbone_dilation(name, stride, rates):
    model = build_model(name, output_stride=stride).eval()
    aspp, backbone = _dilations(model)
    assert aspp == rates
    assert backbone == (2 if stride == 16 else 4)
    # the decoder runs at stride 4 and the output comes back at the input size, any size
    with torch.no_grad():
        assert model(torch.randn(1, 3, 67, 93))["out"].shape == (1, 19, 67, 93)


def test_config_rejects_unknown_settings():
    with pytest.raises(ConfigError, match="output_stride must be 8 or 16"):
        DeepLabV3PlusConfig(output_stride=32)
    with pytest.raises(ConfigError, match="backbone must be"):
        DeepLabV3PlusConfig(backbone="xception")


@pytest.mark.parametrize(
    "filename, stride",
    [
        ("best_deeplabv3plus_mobilenet_cityscapes_os16.pth", 16),
        ("best_deeplabv3plus_resnet101_voc_os8.pth", 8),
        ("my_weights.pth", None),
        ("model_os160.pth", None),
    ],
)
def test_output_stride_from_filename(filename, stride):
    assert output_stride_from_filename(filename) == stride


@pytest.mark.parametrize("stride", [16, 8])
def test_vainf_checkpoint_loads_at_the_stride_its_name_says(tmp_path, stride):
    src = build_model("deeplab_tiny", output_stride=stride).eval()
    # VainF's save_ckpt layout: a dict with model_state plus training state.
    path = tmp_path / f"best_deeplabv3plus_mobilenet_cityscapes_os{stride}.pth"
    # best_score is a numpy float in VainF's files: allowed, the load stays weights_only
    import numpy as np

    torch.save({"cur_itrs": 30000, "model_state": src.state_dict(), "best_score": np.float64(0.72)}, path)
    loaded = load_model("deeplab_tiny", str(path))
    assert loaded.output_stride == stride
    assert _dilations(loaded.model)[0] == _dilations(src)[0]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(loaded.model(x)["out"], src(x)["out"])


def test_vainf_checkpoint_without_stride_in_name_defaults_to_16(tmp_path):
    path = tmp_path / "cityscapes.pth"
    torch.save({"model_state": build_model("deeplab_tiny", output_stride=8).state_dict()}, path)
    assert load_model("deeplab_tiny", str(path)).output_stride == 16
    assert load_model("deeplab_tiny", str(path), output_stride=8).output_stride == 8


@pytest.mark.parametrize(
    "name, aux", [("deeplabv3_mobilenet_v3_large", True), ("lraspp_mobilenet_v3_large", False), ("fcn_resnet50", True)]
)
def test_torchvision_weight_file_round_trip(tmp_path, name, aux):
    from torchvision.models import segmentation

    # torchvision's released files are plain state dicts of the 21-class COCO/VOC model with aux.
    kwargs = {"aux_loss": True} if aux else {}
    torch.manual_seed(3)
    src = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=21, **kwargs).eval()
    path = tmp_path / f"{name}-0123abcd.pth"
    torch.save(src.state_dict(), path)
    loaded = load_model(name, str(path))
    assert loaded.num_classes == 21 and loaded.class_names[15] == "person"
    if aux:
        assert loaded.model.aux_classifier is not None
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(LogitsOnly(loaded.model)(x), src(x)["out"])
    # without the aux head: the file's aux keys are dropped, the main output is unchanged
    plain = load_model(name, str(path), aux=False)
    with torch.no_grad():
        assert torch.equal(LogitsOnly(plain.model)(x), src(x)["out"])


def test_fine_tuning_a_21_class_file_to_19_classes_keeps_the_backbone(tmp_path):
    from torchvision.models import segmentation

    src = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    path = tmp_path / "lraspp.pth"
    torch.save(src.state_dict(), path)
    with pytest.raises(ModelError, match="has 21 classes, 19 asked for"):
        load_model("lraspp_mobilenet_v3_large", str(path), num_classes=19)
    loaded = load_model("lraspp_mobilenet_v3_large", str(path), num_classes=19, strict_classes=False)
    assert loaded.num_classes == 19
    assert torch.equal(loaded.model.state_dict()["backbone.0.0.weight"], src.state_dict()["backbone.0.0.weight"])


def test_segstream_checkpoint_round_trip(tmp_path):
    loaded = load_model("deeplab_tiny", num_classes=5)
    path = save_checkpoint(str(tmp_path / "ck.pth"), loaded)
    back = load_model("deeplab_tiny", path)
    assert back.num_classes == 5 and back.output_stride == 16
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, back.model.state_dict()[k])
    with pytest.raises(ModelError, match="a segstream checkpoint of 'deeplab_tiny', not 'deeplabv3plus_mobilenet'"):
        load_model("deeplabv3plus_mobilenet", path)


def test_corrupt_and_wrong_files_name_the_expected_layout(tmp_path):
    missing = tmp_path / "none.pth"
    with pytest.raises(ModelError, match="no such checkpoint file"):
        load_model("deeplab_tiny", str(missing))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 64)
    with pytest.raises(ModelError, match="cannot read it as a torch checkpoint.*VainF DeepLabV3\\+ state dict"):
        load_model("deeplab_tiny", str(junk))
    truncated = tmp_path / "truncated.pth"
    torch.save({"model_state": build_model("deeplab_tiny").state_dict()}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(ModelError, match="cannot read it as a torch checkpoint"):
        load_model("deeplab_tiny", str(truncated))
    # a torchvision file given for a DeepLabV3+ model
    tv = tmp_path / "tv.pth"
    from torchvision.models import segmentation

    torch.save(segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(), tv)
    with pytest.raises(ModelError, match="no classifier.classifier.3.weight in it .*expected a VainF DeepLabV3\\+"):
        load_model("deeplabv3plus_mobilenet", str(tv))
    # the right head but another backbone width
    other = tmp_path / "other.pth"
    torch.save({"model_state": build_model("deeplab_tiny").state_dict()}, other)
    with pytest.raises(ModelError, match="does not fit deeplabv3plus_mobilenet: .*of other shape"):
        load_model("deeplabv3plus_mobilenet", str(other))
    # not a dict at all
    lst = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], lst)
    with pytest.raises(ModelError, match="holds a list, expected a"):
        load_model("deeplab_tiny", str(lst))


def test_torchvision_file_from_the_hub_cache(tmp_path, monkeypatch):
    from torchvision.models import segmentation

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="not in the torch hub cache; download lraspp_mobilenet_v3_large-d234d4ea.pth"):
        load_model("lraspp_mobilenet_v3_large", "torchvision")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    src = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
    torch.save(src.state_dict(), tmp_path / "hub" / "checkpoints" / "lraspp_mobilenet_v3_large-d234d4ea.pth")
    loaded = load_model("lraspp_mobilenet_v3_large", "torchvision")
    assert torch.equal(
        loaded.model.state_dict()["classifier.high_classifier.weight"],
        src.state_dict()["classifier.high_classifier.weight"],
    )
    with pytest.raises(ModelError, match="publishes no weights"):
        load_model("deeplab_tiny", "torchvision")


def test_weights_only_still_refuses_arbitrary_objects(tmp_path):
    import argparse

    path = tmp_path / "evil.pth"
    # a pickled class outside the allow-list (an argparse.Namespace here) is refused, not built
    torch.save({"model_state": build_model("deeplab_tiny").state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ModelError, match="cannot read it as a torch checkpoint"):
        load_model("deeplab_tiny", str(path))
