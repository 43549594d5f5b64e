"""Road-semantics models: torchvision's DeepLabV3/LRASPP/FCN as they are, DeepLabV3+ in the
VainF layout, ``deeplab_tiny``; checkpoint loading, training, evaluation and the CLI commands."""

from models.semantic.deeplabv3plus import DeepLabV3Plus, DeepLabV3PlusConfig
from models.semantic.zoo import SPECS, LoadedModel, LogitsOnly, build_model, load_model, save_checkpoint

__all__ = ["DeepLabV3Plus", "DeepLabV3PlusConfig", "SPECS", "LoadedModel", "LogitsOnly", "build_model", "load_model",
           "save_checkpoint"]
