"""The layers point down only, and the runtime never imports torch.

Layers, lowest first (DESIGN.md, "Layers and names")::

    segstream CLI / public API (segstream/*.py)
      -> applications (segstream.pipelines.apps)
        -> task library (segstream.pipelines.tasks)
          -> stream (segstream.stream)
    models / export (torch side): may use the task library and stream; used only by the CLI/API

Every import is read from the source with ``ast``, including imports inside functions (a lazy
import is still a dependency), and checked against the table ``ALLOWED``. The package root
``segstream`` is the namespace (and the public API): any module may take ``__version__`` from it,
nothing else. The runtime (stream, tasks, apps) is also imported for real to check that no torch
comes with it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass

from tests.conftest import ROOT

RUNTIME_ROOMS = ("stream", "pipelines")
FORBIDDEN = ("torch", "torchvision")

# Folder at the repository root -> the package it installs as (pyproject.toml, package-dir).
ROOMS = {
    "segstream": "segstream",
    "stream": "segstream.stream",
    "pipelines": "segstream.pipelines",
    "models": "segstream.models",
    "export": "segstream.export",
}

# layer -> the layers it may import. "root" is the package `segstream` itself (namespace and public
# API, may import anything); "torch" is torch/torchvision; other third-party imports are not layers.
TORCH_SIDE = {"stream", "tasks", "models", "export", "torch"}
ALLOWED = {
    "stream": {"stream"},
    "tasks": {"stream", "tasks"},
    "apps": {"stream", "tasks", "apps"},
    "models": TORCH_SIDE,
    "export": TORCH_SIDE,
    "cli": {"stream", "tasks", "apps", "models", "export", "torch", "cli", "root"},
    "root": {"stream", "tasks", "apps", "models", "export", "torch", "cli", "root"},
}
ROOT_NAMES_FOR_EVERYONE = {"__version__"}


def _python_files(room: str):
    for dirpath, dirnames, files in os.walk(os.path.join(ROOT, room)):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(dirpath, f)


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    name = ".".join([ROOMS[rel[0]]] + rel[1:])
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _modules() -> dict[str, str]:
    """Module name -> file, for every module of the five rooms."""
    return {_module_name(p): p for room in ROOMS for p in _python_files(room)}


def layer_of(module: str) -> str | None:
    """The layer of a module name, or None for a third-party module that is not torch."""
    parts = module.split(".")
    if parts[0] in FORBIDDEN:
        return "torch"
    if parts[0] != "segstream":
        return None
    if len(parts) == 1:
        return "root"
    if parts[1] == "stream":
        return "stream"
    if parts[1] == "pipelines":
        # The bare package `segstream.pipelines` is the namespace over both layers: rank it with
        # the higher one, so that nothing below the applications imports it whole.
        return "tasks" if parts[2:3] == ["tasks"] else "apps"
    if parts[1] in ("models", "export"):
        return parts[1]
    return "cli"


@dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the repository root
    lineno: int
    source: str  # the importing module
    target: str  # the imported module (for `from m import x`: m.x when that is a module, else m)
    names: tuple[str, ...]  # for `from m import a, b` with m not a package of a, b: ("a", "b")
    module_scope: bool  # executed when the module is imported (not inside a def or a lambda)
    type_checking: bool  # under `if TYPE_CHECKING:`: never executed

    def where(self) -> str:
        return f"{self.path}:{self.lineno}"


def _resolve(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = source.split(".") if is_package else source.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, path: str, modules: dict[str, str]) -> list[Import]:
    """Every import statement of one module, with where it is and whether it runs at import time."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    rel = os.path.relpath(path, ROOT)
    is_package = path.endswith("__init__.py")
    found: list[Import] = []

    def visit(node: ast.AST, module_scope: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(rel, node.lineno, source, alias.name, (), module_scope, type_checking))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(source, is_package, node)
            plain = []
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.append(
                        Import(rel, node.lineno, source, f"{base}.{alias.name}", (), module_scope, type_checking)
                    )
                else:
                    plain.append(alias.name)
            if plain:
                found.append(Import(rel, node.lineno, source, base, tuple(plain), module_scope, type_checking))
        inner_scope = module_scope and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, inner_scope, True)
            for child in node.orelse:
                visit(child, inner_scope, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, inner_scope, type_checking)

    visit(tree, True, False)
    return found


def all_imports() -> list[Import]:
    modules = _modules()
    return [imp for name, path in sorted(modules.items()) for imp in imports_of(name, path, modules)]


def upward_imports(imports: list[Import]) -> list[str]:
    """`file:line [layer] imports target [layer]` for every import its layer may not make."""
    offenders = []
    for imp in imports:
        mine, theirs = layer_of(imp.source), layer_of(imp.target)
        if theirs is None or theirs in ALLOWED[mine]:
            continue
        if theirs == "root" and imp.names and set(imp.names) <= ROOT_NAMES_FOR_EVERYONE:
            continue
        what = f"{imp.target} ({', '.join(imp.names)})" if imp.names else imp.target
        offenders.append(f"{imp.where()} [{mine}] imports {what} [{theirs}]")
    return offenders


def import_cycles(imports: list[Import], *, lazy: bool) -> dict[frozenset[str], str]:
    """Cycles in the graph of imports between segstream modules: the modules of each cycle -> a
    report naming each edge with its file:line.

    Always covers the imports that run when a module is imported: at module level, including
    those inside module-level ``if``/``try``/``with`` blocks and class bodies. ``lazy`` adds the
    imports inside functions (they close a cycle as soon as the function runs). Never covered:
    imports under ``if TYPE_CHECKING:`` (never run) and ``importlib.import_module`` on a string.
    An edge goes to the imported module itself, not to the packages above it. Taking
    ``__version__`` from the root is no edge: the root defines it before it imports anything.
    """
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if not (imp.module_scope or lazy) or imp.type_checking or layer_of(imp.target) in (None, "torch"):
            continue
        if imp.target == imp.source or (
            imp.target == "segstream" and imp.names and set(imp.names) <= ROOT_NAMES_FOR_EVERYONE
        ):
            continue
        edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    reports = {}
    for component in sorted(components):
        inside = set(component)
        lines = [
            f"  {imp.where()} {src} -> {dst}{'' if imp.module_scope else ' (lazy)'}"
            for src in component
            for dst, imp in sorted(edges.get(src, {}).items())
            if dst in inside
        ]
        reports[frozenset(component)] = "cycle between " + ", ".join(component) + ":\n" + "\n".join(lines)
    return reports


def test_every_module_has_a_layer():
    assert {name: layer_of(name) for name in _modules() if layer_of(name) is None} == {}


def test_imports_point_down_only():
    offenders = upward_imports(all_imports())
    assert not offenders, "imports that point up or sideways out of their layer:\n" + "\n".join(offenders)


def test_no_import_cycles_at_module_scope():
    cycles = import_cycles(all_imports(), lazy=False)
    assert not cycles, "\n".join(cycles.values())


# Cycles closed by a lazy import that are known and left for later, each with its reason. An
# entry that no longer exists fails the test below, so the list only shrinks.
KNOWN_LAZY_CYCLES: set[frozenset[str]] = set()


def test_no_import_cycles_with_lazy_imports():
    cycles = import_cycles(all_imports(), lazy=True)
    new = [report for members, report in cycles.items() if members not in KNOWN_LAZY_CYCLES]
    assert not new, "\n".join(new)
    assert set(cycles) == KNOWN_LAZY_CYCLES, "a known cycle is gone: remove it from KNOWN_LAZY_CYCLES"


# The checker itself, on small made-up trees: it must catch what it claims to catch.


def _check(tmp_path, files: dict[str, str]) -> list[Import]:
    modules = {}
    for name, text in files.items():
        path = tmp_path / (name.replace(".", "_") + ".py")
        path.write_text(text)
        modules[name] = str(path)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def test_the_checker_sees_lazy_relative_and_from_imports(tmp_path):
    imports = _check(
        tmp_path,
        {
            "segstream.stream.graph": "def f():\n    from segstream.pipelines.apps import app\n",
            "segstream.pipelines.tasks.masks": "from ..apps.app import run\nimport torch\n",
            "segstream.pipelines.apps.app": "run = 1\n",
            "segstream.models.zoo": "from segstream import __version__\nfrom segstream import cli\n",
            "segstream.cli": "",
            "segstream.export.onnx": "from segstream import __version__, main\n",
        },
    )
    offenders = [o.split(" ", 1)[1] for o in upward_imports(imports)]
    assert offenders == [
        "[stream] imports segstream.pipelines.apps.app [apps]",
        "[tasks] imports segstream.pipelines.apps.app (run) [apps]",
        "[tasks] imports torch [torch]",
        "[models] imports segstream.cli [cli]",
        "[export] imports segstream (__version__, main) [root]",
    ]
    lazy = [imp for imp in imports if imp.source == "segstream.stream.graph"]
    assert [imp.module_scope for imp in lazy] == [False]


def test_the_checker_finds_cycles_at_module_scope_and_through_lazy_imports(tmp_path):
    imports = _check(
        tmp_path,
        {
            "segstream.pipelines.apps.app": "from segstream.pipelines.apps.registry import REGISTRY\n",
            "segstream.pipelines.apps.registry": "from segstream.pipelines.apps import medical\nREGISTRY = {}\n",
            "segstream.pipelines.apps.medical": "if True:\n    from segstream.pipelines.apps.app import write_json\n",
            "segstream.stream.a": "import segstream.stream.b\n",
            "segstream.stream.b": "def f():\n    import segstream.stream.a\n",
            "segstream.stream.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import segstream.stream.d\n",
            "segstream.stream.d": "import segstream.stream.c\n",
            "segstream": "__version__ = '0'\ndef __getattr__(name):\n    from segstream import api\n",
            "segstream.api": "from segstream.export import onnx\n",
            "segstream.export.onnx": "def f():\n    from segstream import __version__\n",
        },
    )
    cycles = list(import_cycles(imports, lazy=False).values())
    assert len(cycles) == 1
    assert cycles[0].startswith(
        "cycle between segstream.pipelines.apps.app, segstream.pipelines.apps.medical, "
        "segstream.pipelines.apps.registry:"
    )
    assert "segstream_pipelines_apps_medical.py:2 segstream.pipelines.apps.medical -> " in cycles[0]
    with_lazy = list(import_cycles(imports, lazy=True).values())
    assert len(with_lazy) == 2 and with_lazy[0] == cycles[0]
    assert with_lazy[1].startswith("cycle between segstream.stream.a, segstream.stream.b:")
    assert "segstream_stream_b.py:2 segstream.stream.b -> segstream.stream.a (lazy)" in with_lazy[1]


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
