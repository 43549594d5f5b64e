"""Semantic models: torchvision's DeepLabV3/LRASPP/FCN as they are, DeepLabV3+ in the VainF
layout, ``deeplab_tiny``, U-Net (``unet*``, models/unet/) and the paper's FCN-32s/16s/8s
(``fcn.py``); checkpoint loading, training, evaluation and the CLI commands.

The embedded ``weights/deeplab_tiny_synthetic.{pth,onnx}`` are rebuilt by ``make models`` (the
exact commands are in the Makefile; README, "Embedded models").
"""

import importlib

# Loaded on first use, so importing a torch-free part of this package (``data``, ``metrics``)
# does not pay for torch and the model zoo.
_EXPORTS = {
    "DeepLabV3Plus": "deeplabv3plus",
    "DeepLabV3PlusConfig": "deeplabv3plus",
    "SPECS": "zoo",
    "LoadedModel": "zoo",
    "LogitsOnly": "zoo",
    "build_model": "zoo",
    "load_model": "zoo",
    "save_checkpoint": "zoo",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
