"""YolactEdge: state-dict layouts derived from the authors' code, the release files loading by
name, one-line errors for the wrong file, ONNX Runtime against torch, the CLI, the video path.

The expected key lists are written out here from haotian-liu/yolact_edge (``yolact_edge/yolact.py``,
``backbone.py``, ``data/config.py``), independently of ``models/yolact``: the MobileNetV2 table
``mobilenetv2_arch`` through ``MobileNetV2Backbone``/``InvertedResidual``/``ConvBNAct``; the
ResNet backbones from the key lists dumped from the official YOLACT classes (``tests/models/data``,
the same ``ResNetBackbone``); ``FPN_phase_1``/``FPN_phase_2``, ``make_net`` for ``proto_net`` and
``upfeature``, ``PredictionModule``, ``semantic_seg_conv``; ``FlowNetMiniPreConvs``,
``build_flow_convs``, ``FlowNetMini``, ``FlowNetMiniPredLayer`` and ``SPA`` with
``yolact_edge_vid_config.flow``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.models.yolact.checkpoint import load_yolact, save_yolact  # noqa: E402
from segstream.models.yolact.config import COCO_CLASSES, YOUTUBE_VIS_CLASSES, get_config  # noqa: E402
from segstream.models.yolact.model import Yolact  # noqa: E402
from segstream.stream.errors import ModelError  # noqa: E402
from tests.models.test_yolact_model import read_key_list  # noqa: E402

EDGE = [
    "yolact_edge",
    "yolact_edge_resnet50",
    "yolact_edge_mobilenetv2",
    "yolact_edge_vid",
    "yolact_edge_vid_resnet50",
    "yolact_edge_vid_minimal",
    "yolact_edge_youtubevis",
    "yolact_edge_youtubevis_resnet50",
]

# ------------------------------------------------------------------ the authors' layout, derived

#: ``mobilenetv2_arch`` (t, c, n, s) in yolact_edge/data/config.py.
MOBILENETV2_ARCH = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


def _bn(prefix: str, n: int) -> dict:
    return {
        f"{prefix}.weight": (n,),
        f"{prefix}.bias": (n,),
        f"{prefix}.running_mean": (n,),
        f"{prefix}.running_var": (n,),
        f"{prefix}.num_batches_tracked": (),
    }


def _conv_bn_act(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> dict:
    """``ConvBNAct``: Sequential(conv without bias, BatchNorm2d, ReLU6)."""
    return {f"{prefix}.0.weight": (cout, cin // groups, k, k), **_bn(f"{prefix}.1", cout)}


def mobilenetv2_backbone_keys() -> tuple[dict, list[int]]:
    """``MobileNetV2Backbone(1.0, mobilenetv2_arch, 8)``: (keys, channels of each layer)."""
    keys = _conv_bn_act("backbone.layers.0", 3, 32, 3)
    channels, cin = [32], 32
    for i, (t, c, n, _s) in enumerate(MOBILENETV2_ARCH, start=1):
        for b in range(n):
            p = f"backbone.layers.{i}.{b}.conv"
            hidden = int(round(cin * t))
            j = 0
            if t != 1:  # InvertedResidual: the pointwise expansion only when t != 1
                keys.update(_conv_bn_act(f"{p}.0", cin, hidden, 1))
                j = 1
            keys.update(_conv_bn_act(f"{p}.{j}", hidden, hidden, 3, groups=hidden))
            keys[f"{p}.{j + 1}.weight"] = (c, hidden, 1, 1)
            keys.update(_bn(f"{p}.{j + 2}", c))
            cin = c
        channels.append(cin)
    keys.update(_conv_bn_act("backbone.layers.8", cin, 1280, 1))
    return keys, channels + [1280]


def _conv(prefix: str, cin: int, cout: int, k: int, bias: bool = True) -> dict:
    keys = {f"{prefix}.weight": (cout, cin, k, k)}
    if bias:
        keys[f"{prefix}.bias"] = (cout,)
    return keys


def edge_head_keys(
    in_channels: list[int], num_classes: int, anchors: int = 3, f: int = 256, k: int = 32, flow: dict | None = None
) -> dict:
    """Everything after the backbone (``yolact_base_config`` settings), in the order ``Yolact``
    registers it: proto_net, fpn_phase_1, fpn_phase_2, [spa, flow_net_pre_convs, flow_net],
    prediction_layers, semantic_seg_conv."""
    keys = {}
    # make_net(mask_proto_net): (conv, ReLU) per entry, the interpolate entry too, last ReLU dropped.
    for idx, (cin, cout, ks) in {
        0: (f, 256, 3),
        2: (256, 256, 3),
        4: (256, 256, 3),
        8: (256, 256, 3),
        10: (256, k, 1),
    }.items():
        keys.update(_conv(f"proto_net.{idx}", cin, cout, ks))
    for i, c in enumerate(reversed(in_channels)):
        keys.update(_conv(f"fpn_phase_1.lat_layers.{i}", c, f, 1))
    for i in range(len(in_channels)):
        keys.update(_conv(f"fpn_phase_2.pred_layers.{i}", f, f, 3))
    for i in range(2):  # fpn num_downsample 2, use_conv_downsample
        keys.update(_conv(f"fpn_phase_2.downsample_layers.{i}", f, f, 3))
    keys.update(flow or {})
    keys.update(_conv("prediction_layers.0.upfeature.0", f, 256, 3))  # extra_head_net via make_net
    keys.update(_conv("prediction_layers.0.bbox_layer", 256, anchors * 4, 3))
    keys.update(_conv("prediction_layers.0.conf_layer", 256, anchors * num_classes, 3))
    keys.update(_conv("prediction_layers.0.mask_layer", 256, anchors * k, 3))
    keys.update(_conv("semantic_seg_conv", f, num_classes - 1, 1))
    return keys


def flow_keys(spa: bool = True, f: int = 256, reduce: int = 64, ec: int = 64) -> dict:
    """``yolact_edge_vid_config.flow``: reduce_channels [64], encode_channels 64,
    encode_layers [[1], [2], [4]], num_groups 1, use_spa."""
    keys = {}
    if spa:
        for i in range(2):  # SPA(len(selected_layers)): num_layers - 1 refine convs
            keys.update(_conv(f"spa.refine_convs.{i}.0", 2 * f, f, 3))
    keys.update(_conv("flow_net_pre_convs.convs.0.0", f, reduce, 3))  # conv_lrelu: Sequential(conv, LeakyReLU)

    def build_flow_convs(prefix, encode_layers, cin, cout):
        out = _conv(f"{prefix}.0.0", cin, ec * encode_layers[0], 3)
        for i in range(len(encode_layers) - 1):
            out.update(_conv(f"{prefix}.{i + 1}.0", ec * encode_layers[i], ec * encode_layers[i + 1], 3))
        out.update(_conv(f"{prefix}.{len(encode_layers)}.0", ec * encode_layers[-1], cout, 3))
        return out

    keys.update(build_flow_convs("flow_net.conv1", [1], 2 * reduce, ec))
    keys.update(build_flow_convs("flow_net.conv2", [2], ec, 2 * ec))
    keys.update(build_flow_convs("flow_net.conv3", [4], 2 * ec, 4 * ec))
    for name, cin in (("pred3", 4 * ec), ("pred2", 4 * ec + 2), ("pred1", 2 * ec + 2)):
        keys.update(_conv(f"flow_net.{name}.conv", cin, 2, 3, bias=False))
        keys.update(_conv(f"flow_net.{name}.scale", cin, f, 1))
        keys.update(_conv(f"flow_net.{name}.bias", cin, f, 1))
    keys.update(_conv("flow_net.upfeat3", 4 * ec, 2 * ec, 3, bias=False))
    keys.update(_conv("flow_net.upflow3", 2, 2, 3, bias=False))
    keys.update(_conv("flow_net.upfeat2", 4 * ec + 2, ec, 3, bias=False))
    keys.update(_conv("flow_net.upflow2", 2, 2, 3, bias=False))
    return keys


def expected_layout(name: str) -> dict:
    """The state dict (key -> shape) the authors' code builds for a configuration."""
    backbone = {"yolact_edge_mobilenetv2": "mobilenetv2"}.get(
        name, "resnet50" if name.endswith("resnet50") else "resnet101"
    )
    if backbone == "mobilenetv2":
        keys, channels = mobilenetv2_backbone_keys()
        in_channels = [channels[i] for i in (3, 4, 6)]  # selected_layers
    else:
        ref = read_key_list("yolact_resnet50" if backbone == "resnet50" else "yolact_base")
        keys = {k: v for k, v in ref.items() if k.startswith("backbone.")}
        in_channels = [512, 1024, 2048]
    coco = name in ("yolact_edge", "yolact_edge_resnet50", "yolact_edge_mobilenetv2")
    flow = flow_keys(spa=name != "yolact_edge_vid_minimal") if name.startswith("yolact_edge_vid") else None
    keys.update(edge_head_keys(in_channels, 81 if coco else 41, flow=flow))
    return keys


# ------------------------------------------------------------------ helpers


def small_config(name: str, size: int = 160):
    """A configuration at a smaller input (anchors scaled as ``train --input-size`` does)."""
    cfg = get_config(name)
    return replace(cfg, max_size=size, pred_scales=tuple(int(s / 550 * size) for s in cfg.pred_scales))


def lively(net, seed: int = 0, conf_std: float = 2.0, sample=None):
    """Random weights that give a spread of detections (default initialisations give none):
    gaussian weights and random BatchNorm statistics, then one forward pass that rescales each
    conv to unit output std (boxes 0.5, class logits ``conf_std``), and mask coefficients leaning
    positive so that about two thirds of the masks are not empty. Returns ``net`` in eval mode."""
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    head = net.prediction_layers[0]
    target = {head.bbox_layer: 0.5, head.conf_layer: conf_std}
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
    done = set()

    def rescale(m, _inp, out):
        if m in done:  # the shared head runs once per level: scaled on the first
            return None
        done.add(m)
        s = float(out.std()) / target.get(m, 1.0)
        m.weight.div_(s)
        if m.bias is not None:
            m.bias.div_(s)
        return out / s

    hooks = [m.register_forward_hook(rescale) for m in net.modules() if isinstance(m, nn.Conv2d)]
    if sample is None:
        from segstream.models.yolact.verify import sample_image
        from segstream.pipelines.tasks.yolact import YolactPreprocess

        s = net.cfg.max_size
        sample = torch.from_numpy(YolactPreprocess((s, s))(sample_image((360, 640), seed=seed + 100))[0]["image"])
    try:
        with torch.no_grad():
            net.eval()(sample)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        head.mask_layer.bias.add_(0.3)
    return net.eval()


def layout_of(name: str) -> dict:
    """The state dict (key -> shape) of our network for a configuration, built without weights."""
    with torch.device("meta"):
        net = Yolact(get_config(name))
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def official_state(net) -> dict:
    """The net's tensors as a plain state dict, as the authors' ``save_weights`` writes."""
    return {k: v.clone() for k, v in net.state_dict().items()}


# ------------------------------------------------------------------ layouts


@pytest.mark.parametrize("name", EDGE)
def test_state_dict_is_the_authors_layout(name):
    want = expected_layout(name)
    have = layout_of(name)
    assert sorted(set(want) - set(have)) == []
    assert sorted(set(have) - set(want)) == []
    assert {k: s for k, s in have.items() if want[k] != s} == {}
    assert list(have) == list(want)  # and in the authors' module order


@pytest.mark.parametrize(
    "name, counts, first",
    [
        (
            "yolact_edge_mobilenetv2",
            {
                "backbone": 312,
                "fpn_phase_1": 6,
                "fpn_phase_2": 10,
                "proto_net": 10,
                "prediction_layers": 8,
                "semantic_seg_conv": 2,
            },
            "backbone.layers.0.0.weight",
        ),
        (
            "yolact_edge",
            {
                "backbone": 624,
                "fpn_phase_1": 6,
                "fpn_phase_2": 10,
                "proto_net": 10,
                "prediction_layers": 8,
                "semantic_seg_conv": 2,
            },
            "backbone.layers.0.0.conv1.weight",
        ),
        (
            "yolact_edge_resnet50",
            {
                "backbone": 318,
                "fpn_phase_1": 6,
                "fpn_phase_2": 10,
                "proto_net": 10,
                "prediction_layers": 8,
                "semantic_seg_conv": 2,
            },
            "backbone.layers.0.0.conv1.weight",
        ),
        (
            "yolact_edge_vid",
            {
                "backbone": 624,
                "fpn_phase_1": 6,
                "fpn_phase_2": 10,
                "spa": 4,
                "flow_net_pre_convs": 2,
                "flow_net": 31,
                "proto_net": 10,
                "prediction_layers": 8,
                "semantic_seg_conv": 2,
            },
            "backbone.layers.0.0.conv1.weight",
        ),
    ],
)
def test_counts_per_prefix_and_first_and_last_keys(name, counts, first):
    derived = expected_layout(name)
    keys = list(layout_of(name))
    for layout in (list(derived), keys):
        tally = {}
        for k in layout:
            tally[k.split(".")[0]] = tally.get(k.split(".")[0], 0) + 1
        assert tally == counts
    # The authors register the backbone (its layers before its stem) first, semantic_seg_conv last.
    assert keys[0] == first == next(iter(derived)) and keys[-1] == "semantic_seg_conv.bias"


def test_yolact_files_map_to_the_yolactedge_layout():
    # YolactEdge's load_weights rule: fpn.lat_layers -> fpn_phase_1.lat_layers, other fpn.* -> fpn_phase_2.*.
    from segstream.models.yolact.checkpoint import split_fpn_key

    for yolact, edge in (("yolact_base", "yolact_edge"), ("yolact_resnet50", "yolact_edge_resnet50")):
        renamed = {split_fpn_key(k): s for k, s in read_key_list(yolact).items()}
        assert renamed == expected_layout(edge)


@pytest.mark.parametrize(
    "name, classes",
    [
        ("yolact_edge", COCO_CLASSES),
        ("yolact_edge_mobilenetv2", COCO_CLASSES),
        ("yolact_edge_vid", YOUTUBE_VIS_CLASSES),
        ("yolact_edge_youtubevis_resnet50", YOUTUBE_VIS_CLASSES),
    ],
)
def test_configuration_values(name, classes):
    cfg = get_config(name)
    assert cfg.class_names == classes and cfg.num_classes == len(classes) + 1
    assert cfg.num_classes == (81 if classes is COCO_CLASSES else 41)
    assert len(YOUTUBE_VIS_CLASSES) == 40 and YOUTUBE_VIS_CLASSES[-1] == "tennis_racket"
    assert cfg.max_size == 550 and cfg.pred_scales == (24, 48, 96, 192, 384)
    assert cfg.aspect_ratios == (1.0, 0.5, 2.0) and cfg.square_anchors
    # resnet_transform and mobilenetv2_transform: normalize with the ImageNet MEANS/STD, RGB.
    assert cfg.mean == pytest.approx((123.68, 116.78, 103.94)) and cfg.std == pytest.approx((58.40, 57.12, 57.38))
    assert cfg.color_order == "RGB" and cfg.nms == "standard"
    nms = cfg.artifact_metadata(19248).extra["nms"]
    assert nms == {
        "method": "standard",
        "conf_thresh": 0.05,
        "iou_thresh": 0.5,
        "top_k": 200,
        "max_detections": 100,
        "mask_threshold": 0.5,
        "pixel_scale": 550.0,
    }


def test_mobilenetv2_geometry_and_anchors_at_550():
    net = Yolact(get_config("yolact_edge_mobilenetv2")).eval()
    with torch.no_grad():
        convouts = net.backbone(torch.zeros(1, 3, 550, 550))
        out = net(torch.zeros(1, 3, 550, 550))
    # 3x3 stride-2 convs with padding 1: ceil(n / 2) at each step.
    assert [c.shape[-1] for c in convouts] == [275, 275, 138, 69, 35, 35, 18, 18, 18]
    assert [c.shape[1] for c in convouts] == [32, 16, 24, 32, 64, 96, 160, 320, 1280]
    assert out["priors"].shape == (19248, 4) and out["conf"].shape == (1, 19248, 81)
    assert out["mask"].shape == (1, 19248, 32) and out["proto"].shape == (1, 138, 138, 32)
    pri = out["priors"].numpy()
    np.testing.assert_allclose(pri[0], [0.5 / 69, 0.5 / 69, 24 / 550, 24 / 550], rtol=1e-6)
    assert np.array_equal(pri[:, 2], pri[:, 3])  # use_square_anchors
    p5 = (69**2 + 35**2) * 3  # first P5 prior: 96 px, ratios 1, 1/2, 2 -> widths 96 * sqrt(ar)
    np.testing.assert_allclose(pri[p5 : p5 + 3, 2] * 550, [96, 96 * np.sqrt(0.5), 96 * np.sqrt(2)], rtol=1e-5)


# ------------------------------------------------------------------ loading the release files


@pytest.mark.parametrize(
    "file_name, name",
    [
        ("yolact_edge_mobilenetv2_54_800000.pth", "yolact_edge_mobilenetv2"),
        ("yolact_edge_resnet50_54_800000.pth", "yolact_edge_resnet50"),
        ("yolact_edge_vid_resnet50_847_50000.pth", "yolact_edge_vid_resnet50"),
        pytest.param("yolact_edge_vid_847_50000.pth", "yolact_edge_vid", marks=pytest.mark.slow),
    ],
)
def test_release_files_load_by_name(tmp_path, file_name, name):
    torch.manual_seed(1)
    src = Yolact(get_config(name))
    state = official_state(src)
    if name == "yolact_edge_resnet50":
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # older savers lack them
    path = tmp_path / file_name
    torch.save(state, path)
    net, cfg = load_yolact(str(path))
    assert cfg.name == name and cfg.class_names == get_config(name).class_names
    mine = net.state_dict()
    for k, v in state.items():
        assert torch.equal(mine[k], v), k
    if name.startswith("yolact_edge_vid"):
        # The flow network is kept with its weights (the keyframe path does not use it).
        assert torch.equal(net.flow_net.pred2.scale.weight, src.flow_net.pred2.scale.weight)
        assert torch.equal(net.spa.refine_convs[1][0].bias, src.spa.refine_convs[1][0].bias)


@pytest.mark.slow
def test_r101_release_file_loads_by_name(tmp_path):
    torch.manual_seed(2)
    state = official_state(Yolact(get_config("yolact_edge")))
    path = tmp_path / "yolact_edge_54_800000.pth"
    torch.save(state, path)
    net, cfg = load_yolact(str(path))
    assert cfg.name == "yolact_edge" and len(cfg.class_names) == 80
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


def test_yolact_checkpoint_runs_as_yolactedge_with_the_same_outputs(tmp_path):
    # YolactEdge's loader converts YOLACT files; the split FPN computes the same numbers.
    cfg = small_config("yolact_resnet50")
    torch.manual_seed(3)
    yolact = lively(Yolact(cfg))
    path = tmp_path / "yolact_resnet50_54_800000.pth"
    torch.save(official_state(yolact), path)
    edge, edge_cfg = load_yolact(str(path), "yolact_edge_resnet50")
    assert hasattr(edge, "fpn_phase_1") and not hasattr(edge, "fpn") and edge_cfg.nms == "standard"
    edge = edge.eval()
    edge.cfg = replace(edge.cfg, max_size=cfg.max_size, pred_scales=cfg.pred_scales)
    x = torch.randn(1, 3, cfg.max_size, cfg.max_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = yolact(x), edge(x)
    for k in ("loc", "conf", "mask", "proto"):
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------ the wrong file


def _one_line_error(path, model=None) -> str:
    with pytest.raises(ModelError) as err:
        load_yolact(str(path), model)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_another_architecture_names_the_expected_layout(tmp_path):
    # The other mobile YOLACT (MobileNetV3, fpn.* layout) under a YolactEdge MobileNetV2 name.
    path = tmp_path / "yolact_edge_mobilenetv2_54_800000.pth"
    torch.save(official_state(Yolact(get_config("yolact_mobilenetv3"))), path)
    msg = _one_line_error(path)
    assert (
        "'yolact_edge_mobilenetv2' (expected MobileNetV2 backbone.layers.0-8, fpn_phase_1.lat_layers, "
        "fpn_phase_2.pred_layers/downsample_layers, proto_net, prediction_layers.0 (81 classes), semantic_seg_conv)"
        in msg
    )
    assert "missing (e.g. backbone.layers.0.0.weight" in msg and "unexpected (e.g. backbone.features.0.0.weight" in msg


def test_image_and_video_files_are_told_apart(tmp_path):
    coco = tmp_path / "yolact_edge_vid_resnet50_847_50000.pth"
    torch.save(official_state(Yolact(get_config("yolact_edge_resnet50"))), coco)
    msg = _one_line_error(coco)
    assert "flow_net_pre_convs, flow_net, spa)" in msg and "missing (e.g. spa.refine_convs.0.0.weight" in msg
    vid = tmp_path / "yolact_edge_resnet50_54_800000.pth"
    torch.save(official_state(Yolact(get_config("yolact_edge_vid_resnet50"))), vid)
    msg = _one_line_error(vid)
    assert "'yolact_edge_resnet50'" in msg and "unexpected (e.g. spa.refine_convs.0.0.weight" in msg


def test_truncated_file_names_the_expected_layout(tmp_path):
    good = tmp_path / "full.pth"
    torch.save(official_state(Yolact(small_config("yolact_edge_mobilenetv2"))), good)
    cut = tmp_path / "yolact_edge_mobilenetv2_54_800000.pth"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    msg = _one_line_error(cut)
    assert "damaged or truncated" in msg and "(expected yolact_edge_mobilenetv2: MobileNetV2 backbone.layers.0-8" in msg


# ------------------------------------------------------------------ export and runtime


def _parity(tmp_path, cfg, seed=0):
    from segstream.export.onnx import read_metadata, relative_error
    from segstream.export.yolact import export_yolact_onnx
    from segstream.models.yolact.runtime import TorchYolactBackend
    from segstream.models.yolact.verify import mask_ious, sample_image
    from segstream.pipelines.tasks.yolact import OUTPUT_NAMES, YolactPreprocess, YolactRunner
    from segstream.stream.backends import OnnxRuntimeBackend

    net = lively(Yolact(cfg), seed)
    path = export_yolact_onnx(net=net, out_path=str(tmp_path / f"{cfg.name}.onnx"))
    assert read_metadata(path).extra["nms"]["method"] == "standard"
    ort = OnnxRuntimeBackend(path, intra_op_threads=1)
    ref = TorchYolactBackend(net)
    img = sample_image((360, 640), seed=seed + 7)
    feeds, _ = YolactPreprocess.from_metadata(ort.metadata)(img)
    a, b = ort.run(feeds), ref.run(feeds)
    for n in OUTPUT_NAMES:
        assert a[n].shape == b[n].shape and relative_error(a[n], b[n]) < 1e-4, n
    ia, ib = YolactRunner(ort)(img), YolactRunner(ref)(img)
    assert len(ib) >= 20 and YolactRunner(ort).postprocess.nms_method == "standard"
    assert ia.labels.tolist() == ib.labels.tolist()
    np.testing.assert_allclose(ia.scores, ib.scores, rtol=1e-4, atol=1e-5)
    assert np.abs(ia.boxes_xyxy - ib.boxes_xyxy).max() <= 1
    assert mask_ious(ia.masks, ib.masks).min() > 0.98
    return net, path


@pytest.mark.parametrize(
    "name, size",
    [
        ("yolact_edge_mobilenetv2", 160),
        ("yolact_edge_resnet50", 128),
        # The video model's exported graph is its keyframe path.
        pytest.param("yolact_edge_vid_resnet50", 128, marks=pytest.mark.slow),
    ],
)
def test_onnx_runtime_reproduces_torch(tmp_path, name, size):
    _parity(tmp_path, small_config(name, size))


@pytest.mark.slow
def test_r101_onnx_runtime_reproduces_torch(tmp_path):
    _parity(tmp_path, small_config("yolact_edge", 224))


def test_predict_with_torch_and_onnxruntime(tmp_path):
    import cv2

    from segstream.cli import main
    from segstream.models.yolact.verify import sample_image

    net = lively(Yolact(small_config("yolact_edge_mobilenetv2", 192)), seed=4)
    ckpt = save_yolact(net, str(tmp_path / "edge_random.pth"))
    onnx_path = str(tmp_path / "edge_random.onnx")
    assert main(["export", "--model", "yolact_edge_mobilenetv2", "--weights", ckpt, "--out", onnx_path]) == 0
    images = []
    for i in range(2):
        images.append(str(tmp_path / f"frame{i}.png"))
        cv2.imwrite(images[-1], sample_image((360, 640), seed=20 + i))
    dets = {}
    for backend, weights in (("torch", ckpt), ("onnxruntime", onnx_path)):
        out = tmp_path / f"{backend}.json"
        assert (
            main(
                [
                    "predict",
                    "--model",
                    "yolact_edge_mobilenetv2",
                    "--weights",
                    weights,
                    "--backend",
                    backend,
                    "--json",
                    str(out),
                    *images,
                ]
            )
            == 0
        )
        dets[backend] = json.loads(out.read_text())
    ref, got = dets["torch"], dets["onnxruntime"]
    assert len(ref) >= 40 and {d["image"] for d in ref} == {os.path.basename(p) for p in images}
    assert all(d["label_name"] in COCO_CLASSES for d in ref)
    # The reviewers' measure: same label, score within 2e-3, box IoU >= 0.9, then mask IoU
    # (two empty masks count as equal).
    recalled, mask_iou = 0, []
    for d in ref:
        match = [
            g
            for g in got
            if g["image"] == d["image"]
            and g["label"] == d["label"]
            and abs(g["score"] - d["score"]) <= 2e-3
            and _box_iou(g["bbox"], d["bbox"]) >= 0.9
        ]
        if match:
            recalled += 1
            mask_iou.append(max(_rle_iou(g["segmentation"], d["segmentation"]) for g in match))
    assert recalled / len(ref) >= 0.95 and np.mean(mask_iou) >= 0.95


def _box_iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 1.0


def _rle_iou(a, b):
    from pycocotools import mask as mask_util

    ra = {"size": a["size"], "counts": a["counts"].encode()}
    rb = {"size": b["size"], "counts": b["counts"].encode()}
    if mask_util.area(ra) == 0 and mask_util.area(rb) == 0:
        return 1.0
    return float(mask_util.iou([ra], [rb], [0])[0, 0])


# ------------------------------------------------------------------ the video path


def test_warping_a_keyframe_onto_itself_with_zero_flow_gives_its_pyramid():
    from segstream.models.yolact.edge import keyframe_features, warped_features

    cfg = small_config("yolact_edge_vid_resnet50", 160)
    net = lively(Yolact(cfg), seed=5)
    with torch.no_grad():
        # Zero flow, scale 1, bias 0, no SPA refinement: warping is the identity.
        for pred in (net.flow_net.pred2, net.flow_net.pred3):
            pred.conv.weight.zero_()
            pred.scale.weight.zero_()
            pred.scale.bias.fill_(1.0)
            pred.bias.weight.zero_()
            pred.bias.bias.zero_()
        for conv in net.spa.refine_convs:
            conv[0].weight.zero_()
            conv[0].bias.zero_()
    x = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    key = keyframe_features(net, x)
    warped = warped_features(net, x, key)
    assert [p.shape for p in warped] == [p.shape for p in key["fpn"]]
    for a, b in zip(warped, key["fpn"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # With its own flow weights the path runs and changes the features, and heads accept them.
    lively(net, seed=6)
    moved = warped_features(net, x, key)
    assert not torch.allclose(moved[1], key["fpn"][1])
    out = net.predict(moved)
    assert out["loc"].shape == net(x)["loc"].shape
    with pytest.raises(ValueError, match="no flow network"):
        warped_features(Yolact(small_config("yolact_edge_resnet50")), x, key)


# ------------------------------------------------------------------ training from ImageNet


def test_torchvision_mobilenetv2_imagenet_file_maps_onto_the_backbone(tmp_path):
    # YolactEdge starts training from torchvision's mobilenet_v2-b0353104.pth (mapped by key order);
    # mapped by structure here, and the network then computes what torchvision's does.
    import torchvision

    from segstream.models.yolact.checkpoint import load_backbone

    tv = torchvision.models.mobilenet_v2(weights=None).eval()
    lively_state = lively(Yolact(small_config("yolact_edge_mobilenetv2", 96)), seed=8).backbone.state_dict()
    with torch.no_grad():  # torchvision's own init leaves BN at identity: use informative values
        for (_k, v), w in zip(tv.features.state_dict().items(), lively_state.values()):
            v.copy_(w)
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(tv.state_dict(), path)
    net = Yolact(get_config("yolact_edge_mobilenetv2")).eval()
    assert load_backbone(net, str(path)) == len(tv.features.state_dict())
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = net.backbone(x)
        for tap, end in ((3, 7), (4, 11), (6, 17), (8, 19)):  # C3, C4, C5 and the last conv
            torch.testing.assert_close(ours[tap], tv.features[:end](x), rtol=0, atol=0)
