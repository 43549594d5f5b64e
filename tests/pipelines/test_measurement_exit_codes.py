"""Exit codes of the medical and satellite pipelines, by the table in docs/applications.md: 2 for what you
asked for (options, URI parameters, config keys, the artifact, the kind of source), 1 for data
that cannot be read as it is; one line each, and nothing written before a 2."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import onnx
import pytest

from tests.conftest import ROOT, segstream_cmd
from tests.pipelines.handset_models import threshold_model
from tests.pipelines.scenes import disc_slices


def _model(d, kind: str) -> str:
    names = ("background", "lesion")
    if kind == "semantic":
        return threshold_model(str(d / "m.onnx"), thresholds=(128,), class_names=names)
    if kind == "instances":  # the metadata of an instance model (YOLACT, Mask R-CNN)
        return threshold_model(str(d / "i.onnx"), thresholds=(128,), class_names=names, task="instances")
    if kind == "bare":  # an ONNX file that was not exported by segstream
        path = threshold_model(str(d / "b.onnx"), thresholds=(128,), class_names=names)
        proto = onnx.load(path)
        del proto.metadata_props[:]
        onnx.save(proto, path)
        return path
    return str(d / "missing.onnx")


def _stack(d, dtype=np.uint16):
    if dtype == np.uint8:
        disc_slices(d / "s", radii=(3, 4), dtype=np.uint8, background=10, disc=200)
    else:
        disc_slices(d / "s", radii=(3, 4))
    return d / "s"


def _map(d):
    cv2.imwrite(str(d / "m.png"), np.full((60, 80, 3), 30, np.uint8))
    return d / "m.png"


MEDICAL_OK = "?spacing=1&thickness=1&window=2000,4000"
CASES = [
    # pipeline, source (made in d), model kind, extra args, code, message
    (
        "medical",
        lambda d: f"stack://{_stack(d)}{MEDICAL_OK}",
        "instances",
        [],
        2,
        "holds an 'instances' model (handset); the medical pipeline needs a semantic model",
    ),
    (
        "satellite",
        lambda d: f"tiles://{_map(d)}?gsd=1",
        "instances",
        [],
        2,
        "holds an 'instances' model (handset); the satellite pipeline needs a semantic model",
    ),
    ("medical", lambda d: f"stack://{_stack(d)}{MEDICAL_OK}", "bare", [], 2, "holds no segstream metadata"),
    ("satellite", lambda d: f"tiles://{_map(d)}?gsd=1", "missing", [], 2, "missing.onnx does not exist"),
    (
        "medical",
        lambda d: f"stack://{_stack(d, np.uint8)}?spacing=1&thickness=1&window=40,400",
        "semantic",
        [],
        2,
        "given for 8-bit slices",
    ),
    ("medical", lambda d: f"stack://{_stack(d)}?thickness=1", "semantic", [], 2, "the pixel spacing is unknown"),
    ("satellite", lambda d: f"tiles://{_map(d)}", "semantic", [], 2, "the ground sampling distance is unknown"),
    (
        "satellite",
        lambda d: f"tiles://{_map(d)}?gsd=1&tile=32x32&overlap=32",
        "semantic",
        [],
        2,
        "overlap 32 must be smaller than the tile",
    ),
    ("medical", lambda d: str(_stack(d)), "semantic", [], 2, "the medical pipeline needs a slice stack"),
    ("satellite", lambda d: str(_map(d)), "semantic", [], 2, "the satellite pipeline needs a tiled image"),
    ("medical", lambda d: f"stack://{d}/nowhere{MEDICAL_OK}", "semantic", [], 1, "not a folder"),
    ("satellite", lambda d: f"tiles://{d}/missing.png?gsd=1", "semantic", [], 1, "missing.png: no such image"),
]


@pytest.mark.parametrize(
    "pipeline, source, model, extra, code, message", CASES, ids=[f"{c[0]}-{c[5][:40]}" for c in CASES]
)
def test_exit_code_and_one_line(tmp_path, pipeline, source, model, extra, code, message):
    out = subprocess.run(
        segstream_cmd(
            "run",
            "--pipeline",
            pipeline,
            "--source",
            source(tmp_path),
            "--quiet",
            "--output",
            str(tmp_path / "out" / "r.jsonl"),
            "--set",
            f"{pipeline}.artifact='{_model(tmp_path, model)}'",
            *extra,
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == code, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("segstream: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()  # refused before any output was created
