"""Sources by URI through one factory: ``open_source(uri)``."""

from segstream.stream.sources.base import ImageConverter, Source, SourceItem, redact, redact_url
from segstream.stream.sources.factory import open_source

__all__ = ["Source", "SourceItem", "ImageConverter", "open_source", "redact", "redact_url"]
