"""YolactEdge (Liu et al., "YolactEdge: Real-time Instance Segmentation on the Edge", ICRA 2021;
haotian-liu/yolact_edge, MIT) as its ``yolact_edge/yolact.py`` lays it out.

On a keyframe (every image model, and every fifth frame of the video models) YolactEdge is
YOLACT: the same backbones, FPN, ProtoNet and shared head, with the FPN stored as two modules so
TensorRT can convert them apart:

- ``fpn_phase_1``: the lateral 1x1 convs and the top-down sums (``lat_layers``, C5 first);
- ``fpn_phase_2``: the 3x3 convs + ReLU (``pred_layers``, P5 first) and the stride-2 convs for
  P6, P7 (``downsample_layers``).

Its checkpoints differ from YOLACT's only in those names (``fpn.lat_layers`` ->
``fpn_phase_1.lat_layers``, every other ``fpn.*`` -> ``fpn_phase_2.*``: the rule its
``load_weights`` applies to YOLACT files), in the MobileNetV2 backbone of the smallest model, and,
for the video models, in the flow network that warps keyframe features to the frames between:

- ``flow_net_pre_convs.convs.0.0``: 3x3 conv 256 -> 64 + LeakyReLU(0.1) on the C3 lateral;
- ``flow_net``: FlowNetMini on the two frames' reduced laterals (concatenated, 128 channels):
  ``conv1..3`` encoder stages (64, 128, 256 channels, strides 1, 2, 2), ``pred1..3`` predicting
  a 2-channel flow and a 256-channel scale and bias per stage, ``upfeat2/3`` and ``upflow2/3``;
- ``spa``: two 3x3 conv + LeakyReLU refinements of the warped P4, P5 with the C3 lateral.

The network class is ``models.yolact.model.Yolact`` (its configuration's ``fpn_split`` and
``flow`` select these modules); the modules' own ``forward`` methods compute the video path
(``warp_features``), which the exported keyframe graph does not use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segstream.models.yolact.config import YolactConfig
from segstream.models.yolact.fpn import fpn_outputs, fpn_top_down


class FPNPhase1(nn.Module):
    """``fpn_phase_1``: lateral 1x1 convs (stored C5 first) and the bilinear top-down sums.

    Args:
        in_channels: channels of C3, C4, C5. features: FPN width (256).
    """

    def __init__(self, in_channels: list[int], features: int = 256) -> None:
        super().__init__()
        self.lat_layers = nn.ModuleList([nn.Conv2d(c, features, 1) for c in reversed(in_channels)])

    def forward(self, convouts: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """[C3, C4, C5] -> ([sum3, sum4, sum5], [lateral3, lateral4, lateral5])."""
        return fpn_top_down(self.lat_layers, convouts)


class FPNPhase2(nn.Module):
    """``fpn_phase_2``: 3x3 conv + ReLU per level (stored P5 first), then P6, P7 by stride-2 convs.

    Args:
        num_levels: levels from phase 1 (3). features: FPN width. num_downsample: extra levels (2).
    """

    def __init__(self, num_levels: int, features: int = 256, num_downsample: int = 2) -> None:
        super().__init__()
        self.pred_layers = nn.ModuleList([nn.Conv2d(features, features, 3, padding=1) for _ in range(num_levels)])
        self.downsample_layers = nn.ModuleList(
            [nn.Conv2d(features, features, 3, padding=1, stride=2) for _ in range(num_downsample)]
        )

    def forward(self, sums: list[torch.Tensor]) -> list[torch.Tensor]:
        """[sum3, sum4, sum5] -> [P3, P4, P5, P6, P7]."""
        return fpn_outputs(self.pred_layers, self.downsample_layers, sums)


def conv_lrelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (bias, padding 1) + LeakyReLU(0.1): YolactEdge's ``conv_lrelu``."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True))


class FlowNetPreConvs(nn.Module):
    """``flow_net_pre_convs``: the C3 lateral reduced to ``reduce`` channels (``convs.0.0``)."""

    def __init__(self, features: int, reduce: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_lrelu(features, reduce))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class FlowPredLayer(nn.Module):
    """One FlowNetMini output stage: ``conv`` (3x3, no bias) -> 2-channel flow, ``scale`` and
    ``bias`` (1x1) -> per-channel multiplicative and additive corrections of the warped features."""

    def __init__(self, cin: int, features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2, 3, padding=1, bias=False)
        self.scale = nn.Conv2d(cin, features, 1)
        self.bias = nn.Conv2d(cin, features, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.conv(x), self.scale(x), self.bias(x)


class FlowNetMini(nn.Module):
    """YolactEdge's ``FlowNetMini`` with its video configuration (``encode_layers [[1], [2], [4]]``):
    each of ``conv1..3`` is two conv + LeakyReLU (the first with the stage's stride 1, 2, 2),
    widths c, 2c, 4c for ``encode_channels`` c; coarse-to-fine heads ``pred3``, ``pred2``
    (``pred1`` exists but inference with P4/P5 warping does not use it).

    Args:
        in_features: channels of the concatenated inputs (2 x reduced lateral = 128).
        encode_channels: c (64). features: FPN width the scale and bias maps have (256).
    """

    def __init__(self, in_features: int, encode_channels: int = 64, features: int = 256) -> None:
        super().__init__()
        c = encode_channels
        self.conv1 = nn.Sequential(conv_lrelu(in_features, c), conv_lrelu(c, c))
        self.conv2 = nn.Sequential(conv_lrelu(c, 2 * c, stride=2), conv_lrelu(2 * c, 2 * c))
        self.conv3 = nn.Sequential(conv_lrelu(2 * c, 4 * c, stride=2), conv_lrelu(4 * c, 4 * c))
        self.pred3 = FlowPredLayer(4 * c, features)
        self.pred2 = FlowPredLayer(4 * c + 2, features)
        self.pred1 = FlowPredLayer(2 * c + 2, features)
        self.upfeat3 = nn.Conv2d(4 * c, 2 * c, 3, padding=1, bias=False)
        self.upflow3 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.upfeat2 = nn.Conv2d(4 * c + 2, c, 3, padding=1, bias=False)
        self.upflow2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)

    def forward(
        self, target: torch.Tensor, source: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(current frame's, keyframe's) reduced laterals (B, r, h3, w3) ->
        [(flow, scale, bias) at P4's size, (flow, scale, bias) at P5's size]."""
        out1 = self.conv1(torch.cat((target, source), 1))
        out2 = self.conv2(out1)
        out3 = self.conv3(out2)
        flow3, scale3, bias3 = self.pred3(out3)
        size2 = out2.shape[-2:]
        up_feat = self.upfeat3(F.interpolate(out3, size=size2, mode="bilinear", align_corners=False))
        up_flow = self.upflow3(F.interpolate(flow3, size=size2, mode="bilinear", align_corners=False))
        flow2, scale2, bias2 = self.pred2(torch.cat((out2, up_feat, up_flow), 1))
        return [(flow2, scale2, bias2), (flow3, scale3, bias3)]


class SPA(nn.Module):
    """``spa``: warped P4 and P5 refined with the current frame's C3 lateral (resized to each):
    ``x + conv_lrelu(cat(x, lateral))`` (``refine_convs.{0,1}``)."""

    def __init__(self, features: int = 256, num_levels: int = 3) -> None:
        super().__init__()
        self.refine_convs = nn.ModuleList([conv_lrelu(2 * features, features) for _ in range(num_levels - 1)])

    def forward(self, lateral: torch.Tensor, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        c3 = lateral
        for refine, x in zip(self.refine_convs, feats):
            # Resized from the previous (already resized) map, as the official loop does.
            c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
            out.append(x + refine(torch.cat((x, c3), 1)))
        return out


def attach_flow_modules(net: nn.Module, cfg: YolactConfig) -> None:
    """Adds the video checkpoints' ``spa``, ``flow_net_pre_convs`` and ``flow_net`` to ``net``."""
    flow = cfg.flow
    if flow.spa:
        net.spa = SPA(cfg.fpn_features, len(cfg.selected_layers))
    net.flow_net_pre_convs = FlowNetPreConvs(cfg.fpn_features, flow.reduce_channels)
    net.flow_net = FlowNetMini(2 * flow.reduce_channels, flow.encode_channels, cfg.fpn_features)


def warp(feat: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """YolactEdge's ``deform_op``: samples ``feat`` (B, C, h, w) at each pixel's position plus
    ``flow / 8`` (B, 2, h, w; in the [-1, 1] grid units of ``grid_sample``, x first), bilinear,
    zeros outside, align_corners=True."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=feat.dtype), torch.arange(w, dtype=feat.dtype), indexing="ij")
    grid = torch.stack([xs * (2 / (w - 1)) - 1, ys * (2 / (h - 1)) - 1], 0)[None].to(feat.device)
    grid = (grid + flow / 8).permute(0, 2, 3, 1)
    return F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


@torch.no_grad()
def keyframe_features(net: nn.Module, x: torch.Tensor) -> dict[str, object]:
    """A keyframe's pyramid and what later frames warp from it.

    Returns:
        {"fpn": [P3..P7], "sums": [sum3, sum4, sum5] (phase-1 outputs), "lateral": C3 lateral}.
    """
    convouts = net.backbone(x)
    sums, laterals = net.fpn_phase_1([convouts[i] for i in net.cfg.selected_layers])
    return {"fpn": net.fpn_phase_2(sums), "sums": sums, "lateral": laterals[0]}


@torch.no_grad()
def warped_features(net: nn.Module, x: torch.Tensor, key: dict[str, object]) -> list[torch.Tensor]:
    """A non-keyframe's pyramid as YolactEdge computes it (``warp_layers 'P4P5'``): only the
    backbone up to C3 runs; the keyframe's phase-1 P4, P5 are warped by the flow between the two
    frames' C3 laterals, scaled and shifted, refined by ``spa``; P3 is recomputed from the warped
    P4 and the current lateral; then ``fpn_phase_2``.

    Returns:
        [P3..P7] for the current frame.
    """
    if getattr(net, "flow_net", None) is None:
        raise ValueError(f"{net.cfg.name} has no flow network; every frame is a keyframe")
    c3_index = net.cfg.selected_layers[0]
    h = x
    for layer_index, layer in enumerate(_backbone_stages(net.backbone)):
        h = layer(h)
        if layer_index == c3_index:
            break
    c3 = h
    lateral = net.fpn_phase_1.lat_layers[-1](c3)
    flows = net.flow_net(net.flow_net_pre_convs(lateral), net.flow_net_pre_convs(key["lateral"]))
    warped = []
    for (flow, scale, bias), feat in zip(flows, key["sums"][1:]):
        warped.append(warp(feat, flow) * scale + bias)
    p3 = F.interpolate(warped[0], size=c3.shape[-2:], mode="bilinear", align_corners=False) + lateral
    if getattr(net, "spa", None) is not None:
        warped = net.spa(lateral, warped)
    return net.fpn_phase_2([p3, *warped])


def _backbone_stages(backbone: nn.Module) -> list[nn.Module]:
    """The backbone as a list of stages whose outputs are its returned layers (ResNet: the stem
    folded into the first)."""
    if hasattr(backbone, "conv1"):
        stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        return [nn.Sequential(stem, backbone.layers[0]), *backbone.layers[1:]]
    return list(backbone.layers)
