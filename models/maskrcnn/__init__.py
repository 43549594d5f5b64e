"""Mask R-CNN (He et al., ICCV 2017), the two-stage instance path: torchvision's models as they are.

- ``zoo``: ``maskrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn_v2`` (torchvision builders) and the
  test-sized ``maskrcnn_tiny``; the checkpoint loader; the exported graph (no paste step);
- ``verify``: ONNX Runtime against torch on one frame;
- ``commands``: ``segstream predict | eval | export | verify``.

The runtime side (resize, box scaling, mask pasting) is ``pipelines/tasks/maskrcnn.py``.
"""
