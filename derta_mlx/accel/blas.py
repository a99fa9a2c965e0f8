"""The compute path on this machine: Metal on a Mac; on a Linux CPU, a fast BLAS when one loads.

MLX's Linux CPU wheel ships the reference BLAS, tens of times slower at float32 matmul than the
system OpenBLAS (Debian: libopenblas0-pthread) or Intel's MKL from the `mkl` wheel (a pip
dependency on Linux x86_64, so a fresh machine has it, runtime libraries included), interposed
with LD_PRELOAD; the `cmeel-openblas` wheel (the dependency on other Linux machines) loads only
where libgfortran.so.5 is installed. `python bench/matmul.py` measures each; docs/speed.md has the
numbers. A shared library can only be preloaded before the process starts, so the CLI
re-executes itself once with LD_PRELOAD set. Nothing changes on macOS, and
DERTA_MLX_BLAS=reference turns it off.
"""

import ctypes.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

_MARK = "DERTA_MLX_BLAS_CHECKED"
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
)
# Wheels that ship a BLAS with the standard cblas_* symbols: (distribution, library file name, BLAS).
_WHEELS = (("mkl", "libmkl_rt.so", "Intel MKL"), ("cmeel-openblas", "libopenblas.so", "OpenBLAS"))


@dataclass(frozen=True)
class Blas:
    name: str  # "OpenBLAS" or "Intel MKL"
    path: str
    source: str  # "system" or the wheel's distribution name


def _wheel_library(distribution: str, stem: str) -> Optional[str]:
    """The installed wheel's library whose file name starts with `stem` (any version suffix),
    located from the wheel's file list without importing anything."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if Path(str(file)).name.startswith(stem + "."):
            path = Path(dist.locate_file(file)).resolve()
            if path.exists():
                return str(path)
    return None


def _loads(library: str) -> bool:
    """Whether the dynamic loader can load `library` with its dependencies. The cmeel wheel's
    OpenBLAS needs the system libgfortran.so.5, which a fresh machine may lack; preloading a
    library that cannot load would make every later process fail to start."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def _candidates() -> Iterator[Blas]:
    """Fastest first: the system OpenBLAS (runtime CPU dispatch), then the wheels'."""
    system = [c for c in _CANDIDATES if Path(c).exists()]
    name = ctypes.util.find_library("openblas")
    if name and Path(name).is_absolute():
        system.append(name)
    for path in system:
        yield Blas("OpenBLAS", path, "system")
    for distribution, stem, name in _WHEELS:
        path = _wheel_library(distribution, stem)
        if path:
            yield Blas(name, path, distribution)


def find_blas() -> Optional[Blas]:
    """The first BLAS that actually loads here, or None."""
    return next((blas for blas in _candidates() if _loads(blas.path)), None)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """On glibc, keep freed buffers in the heap instead of handing them back to the kernel.

    MLX's CPU backend mallocs every array and frees it when done; glibc serves big blocks with
    mmap and unmaps them on free, so every step of training faulted in fresh zeroed pages for
    every activation (docs/speed.md: page faults cost about a second of kernel time
    per step on bench/vs_torch.py's 39m shape). Serving them from the heap and never
    trimming it reuses the pages; the process keeps its peak size, which training reaches anyway.
    Returns whether the setting took."""
    if not sys.platform.startswith("linux") or os.environ.get("DERTA_MLX_MALLOC", "").lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


_PRELOADED_MARKERS = ("openblas", "libmkl_rt")


def preloaded_blas() -> Optional[str]:
    """The BLAS library in LD_PRELOAD, if any."""
    entries = os.environ.get("LD_PRELOAD", "").replace(" ", ":").split(":")
    return next((p for p in entries if any(m in Path(p).name for m in _PRELOADED_MARKERS)), None)


# OpenBLAS's SkylakeX kernels need these; OPENBLAS_CORETYPE values that name older x86 kernels.
_AVX512 = {"avx512f", "avx512dq", "avx512bw", "avx512vl"}
_OLDER_X86 = {"prescott", "core2", "nehalem", "sandybridge", "haswell", "zen", "atom", "barcelona"}


def _cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def pinned_older_kernels() -> Optional[str]:
    """The OPENBLAS_CORETYPE value when the environment pins OpenBLAS to an older x86 kernel on a
    CPU with AVX-512, else None. derta-mlx never changes it: machines set it on purpose (older
    OpenBLAS builds compute wrong results or crash with some kernels on some CPUs); it only says so."""
    pinned = os.environ.get("OPENBLAS_CORETYPE", "")
    if pinned.lower() not in _OLDER_X86 or not _AVX512 <= _cpu_flags():
        return None
    return pinned


def preload_env() -> dict:
    """Environment entries that make a new process compute with a fast BLAS ({} when none loads)."""
    blas = find_blas() if sys.platform.startswith("linux") else None
    if blas is None or preloaded_blas():
        return {}
    return {_MARK: "1", "LD_PRELOAD": ":".join(p for p in (blas.path, os.environ.get("LD_PRELOAD")) if p)}


def reexec_with_openblas(script: Optional[str] = None, argv=None) -> None:
    """On Linux, restart this process once with a fast BLAS preloaded when one loads.

    It restarts `python -m derta_mlx` (the CLI) with the same arguments, or `python SCRIPT`
    for a benchmark script. The process that goes on also keeps freed memory (see above)."""
    if not sys.platform.startswith("linux"):
        return
    keep_freed_memory()
    if os.environ.get(_MARK):
        return
    if os.environ.get("DERTA_MLX_BLAS", "").lower() == "reference" or preloaded_blas():
        return
    extra = preload_env()
    if not extra:
        return
    env = {**os.environ, **extra}
    sys.stdout.flush()
    sys.stderr.flush()
    command = [str(Path(script).resolve())] if script else ["-m", "derta_mlx"]
    os.execve(sys.executable, [sys.executable, *command, *(sys.argv[1:] if argv is None else argv)], env)


def describe() -> str:
    """One line for start-up: which device and which BLAS computes."""
    import mlx.core as mx

    device = mx.default_device()
    if device == mx.gpu:
        return "device: GPU (Metal)" if sys.platform == "darwin" else "device: GPU"
    if not sys.platform.startswith("linux"):
        return "device: CPU"
    library = preloaded_blas()
    if library:
        if "libmkl_rt" in Path(library).name:
            return f"device: CPU, BLAS: Intel MKL ({library}, preloaded)"
        kernels = ""
        pinned = pinned_older_kernels()
        if pinned:
            kernels = (f"; the environment pins {pinned} kernels (OPENBLAS_CORETYPE) on this AVX-512 CPU, left "
                       "as set: bench/matmul.py measures what unsetting it would give")
        return f"device: CPU, BLAS: OpenBLAS ({library}, preloaded{kernels})"
    hint = "`pip install mkl` or `apt-get install libopenblas0-pthread` for ~30x faster float32 matmul"
    if os.environ.get("DERTA_MLX_BLAS", "").lower() == "reference":
        hint = "DERTA_MLX_BLAS=reference"
    return f"device: CPU, BLAS: MLX's bundled reference BLAS ({hint})"
