"""FCN-32s/16s/8s with transposed-convolution decoding: shapes at odd sizes, the paper's layer
layout and initialisation, training through the semantic family, ONNX export and parity."""

import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.models.semantic.fcn import FCN, FCNConfig, bilinear_kernel  # noqa: E402
from segstream.models.semantic.zoo import LogitsOnly, load_model, save_checkpoint  # noqa: E402
from tests.conftest import ROOT, segstream_cmd  # noqa: E402

SKIP_LAYERS = {
    "32s": (
        {"score_fr", "upscore"},
        {"upscore2", "score_pool4", "upscore16", "upscore_pool4", "score_pool3", "upscore8"},
    ),
    "16s": (
        {"score_fr", "upscore2", "score_pool4", "upscore16"},
        {"upscore", "upscore_pool4", "score_pool3", "upscore8"},
    ),
    "8s": (
        {"score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore8"},
        {"upscore", "upscore16"},
    ),
}


def _randomise_scores(model: FCN) -> FCN:
    """The paper zero-initialises the score layers; random ones make outputs depend on every path."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in ("score_fr", "score_pool4", "score_pool3"):
            if hasattr(model, name):
                getattr(model, name).weight.copy_(torch.randn(getattr(model, name).weight.shape, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize("backbone, sizes", [("vgg16", [(37, 53)]), ("resnet18", [(37, 53), (64, 97), (17, 23)])])
@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_output_is_input_sized_at_odd_sizes(backbone, variant, sizes):
    net = _randomise_scores(FCN(FCNConfig(backbone=backbone, variant=variant, num_classes=5))).eval()
    with torch.no_grad():
        for hw in sizes:
            out = net(torch.randn(1, 3, *hw))["out"]
            assert out.shape == (1, 5, *hw)
            assert float(out.abs().max()) > 0


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_layer_layout_and_initialisation_follow_the_paper(variant):
    loaded = load_model(f"fcn{variant}_resnet18", num_classes=3)
    net = loaded.model
    present, absent = SKIP_LAYERS[variant]
    children = {name for name, _ in net.named_children()}
    assert present <= children and not (absent & children)
    for name in present:
        layer = getattr(net, name)
        if name.startswith("score"):  # zero-initialised 1x1 score layers
            assert layer.kernel_size == (1, 1) and not layer.weight.any() and not layer.bias.any()
        else:  # transposed convs initialised to bilinear; intermediate learned, final fixed
            assert isinstance(layer, torch.nn.ConvTranspose2d) and layer.bias is None
            k = layer.kernel_size[0]
            assert layer.stride[0] * 2 == k and torch.equal(layer.weight, bilinear_kernel(3, k))
            assert layer.weight.requires_grad == (name in ("upscore2", "upscore_pool4"))
    assert net.score_fr.in_channels == 512 and {"layer4.0.conv1.weight"} <= {
        k[len("backbone.") :] for k in net.state_dict()
    }
    assert loaded.spec.classifier_key == "score_fr.weight" and loaded.class_names[0] == "class_0"


def test_vgg16_keeps_the_paper_layout():
    net = FCN(FCNConfig(backbone="vgg16", variant="8s", num_classes=21))
    sd = net.state_dict()
    assert sd["backbone.features.0.weight"].shape == (64, 3, 3, 3) and net.backbone.features[0].padding == (100, 100)
    assert sd["backbone.fc6.weight"].shape == (4096, 512, 7, 7) and sd["backbone.fc7.weight"].shape == (
        4096,
        4096,
        1,
        1,
    )
    assert net.score_pool4.in_channels == 512 and net.score_pool3.in_channels == 256
    assert all(m.ceil_mode for m in net.backbone.features if isinstance(m, torch.nn.MaxPool2d))


def test_bilinear_transposed_convolution_interpolates_a_ramp():
    net = FCN(FCNConfig(backbone="resnet18", variant="32s", num_classes=1))
    ramp = torch.arange(6, dtype=torch.float32).repeat(6, 1)[None, None]  # value = column index
    with torch.no_grad():
        up = net.upscore(ramp)[0, 0]  # x32, padded by 16
    assert up.shape == (192, 192)
    # interior columns rise by 1/32 per pixel: linear interpolation between input pixels
    row = up[96, 32:160]
    assert torch.allclose(row[1:] - row[:-1], torch.full((127,), 1 / 32), atol=1e-5)


def test_training_learns_intermediate_upsampling_and_keeps_the_final_one_fixed(tmp_path):
    from segstream.models.semantic.train import TrainConfig, train
    from tests.models.semantic_data import write_dataset

    images, labels = write_dataset(str(tmp_path / "data"), 8, size_hw=(48, 64))
    ckpt = str(tmp_path / "fcn8s.pth")
    report = train(
        TrainConfig(
            model="fcn8s_resnet18",
            images=images,
            labels=labels,
            out=ckpt,
            input_size_hw=(48, 64),
            iters=12,
            batch_size=4,
            lr=0.01,
            progress=False,
            threads=2,
        )
    )
    assert report.last_loss < report.first_loss
    trained, fresh = load_model("fcn8s_resnet18", ckpt).model, load_model("fcn8s_resnet18").model
    assert torch.equal(trained.upscore8.weight, fresh.upscore8.weight)
    assert not torch.equal(trained.upscore2.weight, fresh.upscore2.weight)
    assert trained.score_pool3.weight.any()


def test_export_and_onnxruntime_parity_at_sizes_other_than_the_trace_size(tmp_path):
    from segstream.export.semantic import check_parity

    model = "fcn8s_resnet18"
    loaded = load_model(model, num_classes=4)
    _randomise_scores(loaded.model)
    ckpt = save_checkpoint(str(tmp_path / "fcn.pth"), loaded)
    out = str(tmp_path / "fcn.onnx")
    res = subprocess.run(
        segstream_cmd(
            "export", "--model", model, "--weights", ckpt, "--dynamic", "--input-size", "64x96", "--out", out
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert os.path.isfile(out)
    module = LogitsOnly(load_model(model, ckpt).model).eval()
    results = check_parity(out, module, [(75, 101), (120, 57)], threads=2)
    for r in results:
        assert r.relative_error <= 1e-4 and r.argmax_agreement >= 0.999, r
    # not all one class: the parity is about real decisions
    with torch.no_grad():
        ref = module(torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 75, 101)).astype(np.float32)))
    assert len(torch.unique(ref.argmax(1))) > 1
