"""YOLACT (Bolya et al., ICCV 2019) as the official implementation computes it, on torch.

- ``config``: configurations by model name (yolact_base, _resnet50, _darknet53, _im700, the edge
  ``yolact_mobilenetv3`` and the small ``yolact_tiny``);
- ``backbone``, ``model``: the network with the official state-dict layout;
- ``checkpoint``: loading the released ``.pth`` files and our own; ``detect``: torch reference of
  Fast NMS and mask assembly; ``loss``, ``data``, ``train``, ``evaluate``: training and COCO AP;
- ``runtime``: a torch ``Backend`` so the numpy runtime (``pipelines/yolact.py``) serves both;
- ``commands``: ``segstream predict | eval | train | export | verify``.
"""
