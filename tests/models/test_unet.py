import pytest

torch = pytest.importorskip("torch")

from segstream.models.unet import UNet, UNetConfig  # noqa: E402


@pytest.mark.parametrize(
    "cfg",
    [
        UNetConfig(in_channels=3, num_classes=4, depth=3, width=8, norm="batch", upsampling="transpose"),
        UNetConfig(in_channels=1, num_classes=1, depth=2, width=4, norm="group", upsampling="bilinear"),
        UNetConfig(in_channels=3, num_classes=2, depth=4, width=4, norm="none", upsampling="transpose"),
    ],
)
@pytest.mark.parametrize("size", [(64, 64), (37, 53)])
def test_output_shape_for_any_input_size(cfg, size):
    net = UNet(cfg).eval()
    with torch.no_grad():
        y = net(torch.randn(2, cfg.in_channels, *size))
    assert y.shape == (2, cfg.num_classes, *size)


def test_skip_connections_at_every_level():
    net = UNet(UNetConfig(depth=3, width=8))
    assert len(net.down) == len(net.up) == 3
    # each decoder block concatenates its skip: input channels = upsampled + skip
    assert [b.conv[0].in_channels for b in net.up] == [32 + 32, 16 + 16, 8 + 8]


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(depth=0), "depth must be in 1..6"),
        (dict(norm="layer"), "norm must be"),
        (dict(upsampling="pixelshuffle"), "upsampling must be"),
    ],
)
def test_config_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**bad)


def test_predict_of_a_binary_model_prints_no_drivable_share(tmp_path, capsys):
    """A two-class model has no road class: predict says nothing of a drivable area."""

    import cv2
    import numpy as np

    from segstream.models.options import PredictOptions
    from segstream.models.semantic.commands import predict

    path = str(tmp_path / "slice.png")
    cv2.imwrite(path, np.full((32, 32, 3), 90, np.uint8))
    predict(
        PredictOptions(
            model="unet_tiny_binary",
            weights=None,
            backend="torch",
            mask_dir=str(tmp_path / "m"),
            overlay=None,
            images=(path,),
        )
    )
    out = capsys.readouterr().out
    assert "slice.png: 32x32" in out and "drivable" not in out
