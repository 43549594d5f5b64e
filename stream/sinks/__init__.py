"""Sinks by URI through one factory: ``open_sink(uri)``."""

from segstream.stream.sinks.base import CallbackSink, NullSink, Sink
from segstream.stream.sinks.factory import open_sink
from segstream.stream.sinks.files import ImageFolderSink, JsonlSink, VideoFileSink, frame_record, to_jsonable

__all__ = [
    "Sink",
    "NullSink",
    "CallbackSink",
    "VideoFileSink",
    "ImageFolderSink",
    "JsonlSink",
    "open_sink",
    "frame_record",
    "to_jsonable",
]
