"""The YOLACT network as the official ``yolact.py`` computes it: backbone -> FPN (P3..P7) ->
ProtoNet on P3 and one shared prediction head on every level (+ the training-only semantic head).
YolactEdge's keyframe network is the same with the FPN split in two (``models/yolact/edge.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segstream.models.yolact.backbone import build_backbone
from segstream.models.yolact.config import YolactConfig
from segstream.models.yolact.fpn import FPN, fpn_outputs, fpn_top_down  # noqa: F401 (re-exported)
from segstream.pipelines.tasks.yolact import make_priors


class Interpolate(nn.Module):
    """Bilinear upsampling by a fixed factor inside ``proto_net`` (no parameters, index 6)."""

    def __init__(self, scale_factor: float) -> None:
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)


def make_proto_net(in_channels: int, hidden: int, mask_dim: int) -> nn.Sequential:
    """The official ``mask_proto_net`` with its index layout: convs at 0, 2, 4, 8, 10, ReLUs
    between, a x2 bilinear upsample at 6 followed by a ReLU at 7, no ReLU after the last conv."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.ReLU(inplace=True),
        Interpolate(2),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, mask_dim, 1),
    )


class PredictionModule(nn.Module):
    """The shared head: ``upfeature`` (3x3 conv + ReLU), then parallel 3x3 convs for boxes
    (A*4), classes (A*(C+1)) and mask coefficients (A*K, tanh). Outputs are flattened in
    (row, column, anchor) order to match the priors."""

    def __init__(self, in_channels: int, head_channels: int, num_anchors: int, num_classes: int, mask_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.mask_dim = mask_dim
        self.upfeature = nn.Sequential(nn.Conv2d(in_channels, head_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(head_channels, num_anchors * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(head_channels, num_anchors * num_classes, 3, padding=1)
        self.mask_layer = nn.Conv2d(head_channels, num_anchors * mask_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, h, w) -> loc (B, h*w*A, 4), conf logits (B, h*w*A, C+1), coeffs (B, h*w*A, K)."""
        b = x.shape[0]
        x = self.upfeature(x)
        loc = self.bbox_layer(x).permute(0, 2, 3, 1).reshape(b, -1, 4)
        conf = self.conf_layer(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
        coeff = torch.tanh(self.mask_layer(x).permute(0, 2, 3, 1).reshape(b, -1, self.mask_dim))
        return loc, conf, coeff


class Yolact(nn.Module):
    """YOLACT. ``forward`` returns a dict:

    - ``loc`` (B, P, 4) box regressions; ``conf`` (B, P, C+1) logits in training, softmax in eval;
    - ``mask`` (B, P, K) tanh coefficients; ``proto`` (B, Hp, Wp, K) ReLU prototypes (NHWC);
    - ``priors`` (P, 4) centre-size anchors for this input size;
    - ``segm`` (B, C, h3, w3) semantic logits on P3, training only.
    """

    def __init__(self, cfg: YolactConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone, cfg.tiny_widths)
        in_ch = [self.backbone.channels[i] for i in cfg.selected_layers]
        if cfg.fpn_split:
            from segstream.models.yolact.edge import FPNPhase1, FPNPhase2, attach_flow_modules

            # YolactEdge: the same FPN stored in two modules, registered in its order (ProtoNet,
            # the two phases, the flow modules) so state dicts list their keys as its files do.
            self.proto_net = make_proto_net(cfg.fpn_features, cfg.proto_channels, cfg.mask_dim)
            self.fpn_phase_1 = FPNPhase1(in_ch, cfg.fpn_features)
            self.fpn_phase_2 = FPNPhase2(len(in_ch), cfg.fpn_features, cfg.num_downsample)
            if cfg.flow is not None:
                attach_flow_modules(self, cfg)
        else:
            self.fpn = FPN(in_ch, cfg.fpn_features, cfg.num_downsample)
            self.proto_net = make_proto_net(cfg.fpn_features, cfg.proto_channels, cfg.mask_dim)
        # One set of weights shared by all levels (the official modules 1-4 only point to it).
        self.prediction_layers = nn.ModuleList(
            [PredictionModule(cfg.fpn_features, cfg.head_channels, cfg.num_anchors, cfg.num_classes, cfg.mask_dim)]
        )
        self.semantic_seg_conv = nn.Conv2d(cfg.fpn_features, cfg.num_classes - 1, 1)
        self._priors: dict[tuple, torch.Tensor] = {}
        self.init_weights()
        if cfg.proto_skip_layer >= 0:
            # Not in the published model: starts at zero, so a checkpoint without it loads unchanged.
            self.proto_skip = nn.Conv2d(self.backbone.channels[cfg.proto_skip_layer], cfg.mask_dim, 3, padding=1)
            nn.init.zeros_(self.proto_skip.weight)
            nn.init.zeros_(self.proto_skip.bias)

    def init_weights(self) -> None:
        """Official initialisation: xavier-uniform convs and zero biases outside the backbone."""
        for name, m in self.named_modules():
            if name.startswith("backbone") or not isinstance(m, nn.Conv2d):
                continue
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def freeze_bn(self, freeze: bool = True) -> None:
        """Keep backbone BatchNorm in eval mode with frozen affine terms (official ``freeze_bn``,
        used when the per-device batch is below 6)."""
        for m in self.backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train(not freeze)
                m.weight.requires_grad_(not freeze)
                m.bias.requires_grad_(not freeze)

    def priors_for(self, level_sizes: list[tuple[int, int]], device) -> torch.Tensor:
        key = (tuple(level_sizes), str(device))
        if key not in self._priors:
            cfg = self.cfg
            pri = make_priors(
                list(level_sizes),
                [[s] for s in cfg.pred_scales],
                [list(cfg.aspect_ratios)] * len(level_sizes),
                cfg.max_size,
                cfg.square_anchors,
            )
            self._priors[key] = torch.from_numpy(pri).to(device)
        return self._priors[key]

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(FPN outputs P3.., backbone outputs)."""
        convouts = self.backbone(x)
        selected = [convouts[i] for i in self.cfg.selected_layers]
        if self.cfg.fpn_split:
            return self.fpn_phase_2(self.fpn_phase_1(selected)[0]), convouts
        return self.fpn(selected), convouts

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: x: (B, 3, S, S) normalised image in the configuration's colour order."""
        outs, convouts = self.features(x)
        return self.predict(outs, convouts)

    def predict(self, outs: list[torch.Tensor], convouts: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The prototypes and head outputs of an FPN pyramid [P3..P7] (``forward``'s dict);
        ``convouts`` (the backbone outputs) only matter with ``proto_skip_layer``."""
        proto = self.proto_net(outs[0])
        if self.cfg.proto_skip_layer >= 0:
            skip = self.proto_skip(convouts[self.cfg.proto_skip_layer])
            if skip.shape[2:] != proto.shape[2:]:
                skip = F.interpolate(skip, proto.shape[2:], mode="bilinear", align_corners=False)
            proto = proto + skip
        proto = F.relu(proto).permute(0, 2, 3, 1).contiguous()
        head = self.prediction_layers[0]
        locs, confs, masks = [], [], []
        for p in outs:
            loc, conf, coeff = head(p)
            locs.append(loc)
            confs.append(conf)
            masks.append(coeff)
        sizes = [(int(p.shape[2]), int(p.shape[3])) for p in outs]
        result = {
            "loc": torch.cat(locs, 1),
            "conf": torch.cat(confs, 1),
            "mask": torch.cat(masks, 1),
            "proto": proto,
            "priors": self.priors_for(sizes, outs[0].device),
        }
        if self.training:
            result["segm"] = self.semantic_seg_conv(outs[0])
        else:
            result["conf"] = F.softmax(result["conf"], -1)
        return result


class YolactExportWrapper(nn.Module):
    """The graph that is exported: image -> (boxes, scores, coeffs, protos), with the priors of
    the fixed input size baked in as a constant and boxes decoded (variances 0.1, 0.2).

    Outputs: boxes (1, P, 4) normalised x1 y1 x2 y2; scores (1, P, C+1) softmax;
    coeffs (1, P, K) tanh; protos (1, Hp, Wp, K).
    """

    def __init__(self, net: Yolact) -> None:
        super().__init__()
        self.net = net.eval()
        s = net.cfg.max_size
        with torch.no_grad():
            pri = net(torch.zeros(1, 3, s, s))["priors"]
        self.register_buffer("priors", pri.clone(), persistent=False)

    def forward(self, image: torch.Tensor):
        out = self.net(image)
        loc, pri = out["loc"], self.priors
        cxcy = pri[:, :2] + loc[..., :2] * 0.1 * pri[:, 2:]
        wh = pri[:, 2:] * torch.exp(loc[..., 2:] * 0.2)
        x1y1 = cxcy - wh / 2
        boxes = torch.cat([x1y1, x1y1 + wh], -1)
        return boxes, out["conf"], out["mask"], out["proto"]


def build_yolact(cfg: YolactConfig) -> Yolact:
    """A randomly initialised network for a configuration (eval mode)."""
    return Yolact(cfg).eval()
