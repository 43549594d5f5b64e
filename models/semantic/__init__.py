"""Semantic models: torchvision's DeepLabV3/LRASPP/FCN as they are, DeepLabV3+ in the VainF
layout, ``deeplab_tiny``, U-Net (``unet*``, models/unet/) and the paper's FCN-32s/16s/8s
(``fcn.py``); checkpoint loading, training, evaluation and the CLI commands.

The embedded ``weights/deeplab_tiny_synthetic.{pth,onnx}`` are rebuilt by ``make models`` (the
exact commands are in the Makefile; README, "Embedded models").
"""

from segstream.models.semantic.deeplabv3plus import DeepLabV3Plus, DeepLabV3PlusConfig
from segstream.models.semantic.zoo import SPECS, LoadedModel, LogitsOnly, build_model, load_model, save_checkpoint

__all__ = ["DeepLabV3Plus", "DeepLabV3PlusConfig", "SPECS", "LoadedModel", "LogitsOnly", "build_model", "load_model",
           "save_checkpoint"]
