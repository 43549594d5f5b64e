"""One output per source: a sink URI with ``{source}`` (``out/{source}.mp4``, ``out/{source}.jsonl``).

Each source gets its own sink, opened on that source's first frame and finalised when the
graph says its last frame has been written (``end_source``), so a camera removed while the
others run leaves a finished, playable file. The source id is made safe for a file name
(``synthetic://64x48`` -> ``synthetic_64x48``); two ids that would give one name get ``-2``,
``-3``, ... . A URI without ``{source}`` is one sink that receives every source's frames
(JSON Lines records say their ``source``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from segstream.stream.errors import ConfigError
from segstream.stream.frame import Frame
from segstream.stream.sinks.base import Sink
from segstream.stream.sinks.factory import open_sink as _open_one

PLACEHOLDER = "{source}"


def safe_name(source_id: str) -> str:
    """A source id as a file name part: runs of anything but letters, digits, ``.``, ``_`` and
    ``-`` become ``_`` (``rtsp://***@cam/1`` -> ``rtsp_cam_1``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", source_id).strip("_.")
    return name or "source"


class PerSourceSink(Sink):
    """Opens one sink per source from a URI template and routes each frame to its source's.

    Args:
        template: a sink URI containing ``{source}``.
        fps: frame rate for video outputs (``make_graph`` sets ``fps`` after construction too).
        make: builds the sink for one concrete URI (default: the sink factory).

    Attributes:
        finalised: source ids whose sink has been finalised, in order.
        paths: source id -> the URI its sink writes.
    """

    def __init__(self, template: str, fps: float | None = None, make: Callable[..., Sink] | None = None) -> None:
        if PLACEHOLDER not in template:
            raise ConfigError(f"{template}: a per-source output needs {PLACEHOLDER} in its URI")
        self.template = template
        self.name = template
        self.fps = fps
        self._make = make or _open_one
        self._sinks: dict[str, Sink] = {}
        self.paths: dict[str, str] = {}
        self.finalised: list[str] = []
        self._check_uri(self._uri_for("check"))  # an unknown output type fails before frames flow

    def _check_uri(self, uri: str) -> None:
        self._make(uri, fps=self.fps)  # construction only validates; nothing is opened or written

    def _uri_for(self, source_id: str) -> str:
        name = safe_name(source_id)
        used = {p for sid, p in self.paths.items() if sid != source_id}
        uri = self.template.replace(PLACEHOLDER, name)
        n = 2
        while uri in used:
            uri = self.template.replace(PLACEHOLDER, f"{name}-{n}")
            n += 1
        return uri

    def write(self, frame: Frame) -> None:
        sink = self._sinks.get(frame.source_id)
        if sink is None:
            uri = self.paths.get(frame.source_id) or self._uri_for(frame.source_id)
            sink = self._make(uri, fps=self.fps)
            sink.open()
            self._sinks[frame.source_id] = sink
            self.paths[frame.source_id] = uri
        sink.write(frame)

    def end_source(self, source_id: str) -> None:
        """Finalises the source's sink (its id may come back later: a new file is then started
        under the same name, replacing it, as a rerun would)."""
        sink = self._sinks.pop(source_id, None)
        if sink is not None:
            sink.close()
            self.finalised.append(source_id)

    def close(self) -> None:
        """Finalises every sink still open; the first failure is raised after all were tried."""
        first: BaseException | None = None
        for source_id in list(self._sinks):
            try:
                self.end_source(source_id)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def stats(self) -> dict:
        return {"outputs": dict(self.paths)}


def open_sink(uri: str, *, fps: float | None = None) -> Sink:
    """The sink factory, plus per-source outputs: a URI with ``{source}`` gives a
    ``PerSourceSink`` (one sink per source), any other URI the one sink it names."""
    if PLACEHOLDER in str(uri):
        return PerSourceSink(str(uri).strip(), fps=fps)
    return _open_one(uri, fps=fps)
