"""One import namespace: every room installs under `segstream.*` and nothing installs bare."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tests.conftest import ROOT

ROOMS = {
    "segstream": "segstream",
    "stream": "segstream.stream",
    "pipelines": "segstream.pipelines",
    "models": "segstream.models",
    "export": "segstream.export",
}


def _setuptools():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_folder_is_listed_under_the_segstream_namespace():
    conf = _setuptools()
    assert {v: k for k, v in conf["package-dir"].items()} == ROOMS
    expected = set()
    for room, name in ROOMS.items():
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, room)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            if "__init__.py" in files:
                rel = os.path.relpath(dirpath, os.path.join(ROOT, room))
                expected.add(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    assert set(conf["packages"]) == expected


def test_no_source_imports_a_bare_room():
    offenders = []
    for folder in list(ROOMS) + ["tests", "bench", "examples"]:
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                if not f.endswith(".py"):
                    continue
                path = os.path.join(dirpath, f)
                for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
                    names = []
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                        names = [node.module]
                    offenders += [
                        f"{os.path.relpath(path, ROOT)}:{node.lineno} imports {n}"
                        for n in names
                        if n.split(".")[0] in ("stream", "pipelines", "models", "export")
                    ]
    assert not offenders, "import these through segstream.*:\n" + "\n".join(offenders)


def test_the_installed_namespace_resolves_outside_the_repository(tmp_path):
    code = (
        "import importlib.util as u, segstream.stream.frame, segstream.pipelines, segstream.export\n"
        "print(u.find_spec('models') is None and u.find_spec('stream') is None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
