"""Whole JSON documents written at the end of a run (stream/io.py)."""

from __future__ import annotations

import json
import os

import pytest

from segstream.stream.errors import SegstreamError
from segstream.stream.io import write_json


def test_write_json_creates_the_folder_and_writes_indented_json_with_a_final_newline(tmp_path):
    path = tmp_path / "a" / "b" / "metrics.json"
    write_json(str(path), {"frames_out": 3, "latency_ms": {"p50": 1.5}})
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {"frames_out": 3, "latency_ms": {"p50": 1.5}}
    assert text.endswith("}\n") and '\n  "frames_out": 3' in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_write_json_names_the_path_when_it_cannot_write(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(SegstreamError, match=r"ro/m\.json: cannot write \(Permission denied\)"):
            write_json(str(folder / "m.json"), {})
    finally:
        folder.chmod(0o700)


def test_write_json_into_a_path_below_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SegstreamError, match="cannot write"):
        write_json(str(tmp_path / "file" / "m.json"), {})
