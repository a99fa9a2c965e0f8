"""The compute path on this machine: Metal on a Mac; on a Linux CPU, OpenBLAS when present.

MLX's Linux CPU wheel ships the reference BLAS (about 8 GFLOP/s float32 matmul on our 2-core
machines); the system OpenBLAS (Debian: libopenblas0-pthread) interposed with LD_PRELOAD gives
about 250 GFLOP/s on the same machine, and the OpenBLAS of the `cmeel-openblas` wheel (a pip
dependency on Linux, so a fresh machine has it) about 45 (`python bench/matmul.py`). A shared library
can only be preloaded before the process starts, so the CLI re-executes itself once with
LD_PRELOAD set. Nothing changes on macOS, and DERTA_MLX_BLAS=reference turns it off.
"""

import ctypes.util
import os
import sys
from pathlib import Path
from typing import Optional

_MARK = "DERTA_MLX_BLAS_CHECKED"
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
)


def _pypi_openblas() -> Optional[str]:
    """The OpenBLAS of the `cmeel-openblas` wheel (a Linux dependency), located without import."""
    from importlib import metadata

    try:
        dist = metadata.distribution("cmeel-openblas")
    except metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file("cmeel.prefix/lib/libopenblas.so.0"))
    return str(path) if path.exists() else None


def _loads(library: str) -> bool:
    """Whether the dynamic loader can load `library` with its dependencies. The cmeel wheel's
    OpenBLAS needs the system libgfortran.so.5, which a fresh machine may lack; preloading a
    library that cannot load would make every later process fail to start."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def find_openblas() -> Optional[str]:
    """The system OpenBLAS (fastest: runtime CPU dispatch), else the one from PyPI; only one
    that actually loads here."""
    candidates = [c for c in _CANDIDATES if Path(c).exists()]
    name = ctypes.util.find_library("openblas")
    if name and Path(name).is_absolute():
        candidates.append(name)
    candidates.append(_pypi_openblas())
    return next((c for c in candidates if c and _loads(c)), None)


def openblas_preloaded() -> bool:
    return "openblas" in os.environ.get("LD_PRELOAD", "")


def reexec_with_openblas(script: Optional[str] = None) -> None:
    """On Linux, restart this process once with OpenBLAS preloaded when it is installed.

    It restarts `python -m derta_mlx` (the CLI) with the same arguments, or `python SCRIPT`
    for a benchmark script."""
    if not sys.platform.startswith("linux") or os.environ.get(_MARK):
        return
    if os.environ.get("DERTA_MLX_BLAS", "").lower() == "reference" or openblas_preloaded():
        return
    library = find_openblas()
    if library is None:
        return
    env = dict(os.environ)
    env[_MARK] = "1"
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    command = [str(Path(script).resolve())] if script else ["-m", "derta_mlx"]
    os.execve(sys.executable, [sys.executable, *command, *sys.argv[1:]], env)


def describe() -> str:
    """One line for start-up: which device and which BLAS computes."""
    import mlx.core as mx

    device = mx.default_device()
    if device == mx.gpu:
        return "device: GPU (Metal)" if sys.platform == "darwin" else "device: GPU"
    if not sys.platform.startswith("linux"):
        return "device: CPU"
    if openblas_preloaded():
        library = next(p for p in os.environ["LD_PRELOAD"].split(":") if "openblas" in p)
        return f"device: CPU, BLAS: OpenBLAS ({library}, preloaded)"
    hint = "install libopenblas0-pthread for ~30x faster float32 matmul"
    if os.environ.get("DERTA_MLX_BLAS", "").lower() == "reference":
        hint = "DERTA_MLX_BLAS=reference"
    return f"device: CPU, BLAS: MLX's bundled reference BLAS ({hint})"
