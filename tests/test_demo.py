"""`segstream demo` runs on the runtime alone: ONNX Runtime models, numpy scoring, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_demo_generates_runs_and_scores_without_loading_torch(tmp_path):
    code = (
        "import sys\n"
        "from segstream.demo import make_clip, score_clip\n"
        f"clip = make_clip({str(tmp_path / 'clip')!r}, 3, width=320, height=192)\n"
        f"summary = score_clip(clip, {str(tmp_path)!r}, frames=3, live=False, progress=False)\n"
        "print(summary['frames'], [m for m in ('torch', 'torchvision') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["3", "[]"], out.stdout
    acc = json.loads((tmp_path / "accuracy.json").read_text())["accuracy"]
    assert 0 <= acc["miou"] <= 1 and set(acc["mask_ap50"]) == {"person", "car"}
