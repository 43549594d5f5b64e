"""segstream: real-time video segmentation streamed through a multi-threaded graph.

The rooms are top-level packages: ``stream`` (runtime graph, sources, sinks, backends),
``pipelines`` (task logic on numpy), ``models`` (PyTorch), ``export`` (ONNX/TensorRT).
This package holds only the command line.
"""

__version__ = "0.1.0"
