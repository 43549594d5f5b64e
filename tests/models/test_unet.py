import pytest

torch = pytest.importorskip("torch")

from models.unet import UNet, UNetConfig  # noqa: E402


@pytest.mark.parametrize("cfg", [
    UNetConfig(in_channels=3, num_classes=4, depth=3, width=8, norm="batch", upsampling="transpose"),
    UNetConfig(in_channels=1, num_classes=1, depth=2, width=4, norm="group", upsampling="bilinear"),
    UNetConfig(in_channels=3, num_classes=2, depth=4, width=4, norm="none", upsampling="transpose"),
])
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


@pytest.mark.parametrize("bad, message", [
    (dict(depth=0), "depth must be in 1..6"), (dict(norm="layer"), "norm must be"),
    (dict(upsampling="pixelshuffle"), "upsampling must be"),
])
def test_config_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**bad)
