"""YOLACT (Bolya et al., ICCV 2019) as the official implementation computes it, on torch.

- ``config``: configurations by model name (yolact_base, _resnet50, _darknet53, _im700, the edge
  ``yolact_mobilenetv3``, the small ``yolact_tiny``, and YolactEdge's ``yolact_edge*``);
- ``backbone``, ``model``: the network with the official state-dict layout; ``edge``: YolactEdge's
  split FPN, its flow network and the video (warping) path;
- ``checkpoint``: loading the released ``.pth`` files and our own; ``detect``: torch reference of
  Fast NMS and mask assembly; ``loss``, ``data``, ``train``: training (COCO AP: ``models.coco_eval``);
- ``runtime``: a torch ``Backend`` so the numpy runtime (``pipelines/tasks/yolact.py``) serves both;
- ``commands``: ``segstream predict | eval | train | export | verify``.
"""
