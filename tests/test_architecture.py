"""The runtime (stream/, pipelines/) never imports torch: checked in the source and at run time."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from tests.conftest import ROOT

RUNTIME_ROOMS = ("stream", "pipelines")
FORBIDDEN = ("torch", "torchvision")


def _python_files(room: str):
    for dirpath, _, files in os.walk(os.path.join(ROOT, room)):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(dirpath, f)


def test_runtime_sources_do_not_import_torch():
    offenders = []
    for room in RUNTIME_ROOMS:
        for path in _python_files(room):
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    room = name.split(".")[1] if top == "segstream" and "." in name else top
                    if top in FORBIDDEN or room in ("models", "export"):
                        offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} imports {name}")
    assert not offenders, "runtime imports the build side:\n" + "\n".join(offenders)


def test_importing_every_runtime_module_loads_no_torch():
    modules = []
    for room in RUNTIME_ROOMS:
        for path in _python_files(room):
            rel = "segstream." + os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
            modules.append(rel[:-9] if rel.endswith(".__init__") else rel)
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in ('torch', 'torchvision') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"torch was imported by the runtime: {out.stdout}"
