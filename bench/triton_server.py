"""A real, local Triton server for the Triton backend's tests and benchmark (CPU, loopback only).

    .venv/bin/python bench/triton_server.py setup                 # create the server's environment
    .venv/bin/python bench/triton_server.py serve weights/*.onnx  # serve models until Ctrl-C

The only Triton server that installs on these machines is the one inside the ``nvidia-pytriton``
wheel (0.7.0: tritonserver 2.51). It has the Python backend only (no ONNX Runtime backend) and
runs on the CPU. So each artifact is served by a Python-backend model whose ``model.py`` runs
the ONNX file with ONNX Runtime; the repository is written by ``write_triton_repo(...,
platform="python")``: the same layout and ``segstream_metadata`` parameter as for the real
ONNX Runtime platform, with ``backend: "python"``.

What the wheel holds and how it is started (found by installing it; pytriton's own
``pytriton/triton.py`` and ``pytriton/server/triton_server.py`` do the same):

- ``site-packages/pytriton/tritonserver/bin/tritonserver``: the server binary. Its libraries
  are bundled in ``site-packages/nvidia_pytriton.libs`` and found through its RPATH.
- ``site-packages/pytriton/tritonserver/backends/python/``: ``libtriton_python.so`` and
  ``triton_python_backend_utils.py``, but no stub. The stub for each Python version is in
  ``python_backend_stubs/<major.minor>/triton_python_backend_stub``; the backend looks for it
  next to ``libtriton_python.so``. So a backend directory is assembled (copied) in
  ``<env>/segstream-backends/python`` and given as ``--backend-directory``.
- The stub embeds the system libpython: ``LD_LIBRARY_PATH`` must hold the interpreter's
  library folder (``sysconfig`` ``LIBDIR``) and, since the stub links the wheel's bundled
  ``libcudart`` without an RPATH to it, ``site-packages/nvidia_pytriton.libs`` too (without it
  the model never loads and the server waits forever: ``error while loading shared libraries``). It ignores ``PYTHONPATH``; it finds its packages
  through the ``python3`` first on ``PATH`` (the environment's ``bin/`` goes first), and the
  generated ``model.py`` also puts the environment's site-packages on ``sys.path``.
- numpy 2 in the stub's environment gave empty outputs: the environment pins ``numpy<2``, so it
  is separate from the project's venv (``$SEGSTREAM_TRITON_ENV``, default ``.triton-venv``).
- Ports: Triton's defaults are HTTP 8000, gRPC 8001, metrics 8002. Here HTTP and metrics are
  off, gRPC binds 127.0.0.1 on a free port chosen at start (``TritonServer.grpc_port``).
- Python-backend requests pass through shared memory (``/dev/shm``), about 1 MB per region to
  start, grown as needed.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from segstream.export.triton_repo import write_triton_repo  # noqa: E402
from segstream.stream.errors import BackendError  # noqa: E402

#: What the server's environment holds. numpy < 2: the Python backend stub returned empty outputs with 2.x.
TRITON_ENV_REQUIREMENTS = ("nvidia-pytriton==0.7.0", "numpy<2", "onnxruntime>=1.17")
_STAMP = ".segstream-triton-env"

MODEL_PY = '''"""Triton Python-backend model: runs the ONNX file beside it with ONNX Runtime (written by segstream)."""

import json
import os
import sys

# The backend stub ignores PYTHONPATH: put the server environment's packages first.
SITE_PACKAGES = {site!r}
if SITE_PACKAGES not in sys.path:
    sys.path.insert(0, SITE_PACKAGES)

import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = {threads}
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feeds = {{n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.input_names}}
                values = self.session.run(self.output_names, feeds)
                tensors = [pb_utils.Tensor(n, v) for n, v in zip(self.output_names, values)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # one bad request must not take the model down: answer it with the error
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{{type(exc).__name__}}: {{exc}}")))
        return responses
'''


def env_dir() -> str:
    """The server's environment: ``$SEGSTREAM_TRITON_ENV`` or ``<repo>/.triton-venv``."""
    return os.environ.get("SEGSTREAM_TRITON_ENV") or os.path.join(ROOT, ".triton-venv")


def _env_python(env: str) -> str:
    return os.path.join(env, "bin", "python")


def env_ready(env: str | None = None) -> bool:
    """True when ``setup`` finished in ``env`` (its stamp names the same requirements)."""
    env = env or env_dir()
    stamp = os.path.join(env, _STAMP)
    if not os.path.isfile(stamp) or not os.path.isfile(_env_python(env)):
        return False
    with open(stamp, encoding="utf-8") as fh:
        return fh.read().split() == list(TRITON_ENV_REQUIREMENTS)


def ensure_env(env: str | None = None, *, quiet: bool = True) -> str:
    """Creates the server's venv with pip (PyPI) unless it is ready; returns its folder.

    The venv is made from this interpreter's base Python, so the backend stub (one per Python
    version in the wheel) matches the libpython it embeds. Takes about 2 minutes the first time.
    """
    env = env or env_dir()
    if env_ready(env):
        return env
    base = getattr(sys, "_base_executable", sys.executable)
    if not os.path.isfile(_env_python(env)):
        subprocess.run([base, "-m", "venv", env], check=True)
    cmd = [_env_python(env), "-m", "pip", "install", *(["-q"] if quiet else []), *TRITON_ENV_REQUIREMENTS]
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise BackendError(
            f"installing the Triton server environment failed ({' '.join(cmd)} exited {done.returncode})"
        )
    with open(os.path.join(env, _STAMP), "w", encoding="utf-8") as fh:
        fh.write("\n".join(TRITON_ENV_REQUIREMENTS) + "\n")
    return env


class ServerLayout:
    """Where the pieces of the bundled server are in an environment (see the module docstring).

    Attributes:
        binary: the tritonserver executable.
        backends: the assembled backend directory (``python/`` with the stub beside the library).
        site_packages: the environment's site-packages (for ``model.py``'s ``sys.path``).
        libdir: the interpreter's library folder (for ``LD_LIBRARY_PATH``).
        bin_dir: the environment's ``bin/`` (first on ``PATH``).
    """

    def __init__(self, env: str) -> None:
        probe = subprocess.run(
            [
                _env_python(env),
                "-c",
                "import sys, sysconfig; print(sysconfig.get_paths()['purelib']); print(sysconfig.get_config_var('LIBDIR')); "
                "print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        self.site_packages, self.libdir, version = probe.stdout.split()
        dist = os.path.join(self.site_packages, "pytriton", "tritonserver")
        self.binary = os.path.join(dist, "bin", "tritonserver")
        stub = os.path.join(dist, "python_backend_stubs", version, "triton_python_backend_stub")
        for need in (self.binary, stub):
            if not os.path.isfile(need):
                raise BackendError(
                    f"{need} is missing: the Triton environment {env} is incomplete; delete it and run "
                    "'.venv/bin/python bench/triton_server.py setup'"
                )
        self.bin_dir = os.path.join(env, "bin")
        self.bundled_libs = os.path.join(self.site_packages, "nvidia_pytriton.libs")
        self.backends = os.path.join(env, "segstream-backends")
        python_dir = os.path.join(self.backends, "python")
        if not os.path.isfile(os.path.join(python_dir, "triton_python_backend_stub")):
            shutil.copytree(
                os.path.join(dist, "backends", "python"),
                python_dir,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            shutil.copy2(stub, os.path.join(python_dir, "triton_python_backend_stub"))

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        # libpython for the stub, and the wheel's bundled libraries (libcudart...) that the stub,
        # unlike the server binary, does not find through an RPATH.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (self.libdir, self.bundled_libs, env.get("LD_LIBRARY_PATH", "")) if p
        )
        env["PATH"] = os.pathsep.join((self.bin_dir, env.get("PATH", "")))
        env.pop("PYTHONHOME", None)
        return env


def write_python_model_repo(
    repo_dir: str, artifacts: dict[str, str], *, env: str | None = None, threads: int = 1, max_queue_delay_us: int = 100
) -> str:
    """A model repository serving each ONNX artifact through the Python backend.

    Args:
        repo_dir: folder to write (models in it are replaced).
        artifacts: model name -> .onnx path.
        env: the server environment (its site-packages go into ``model.py``).
        threads: ONNX Runtime intra-op threads inside the server.
    """
    layout = ServerLayout(env or env_dir())
    for name, path in artifacts.items():
        model_dir = write_triton_repo(path, repo_dir, name, platform="python", max_queue_delay_us=max_queue_delay_us)
        with open(os.path.join(model_dir, "1", "model.py"), "w", encoding="utf-8") as fh:
            fh.write(MODEL_PY.format(site=layout.site_packages, threads=int(threads)))
    return repo_dir


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux
    ``PR_SET_PDEATHSIG``), so a killed test run leaves no server behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass  # not glibc Linux: stop() and the context manager still stop it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """tritonserver from the bundled wheel on 127.0.0.1 (gRPC only), as a child process.

    Use as a context manager, or ``start()`` / ``stop()``. ``url`` is ``127.0.0.1:<port>``.
    The server also gets SIGTERM when the thread that started it ends (``PR_SET_PDEATHSIG``):
    start it from the main thread, or from a thread that outlives it.

    Args:
        model_repo: the repository to serve (all models in it are loaded at start).
        env: the server environment (``ensure_env``).
        log_path: the server's stdout and stderr (default ``<model_repo>/../tritonserver.log``).
    """

    def __init__(self, model_repo: str, env: str | None = None, log_path: str | None = None) -> None:
        self.model_repo = os.path.abspath(model_repo)
        self.layout = ServerLayout(env or env_dir())
        self.log_path = log_path or os.path.join(os.path.dirname(self.model_repo), "tritonserver.log")
        self.grpc_port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        return [
            self.layout.binary,
            f"--model-repository={self.model_repo}",
            f"--backend-directory={self.layout.backends}",
            "--allow-http=false",
            "--allow-metrics=false",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=false",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--model-control-mode=none",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--pinned-memory-pool-byte-size=0",
            "--log-verbose=0",
        ]

    def start(self, timeout_s: float = 120.0) -> TritonServer:
        """Starts the server and waits until every model is ready (gRPC ``ServerReady``)."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        self.grpc_port = free_port()
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.layout.environ(),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        client = grpcclient.InferenceServerClient(self.url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    raise BackendError(
                        f"tritonserver exited with code {self.process.returncode} while starting: {self.log_tail()}"
                    )
                if "error while loading shared libraries" in self.log_tail():
                    # A stub that cannot start leaves its model loading forever: fail now.
                    self.stop()
                    raise BackendError(f"the Python backend stub cannot start: {self.log_tail()}")
                try:
                    if client.is_server_ready(client_timeout=1.0):
                        return self
                except InferenceServerException:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise BackendError(f"tritonserver not ready after {timeout_s:.0f} s: {self.log_tail()}")
                time.sleep(0.2)
        finally:
            client.close()

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return " | ".join(line.strip() for line in fh.readlines()[-lines:] if line.strip())
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL after ``timeout_s``). Safe to call twice."""
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create the server environment ($SEGSTREAM_TRITON_ENV or .triton-venv)")
    serve = sub.add_parser("serve", help="serve ONNX artifacts (model name = file name) until Ctrl-C")
    serve.add_argument("artifacts", nargs="+")
    serve.add_argument("--repo", default=os.path.join(ROOT, "out", "triton-repo"))
    serve.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    env = ensure_env(quiet=False)
    if a.command == "setup":
        print(f"Triton server environment ready: {env}")
        return
    models = {os.path.splitext(os.path.basename(p))[0]: p for p in a.artifacts}
    write_python_model_repo(a.repo, models, env=env, threads=a.threads)
    with TritonServer(a.repo, env) as server:
        print(
            f"serving {', '.join(f'triton://{server.url}/{m}' for m in models)} (log {server.log_path}); Ctrl-C stops"
        )
        try:
            server.process.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
