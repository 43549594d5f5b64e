"""Converters from public datasets' own label formats into the formats the trainers read
(numpy, OpenCV and pycocotools only, no torch).

`camvid_instances`: COCO instances (car, person, cyclist) from CamVid's class-id labels.
"""
