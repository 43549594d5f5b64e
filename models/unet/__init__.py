"""U-Net: a symmetric encoder-decoder with skip connections at every level."""

from segstream.models.unet.model import UNet, UNetConfig

__all__ = ["UNet", "UNetConfig"]
