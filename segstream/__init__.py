"""segstream: real-time video segmentation streamed through a multi-threaded graph.

One import namespace over the rooms at the repository root: ``segstream.stream`` (runtime
graph, frames, sources, sinks, backends), ``segstream.pipelines`` (the numpy task library in
``.tasks``, the applications in ``.apps``), ``segstream.models`` (PyTorch) and
``segstream.export`` (ONNX/TensorRT). This package holds the command line (``segstream.cli``)
and the public API for embedding (``segstream.api``)::

    pipe = segstream.open_pipeline("config.toml", source="clip.mp4", sinks=["out/overlay.mp4"])
    report = pipe.run()
    runner = segstream.load_runner("weights/deeplabv3plus_lite0_camvid.onnx")

The API is imported on first use (PEP 562), so ``import segstream.stream.frame`` loads nothing
else; none of it imports torch.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["__version__", "open_pipeline", "Pipeline", "PipelineReport", "load_runner", "Runner"]

_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them
    from segstream.api import Pipeline, PipelineReport, Runner, load_runner, open_pipeline


def __getattr__(name: str):
    if name in _API:
        from segstream import api

        return getattr(api, name)
    raise AttributeError(f"module 'segstream' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted((set(globals()) - {"TYPE_CHECKING"}) | _API)
