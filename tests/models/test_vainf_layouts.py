"""VainF/DeepLabV3Plus-Pytorch checkpoints: key layouts, loading, wrong files, export parity.

The expected layouts below were derived by reading VainF's own code (network/modeling.py,
network/_deeplab.py, network/backbone/mobilenetv2.py, network/backbone/resnet.py,
network/utils.py), not from a note about it:

- ``_segm_mobilenet`` keeps ``features[:4]`` as ``low_level_features`` and ``features[4:-1]`` as
  ``high_level_features``. Slicing an nn.Sequential keeps the children's names, so the keys are
  ``backbone.low_level_features.{0..3}.*`` and ``backbone.high_level_features.{4..17}.*``;
  ``features[18]`` (the 1x1 conv to 1280 channels) is dropped. ``IntermediateLayerGetter`` keeps
  both halves for DeepLabV3 too (the loop stops after ``high_level_features``).
- ``_segm_resnet``: torchvision's ResNet children up to ``layer4`` (``conv1``, ``bn1``,
  ``layer1``..``layer4``), dilated with replace_stride_with_dilation [F, F, T] at OS16 and
  [F, T, T] at OS8; ASPP rates (6, 12, 18) at OS16, (12, 24, 36) at OS8.
- ``DeepLabHeadV3Plus``: ``classifier.project``, ``classifier.aspp``, ``classifier.classifier.{0,1,3}``.
- ``DeepLabHead`` (DeepLabV3): ``classifier.classifier = Sequential(ASPP, 3x3 conv, BN, ReLU,
  1x1 conv)``: ``classifier.classifier.0.*`` (ASPP), ``.1``, ``.2``, ``.4``.
- ``convert_to_separable_conv(model.classifier)`` (``--separable_conv``) swaps each head conv with
  a kernel above 1 for ``AtrousSeparableConvolution``, whose ``body`` is (depthwise, pointwise):
  ``<conv>.body.0.weight`` (C_in, 1, 3, 3) and ``<conv>.body.1.weight`` (C_out, C_in, 1, 1), no bias.
- ``save_ckpt`` in main.py writes {cur_itrs, model_state, optimizer_state, scheduler_state, best_score}.
"""

import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.models.semantic.zoo import (  # noqa: E402
    LogitsOnly,
    build_model,
    guess_vainf_model,
    load_model,
    spec_for_state,
    spec_of,
)
from segstream.stream.errors import ConfigError, ModelError  # noqa: E402

# Keys per prefix, counted from VainF's modules: a conv without bias is 1 key, a BatchNorm 5
# (weight, bias, running_mean, running_var, num_batches_tracked).
#   MobileNetV2: features[0] ConvBNReLU = 6; features[1] (t=1: dw ConvBNReLU, 1x1, BN) = 12;
#   each t=6 block (1x1 ConvBNReLU, dw ConvBNReLU, 1x1, BN) = 18.
#   low_level_features = 6 + 12 + 18 + 18 = 54; high_level_features = 14 blocks (4..17) * 18 = 252.
#   ResNet Bottleneck (3 convs, 3 BN) = 18, +6 for the first block's downsample (conv, BN).
#   DeepLabHeadV3Plus: project 6; ASPP convs 5 * 6 = 30, ASPP project 6; classifier 3x3 + BN + 1x1 (w, b) = 8.
#   DeepLabHead: classifier.0 = ASPP (30 + 6), .1 conv 1, .2 BN 5, .4 conv w, b 2.
BACKBONE_COUNTS = {
    "mobilenet": {"backbone.low_level_features.": 54, "backbone.high_level_features.": 252},
    "resnet50": {
        "backbone.conv1.": 1,
        "backbone.bn1.": 5,
        "backbone.layer1.": 3 * 18 + 6,
        "backbone.layer2.": 4 * 18 + 6,
        "backbone.layer3.": 6 * 18 + 6,
        "backbone.layer4.": 3 * 18 + 6,
    },
    "resnet101": {
        "backbone.conv1.": 1,
        "backbone.bn1.": 5,
        "backbone.layer1.": 3 * 18 + 6,
        "backbone.layer2.": 4 * 18 + 6,
        "backbone.layer3.": 23 * 18 + 6,
        "backbone.layer4.": 3 * 18 + 6,
    },
}
HEAD_COUNTS = {
    "deeplabv3plus": {
        "classifier.project.": 6,
        "classifier.aspp.convs.": 30,
        "classifier.aspp.project.": 6,
        "classifier.classifier.": 8,
    },
    "deeplabv3": {
        "classifier.classifier.0.convs.": 30,
        "classifier.classifier.0.project.": 6,
        "classifier.classifier.1.": 1,
        "classifier.classifier.2.": 5,
        "classifier.classifier.4.": 2,
    },
}
#: Total keys: 306 (MobileNetV2), 318 (ResNet-50), 624 (ResNet-101) backbone keys + 50 (V3+) or 44 (V3).
TOTALS = {
    "deeplabv3plus_mobilenet": 356,
    "deeplabv3plus_resnet50": 368,
    "deeplabv3plus_resnet101": 674,
    "deeplabv3_mobilenet": 350,
    "deeplabv3_resnet50": 362,
    "deeplabv3_resnet101": 668,
}
#: The head convs with a 3x3 kernel, which --separable_conv turns into body.0 (depthwise) + body.1 (pointwise).
SEPARABLE = {
    "deeplabv3plus": [
        "classifier.aspp.convs.1.0",
        "classifier.aspp.convs.2.0",
        "classifier.aspp.convs.3.0",
        "classifier.classifier.0",
    ],
    "deeplabv3": [
        "classifier.classifier.0.convs.1.0",
        "classifier.classifier.0.convs.2.0",
        "classifier.classifier.0.convs.3.0",
        "classifier.classifier.1",
    ],
}
ARCHS = sorted(TOTALS)


def _parts(name):
    head, backbone = name.split("_")
    return head, backbone


def _vainf_model(name, num_classes=19, output_stride=16, separable=False):
    return build_model(name, num_classes=num_classes, output_stride=output_stride, layout="vainf", separable=separable)


def _randomise(model, seed=0):
    """Random BatchNorm statistics and affine terms (VainF's init leaves them 0/1), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _save_vainf(path, model):
    """VainF's save_ckpt layout, with optimizer and scheduler state of plain numbers and lists."""
    torch.save(
        {
            "cur_itrs": 30000,
            "model_state": model.state_dict(),
            "optimizer_state": {
                "state": {},
                "param_groups": [
                    {"lr": 0.01, "momentum": 0.9, "nesterov": False, "foreach": None, "params": [0, 1, 2]}
                ],
            },
            "scheduler_state": {"last_epoch": 30000, "base_lrs": [0.01], "max_iters": 30000, "power": 0.9},
            "best_score": np.float64(0.72),
        },
        path,
    )
    return str(path)


@pytest.mark.parametrize("name", ARCHS)
def test_key_layout_per_prefix_matches_vainf(name):
    head, backbone = _parts(name)
    sd = _vainf_model(name, num_classes=21).state_dict()
    expected = {**BACKBONE_COUNTS[backbone], **HEAD_COUNTS[head]}
    counts = {p: sum(k.startswith(p) for k in sd) for p in expected}
    assert counts == expected
    assert len(sd) == sum(expected.values()) == TOTALS[name]  # nothing outside these prefixes
    assert not any(k.startswith(("aux_classifier.", "backbone.fc.", "backbone.features.")) for k in sd)
    if backbone == "mobilenet":
        hl = [k for k in sd if k.startswith("backbone.high_level_features.")]
        assert hl[0] == "backbone.high_level_features.4.conv.0.0.weight"
        assert hl[-1] == "backbone.high_level_features.17.conv.3.num_batches_tracked"
        assert sorted({int(k.split(".")[2]) for k in hl}) == list(range(4, 18))
        assert sorted({int(k.split(".")[2]) for k in sd if k.startswith("backbone.low_level_features.")}) == [
            0,
            1,
            2,
            3,
        ]
        assert sd["backbone.low_level_features.0.0.weight"].shape == (32, 3, 3, 3)
        assert sd["backbone.low_level_features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)  # t=1: no expansion
        assert sd["backbone.high_level_features.17.conv.2.weight"].shape == (320, 960, 1, 1)
        cin, low = 320, 24
    else:
        assert sd["backbone.conv1.weight"].shape == (64, 3, 7, 7)
        assert sd["backbone.layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
        cin, low = 2048, 256
    if head == "deeplabv3plus":
        assert sd["classifier.project.0.weight"].shape == (48, low, 1, 1)
        assert sd["classifier.aspp.convs.1.0.weight"].shape == (256, cin, 3, 3)
        assert sd["classifier.aspp.convs.4.1.weight"].shape == (256, cin, 1, 1)
        assert sd["classifier.aspp.project.0.weight"].shape == (256, 1280, 1, 1)
        assert sd["classifier.classifier.0.weight"].shape == (256, 304, 3, 3)
        assert sd["classifier.classifier.3.weight"].shape == (21, 256, 1, 1)
        assert sd["classifier.classifier.3.bias"].shape == (21,)
    else:
        assert sd["classifier.classifier.0.convs.0.0.weight"].shape == (256, cin, 1, 1)
        assert sd["classifier.classifier.0.convs.3.0.weight"].shape == (256, cin, 3, 3)
        assert sd["classifier.classifier.0.convs.4.1.weight"].shape == (256, cin, 1, 1)
        assert sd["classifier.classifier.0.project.0.weight"].shape == (256, 1280, 1, 1)
        assert sd["classifier.classifier.1.weight"].shape == (256, 256, 3, 3)
        assert sd["classifier.classifier.2.running_var"].shape == (256,)
        assert sd["classifier.classifier.4.weight"].shape == (21, 256, 1, 1)
        assert sd["classifier.classifier.4.bias"].shape == (21,)


@pytest.mark.parametrize("name", ["deeplabv3plus_mobilenet", "deeplabv3_mobilenet", "deeplabv3_resnet50"])
def test_separable_head_keys(name):
    head, backbone = _parts(name)
    sd = _vainf_model(name, separable=True).state_dict()
    cin = 320 if backbone == "mobilenet" else 2048
    assert len(sd) == TOTALS[name] + 4  # each of the four 3x3 convs: one weight -> body.0 + body.1
    for conv in SEPARABLE[head]:
        assert f"{conv}.weight" not in sd and f"{conv}.body.0.bias" not in sd
        depthwise, pointwise = sd[f"{conv}.body.0.weight"], sd[f"{conv}.body.1.weight"]
        assert depthwise.shape[1:] == (1, 3, 3) and pointwise.shape[2:] == (1, 1)
        assert depthwise.shape[0] == pointwise.shape[1]
    assert sd[f"{SEPARABLE[head][0]}.body.0.weight"].shape == (cin, 1, 3, 3)
    if head == "deeplabv3plus":
        assert sd["classifier.classifier.0.body.0.weight"].shape == (304, 1, 3, 3)
        assert sd["classifier.classifier.0.body.1.weight"].shape == (256, 304, 1, 1)
    # the dilation and padding of the atrous branch are kept on the depthwise conv
    model = _vainf_model(name, separable=True)
    aspp = model.classifier.aspp if head == "deeplabv3plus" else model.classifier.classifier[0]
    depthwise = aspp.convs[3][0].body[0]
    assert depthwise.dilation == (18, 18) and depthwise.padding == (18, 18) and depthwise.groups == cin


@pytest.mark.parametrize("name", ["deeplabv3plus_mobilenet", "deeplabv3_mobilenet", "deeplabv3_resnet50"])
@pytest.mark.parametrize("stride, rates", [(16, [6, 12, 18]), (8, [12, 24, 36])])
def test_output_stride_rates_and_feature_sizes(name, stride, rates):
    head, backbone = _parts(name)
    model = _vainf_model(name, output_stride=stride).eval()
    aspp = model.classifier.aspp if head == "deeplabv3plus" else model.classifier.classifier[0]
    assert [aspp.convs[i][0].dilation[0] for i in (1, 2, 3)] == rates
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        feats = model.backbone(x)
        assert model(x)["out"].shape == (1, 19, 65, 97)
    if backbone == "mobilenet":
        # VainF's first conv has no padding ((65 - 3) // 2 + 1 = 32, 48); later blocks pad their input.
        assert feats["low_level"].shape[2:] == (16, 24)
        assert feats["out"].shape[2:] == ((4, 6) if stride == 16 else (8, 12))
    else:
        # replace_stride_with_dilation: OS16 dilates layer4 only, OS8 layer3 and layer4
        assert [model.backbone.layer3[1].conv2.dilation[0], model.backbone.layer4[1].conv2.dilation[0]] == (
            [1, 2] if stride == 16 else [2, 4]
        )
        assert feats["out"].shape[2:] == ((5, 7) if stride == 16 else (9, 13))


@pytest.mark.parametrize(
    "name, dataset, stride, separable",
    [
        ("deeplabv3plus_mobilenet", "cityscapes", 16, False),
        ("deeplabv3plus_mobilenet", "voc", 8, True),
        ("deeplabv3_mobilenet", "voc", 16, False),
        ("deeplabv3_mobilenet", "cityscapes", 8, True),
    ],
)
def test_vainf_file_loads_with_its_classes_stride_and_head(tmp_path, name, dataset, stride, separable):
    classes = 19 if dataset == "cityscapes" else 21
    src = _randomise(_vainf_model(name, num_classes=classes, output_stride=stride, separable=separable))
    head, _ = _parts(name)
    sd = src.state_dict()
    # the file's names are the derived ones
    assert len(sd) == TOTALS[name] + (4 if separable else 0)
    assert (
        "backbone.high_level_features.17.conv.3.running_var" in sd
        and "backbone.high_level_features.18.conv.0.0.weight" not in sd
    )
    path = _save_vainf(tmp_path / f"best_{name}_{dataset}_os{stride}.pth", src)
    loaded = load_model(name, path)
    assert loaded.spec.kind == "vainf" and loaded.output_stride == stride and loaded.num_classes == classes
    assert loaded.model.config.head == ("v3plus" if head == "deeplabv3plus" else "v3")
    assert loaded.model.config.separable == separable
    assert loaded.class_names[0] == ("road" if dataset == "cityscapes" else "__background__")
    assert list(loaded.model.state_dict()) == list(sd)
    x = torch.randn(1, 3, 71, 103)
    with torch.no_grad():
        assert torch.equal(LogitsOnly(loaded.model)(x), src(x)["out"])


def test_deeplabv3_resnet50_file_picks_its_layout(tmp_path):
    from torchvision.models import segmentation

    # VainF's file (model_state, classifier.classifier.*, OS16 in its name)
    src = _randomise(_vainf_model("deeplabv3_resnet50", num_classes=21))
    sd = src.state_dict()
    assert "classifier.classifier.0.convs.0.0.weight" in sd and "classifier.0.convs.0.0.weight" not in sd
    vainf = load_model("deeplabv3_resnet50", _save_vainf(tmp_path / "best_deeplabv3_resnet50_voc_os16.pth", src))
    assert vainf.spec.kind == "vainf" and vainf.spec.size_policy.kind == "native"
    assert vainf.output_stride == 16 and vainf.num_classes == 21 and vainf.class_names[15] == "person"
    x = torch.randn(1, 3, 57, 75)
    with torch.no_grad():
        assert torch.equal(LogitsOnly(vainf.model)(x), src(x)["out"])
    del src, sd, vainf
    # torchvision's layout for the same name (plain state dict, classifier.4, aux head)
    tv_model = segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    tv = tmp_path / "deeplabv3_resnet50_coco-cd0a2569.pth"
    torch.save(tv_model.state_dict(), tv)
    loaded = load_model("deeplabv3_resnet50", str(tv))
    assert loaded.spec.kind == "torchvision" and loaded.spec.size_policy.kind == "short_side"
    assert loaded.model.aux_classifier is not None and loaded.output_stride is None
    # no file: torchvision's model, as before
    assert spec_of("deeplabv3_resnet50").kind == "torchvision"
    assert "classifier.4.weight" in build_model("deeplabv3_resnet50").state_dict()


def test_layout_detection_and_guess_from_keys():
    from torchvision.models import segmentation

    tv = segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=21).state_dict()
    assert spec_for_state(spec_of("deeplabv3_resnet101"), tv).kind == "torchvision"
    vainf = _vainf_model("deeplabv3_resnet101").state_dict()
    assert spec_for_state(spec_of("deeplabv3_resnet101"), vainf).classifier_key == "classifier.classifier.4.weight"
    assert guess_vainf_model(vainf) == "deeplabv3_resnet101"
    assert guess_vainf_model(tv) is None
    for name in ("deeplabv3plus_mobilenet", "deeplabv3_mobilenet", "deeplabv3plus_resnet50"):
        assert guess_vainf_model(_vainf_model(name).state_dict()) == name
    with pytest.raises(ConfigError, match="no 'vainf' layout"):
        spec_of("lraspp_mobilenet_v3_large", "vainf")
    with pytest.raises(ConfigError, match="separable convolutions exist in the VainF DeepLab layouts only"):
        build_model("deeplabv3_resnet50", separable=True)


def _one_line_error(match, *args, **kwargs):
    with pytest.raises(ModelError, match=match) as info:
        load_model(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_wrong_architecture_and_truncated_files_give_one_line_errors(tmp_path):
    plus = _save_vainf(
        tmp_path / "best_deeplabv3plus_mobilenet_cityscapes_os16.pth", _vainf_model("deeplabv3plus_mobilenet")
    )
    v3 = _save_vainf(
        tmp_path / "best_deeplabv3_mobilenet_voc_os16.pth", _vainf_model("deeplabv3_mobilenet", num_classes=21)
    )
    # a V3+ file for the V3 model: no classifier.classifier.4.weight, the file's architecture named
    msg = _one_line_error(
        r"no classifier\.classifier\.4\.weight in it .*it looks like VainF's deeplabv3plus_mobilenet: "
        r"pass --model deeplabv3plus_mobilenet\); expected a VainF DeepLabV3 state dict",
        "deeplabv3_mobilenet",
        plus,
    )
    assert "classifier.classifier.0.convs.* (ASPP)" in msg
    # a V3 file for the V3+ model
    _one_line_error(
        r"no classifier\.classifier\.3\.weight in it .*pass --model deeplabv3_mobilenet\); expected a VainF "
        r"DeepLabV3\+ state dict",
        "deeplabv3plus_mobilenet",
        v3,
    )
    # VainF's MobileNet V3 file for deeplabv3_resnet50: VainF's layout picked, the backbone does not fit
    _one_line_error(
        r"does not fit deeplabv3_resnet50: .*missing.*pass --model deeplabv3_mobilenet\); "
        r"expected a VainF DeepLabV3 state dict .*backbone\.conv1/bn1/layer1-4",
        "deeplabv3_resnet50",
        v3,
    )
    # a torchvision LR-ASPP file for deeplabv3_resnet50: both accepted layouts named
    from torchvision.models import segmentation

    lraspp = tmp_path / "lraspp.pth"
    torch.save(segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(), lraspp)
    _one_line_error(
        r"no classifier\.4\.weight in it .*expected a torchvision state dict.*; or a VainF DeepLabV3 state dict",
        "deeplabv3_resnet50",
        str(lraspp),
    )
    # truncated files (a download cut short)
    for name, path, layout in (
        ("deeplabv3plus_mobilenet", plus, r"VainF DeepLabV3\+ state dict"),
        ("deeplabv3_mobilenet", v3, "VainF DeepLabV3 state dict"),
        ("deeplabv3_resnet50", v3, "torchvision state dict.*; or a VainF DeepLabV3 state dict"),
    ):
        cut = tmp_path / f"cut_{name}.pth"
        data = open(path, "rb").read()
        cut.write_bytes(data[: len(data) // 2])
        _one_line_error(f"cannot read it as a torch checkpoint .*expected a {layout}", name, str(cut))


# --- export and the segstream runner against a VainF-style forward -----------------------------


def _vainf_input(png):
    """VainF's predict.py input: PIL RGB -> ToTensor -> Normalize(ImageNet mean/std), (1, 3, H, W)."""
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose([T.ToTensor(), T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    return tf(Image.open(png).convert("RGB")).unsqueeze(0)


def _scene(path, size_hw=(97, 141)):
    import cv2

    rng = np.random.default_rng(5)
    img = cv2.resize(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), size_hw[::-1], interpolation=cv2.INTER_CUBIC)
    img[30:60, 40:100] = (60, 180, 90)
    cv2.imwrite(str(path), img)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deeplabv3plus_mobilenet", "deeplabv3_mobilenet"])
def test_export_parity_and_predict_match_vainf_forward(tmp_path, name):
    import cv2

    from segstream.cli import main
    from segstream.export.semantic import check_parity
    from tests.conftest import ROOT, segstream_cmd

    png = _scene(tmp_path / "frame.png")
    src = _randomise(_vainf_model(name, num_classes=19), seed=3)
    x = _vainf_input(png)
    with torch.no_grad():  # centre each class's logit on this frame, so its class map has many classes
        src.classifier.classifier[-1].bias.sub_(src(x)["out"].mean((0, 2, 3)))
        want = src(x)["out"].argmax(1)[0].numpy().astype(np.uint8)  # VainF's predict.py: outputs.max(1)[1]
    assert len(np.unique(want)) >= 5
    ckpt = _save_vainf(tmp_path / f"best_{name}_cityscapes_os16.pth", src)
    onnx_path = str(tmp_path / f"{name}.onnx")
    # exported in a subprocess (the export tests say why), at one size, compared at others
    res = subprocess.run(
        segstream_cmd(
            "export", "--model", name, "--weights", ckpt, "--dynamic", "--input-size", "64x96", "--out", onnx_path
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    module = LogitsOnly(load_model(name, ckpt).model).eval()
    for r in check_parity(onnx_path, module, [(97, 141), (120, 200)], threads=1):
        assert r.relative_error <= 1e-4 and r.argmax_agreement >= 0.999, r

    def masks(*args):
        out = tmp_path / f"masks{len(list(tmp_path.iterdir()))}"
        assert main(["predict", "--model", name, *args, "--mask-dir", str(out), png]) == 0
        return cv2.imread(str(out / "frame.png"), cv2.IMREAD_UNCHANGED)

    # the frame's own size (VainF's predict.py does not resize): --input-size 97x141 for the dynamic export
    assert np.mean(masks("--weights", ckpt) == want) >= 0.998
    assert np.mean(masks("--weights", onnx_path, "--backend", "onnxruntime", "--input-size", "97x141") == want) >= 0.998
