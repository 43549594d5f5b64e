"""Semantic models: torchvision's DeepLabV3/LRASPP/FCN as they are, DeepLabV3+ in the VainF
layout, ``deeplab_tiny``, U-Net (``unet*``, models/unet/) and the paper's FCN-32s/16s/8s
(``fcn.py``); checkpoint loading, training, evaluation and the CLI commands.

The demo artifact ``weights/deeplab_tiny_synthetic.onnx`` was made with (about 10 min on 1 core):

    segstream generate --out out/semantic/syn --count 160 --width 384 --height 216 --seed 7
    OMP_NUM_THREADS=1 segstream train --model deeplab_tiny --images out/semantic/syn/images \
        --labels out/semantic/syn/labels --input-size 192x320 --iters 480 --batch-size 8 --lr 0.05 \
        --out out/semantic/deeplab_tiny_synthetic.pth
    segstream export --model deeplab_tiny --weights out/semantic/deeplab_tiny_synthetic.pth \
        --dynamic --input-size 216x384 --out weights/deeplab_tiny_synthetic.onnx
"""

from models.semantic.deeplabv3plus import DeepLabV3Plus, DeepLabV3PlusConfig
from models.semantic.zoo import SPECS, LoadedModel, LogitsOnly, build_model, load_model, save_checkpoint

__all__ = ["DeepLabV3Plus", "DeepLabV3PlusConfig", "SPECS", "LoadedModel", "LogitsOnly", "build_model", "load_model",
           "save_checkpoint"]
