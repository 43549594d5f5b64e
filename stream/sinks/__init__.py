"""Sinks by URI through one factory: ``open_sink(uri)``; ``{source}`` in a URI opens one sink per source."""

from segstream.stream.sinks.base import CallbackSink, NullSink, Sink
from segstream.stream.sinks.files import ImageFolderSink, JsonlSink, VideoFileSink, frame_record, to_jsonable
from segstream.stream.sinks.per_source import PerSourceSink, open_sink

__all__ = [
    "Sink",
    "NullSink",
    "CallbackSink",
    "VideoFileSink",
    "ImageFolderSink",
    "JsonlSink",
    "PerSourceSink",
    "open_sink",
    "frame_record",
    "to_jsonable",
]
