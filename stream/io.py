"""Whole documents written once at the end of a run (the metrics JSON, a pipeline's summary), as
opposed to the sinks, which write frame by frame."""

from __future__ import annotations

import json
import os

from segstream.stream.errors import SegstreamError


def write_json(path: str, doc: dict) -> None:
    """Writes ``doc`` as indented JSON with a final newline, creating the folder it goes into.

    Raises:
        SegstreamError: the folder cannot be created or the file cannot be written.
    """
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
    except OSError as exc:
        raise SegstreamError(f"{path}: cannot write ({exc.strerror})") from None
