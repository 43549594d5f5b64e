"""YOLACT network layouts against the official key lists, anchors, and checkpoint loading."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from segstream.models.yolact.checkpoint import load_yolact, save_yolact  # noqa: E402
from segstream.models.yolact.config import config_name_from_path, get_config, resolve_config  # noqa: E402
from segstream.models.yolact.model import Yolact  # noqa: E402
from segstream.stream.errors import ConfigError, ModelError  # noqa: E402
from tests.models.yolact_helpers import reference_dir  # noqa: E402

OFFICIAL = ["yolact_base", "yolact_resnet50", "yolact_darknet53", "yolact_im700"]


def read_key_list(name: str) -> dict[str, tuple]:
    # A copy lives beside the tests (tests/models/data) so a bare clone checks the layouts too.
    local = Path(__file__).resolve().parent / "data" / f"keys_{name}.txt"
    path = local if local.is_file() else reference_dir() / f"keys_{name}.txt"
    if not path.is_file():
        pytest.skip(f"reference key list {path} is absent (it lives in ../shared/reference)")
    keys = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split(" ", 1)
            inner = shape.strip().strip("()").replace(" ", "")
            keys[key] = tuple(int(v) for v in inner.split(",") if v)
    return keys


@pytest.mark.parametrize("name", OFFICIAL)
def test_state_dict_equals_the_official_layout(name):
    ref = read_key_list(name)
    have = {k: tuple(v.shape) for k, v in Yolact(get_config(name)).state_dict().items()}
    assert sorted(set(ref) - set(have)) == []
    assert sorted(set(have) - set(ref)) == []
    assert {k: s for k, s in have.items() if ref[k] != s} == {}


@pytest.mark.parametrize(
    "name, priors, proto",
    [
        ("yolact_resnet50", 19248, 138),
        ("yolact_darknet53", 19248, 138),
        ("yolact_mobilenetv3", 19248, 138),
        ("yolact_tiny", 1614, 40),
    ],
)
def test_forward_shapes_and_anchor_count(name, priors, proto):
    cfg = get_config(name)
    net = Yolact(cfg).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, cfg.max_size, cfg.max_size))
    assert out["priors"].shape == (priors, 4)
    assert out["loc"].shape == (1, priors, 4)
    assert out["conf"].shape == (1, priors, 81)
    assert out["mask"].shape == (1, priors, cfg.mask_dim)
    assert out["proto"].shape == (1, proto, proto, cfg.mask_dim)
    torch.testing.assert_close(out["conf"].sum(-1), torch.ones(1, priors))  # softmax in eval
    assert float(out["mask"].abs().max()) <= 1 and float(out["proto"].min()) >= 0  # tanh, ReLU


@pytest.mark.slow
def test_im700_has_30963_anchors():
    cfg = get_config("yolact_im700")
    net = Yolact(cfg).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 700, 700))
    assert out["priors"].shape == (30963, 4) and out["proto"].shape == (1, 176, 176, 32)


def test_semantic_head_only_in_training():
    cfg = get_config("yolact_tiny")
    net = Yolact(cfg).train()
    out = net(torch.zeros(2, 3, 160, 160))
    assert out["segm"].shape == (2, 80, 20, 20)
    assert "segm" not in net.eval()(torch.zeros(1, 3, 160, 160))


@pytest.mark.parametrize(
    "path, name",
    [
        ("/x/yolact_base_54_800000.pth", "yolact_base"),
        ("yolact_im700_54_800000.pth", "yolact_im700"),
        ("yolact_darknet53_54_800000.pth", "yolact_darknet53"),
        ("w/yolact_tiny.pth", "yolact_tiny"),
        ("weights.pth", None),
        ("yolact_plus_base_54_800000.pth", None),
    ],
)
def test_configuration_from_file_name(path, name):
    assert config_name_from_path(path) == name


def test_model_and_file_name_must_agree():
    with pytest.raises(ModelError, match="file name says configuration 'yolact_base'"):
        resolve_config("yolact_resnet50", "yolact_base_54_800000.pth")
    with pytest.raises(ConfigError, match="pass --model"):
        resolve_config(None, "weights.pth")


def test_official_layout_loads_with_legacy_keys_dropped(tmp_path):
    cfg = get_config("yolact_resnet50")
    torch.manual_seed(0)
    src = Yolact(cfg)
    state = src.state_dict()
    # Families the official loader drops: torchvision-style backbone keys, extra downsample layers.
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    state["fpn.downsample_layers.2.weight"] = torch.zeros(256, 256, 3, 3)
    state["fpn.downsample_layers.2.bias"] = torch.zeros(256)
    path = tmp_path / "yolact_resnet50_54_800000.pth"
    torch.save(state, path)
    net, loaded_cfg = load_yolact(str(path))
    assert loaded_cfg.name == "yolact_resnet50" and len(loaded_cfg.class_names) == 80
    for k, v in src.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k


def test_wrong_configuration_names_it_and_some_keys(tmp_path):
    path = tmp_path / "yolact_darknet53_54_800000.pth"
    torch.save(Yolact(get_config("yolact_tiny")).state_dict(), path)
    with pytest.raises(ModelError) as err:
        load_yolact(str(path))
    msg = str(err.value)
    assert "'yolact_darknet53'" in msg and "missing (e.g. backbone._preconv" in msg and "unexpected" in msg
    assert "\n" not in msg


def test_truncated_and_corrupt_files(tmp_path):
    good = tmp_path / "yolact_tiny.pth"
    save_yolact(Yolact(get_config("yolact_tiny")), str(good))
    data = good.read_bytes()
    cut = tmp_path / "cut" / "yolact_tiny.pth"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="damaged or truncated"):
        load_yolact(str(cut))
    junk = tmp_path / "junk" / "yolact_tiny.pth"
    junk.parent.mkdir()
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(ModelError, match="damaged or truncated"):
        load_yolact(str(junk))
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_yolact(str(tmp_path / "yolact_tiny_1_2.pth"))


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "yolact_tiny.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ModelError, match="cannot read it"):
        load_yolact(str(path))


def test_wrong_shapes_are_reported(tmp_path):
    state = Yolact(get_config("yolact_tiny")).state_dict()
    state["fpn.lat_layers.0.weight"] = torch.zeros(48, 7, 1, 1)
    path = tmp_path / "yolact_tiny.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"fpn.lat_layers.0.weight \(48, 7, 1, 1\) \(expected \(48, 64, 1, 1\)\)"):
        load_yolact(str(path))


def test_trained_checkpoint_round_trip_keeps_class_names(tmp_path):
    cfg = get_config("yolact_tiny").with_classes(("a", "b"))
    net = Yolact(cfg)
    path = save_yolact(net, str(tmp_path / "mine.pth"))
    back, back_cfg = load_yolact(path)  # configuration from the file's own record
    assert back_cfg.class_names == ("a", "b") and back_cfg.name == "yolact_tiny"
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_imagenet_backbone_files_map_to_the_official_layout(tmp_path):
    import torchvision

    from segstream.models.yolact.checkpoint import backbone_keys_from, load_backbone

    tv = torchvision.models.resnet50(weights=None).state_dict()
    mapped = backbone_keys_from(tv, "resnet50")
    own = {
        k: tuple(v.shape)
        for k, v in Yolact(get_config("yolact_resnet50")).state_dict().items()
        if k.startswith("backbone.")
    }
    assert {k: tuple(v.shape) for k, v in mapped.items()} == own  # layerN -> layers.N-1, fc dropped
    mnv3 = torchvision.models.mobilenet_v3_large(weights=None)
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(mnv3.state_dict(), path)
    net = Yolact(get_config("yolact_mobilenetv3"))
    assert load_backbone(net, str(path)) == len(mnv3.features.state_dict())
    assert torch.equal(net.backbone.features[3].block[0][0].weight, mnv3.features[3].block[0][0].weight)
    with pytest.raises(ModelError, match="not a resnet50 backbone"):
        load_backbone(Yolact(get_config("yolact_resnet50")), str(path))
