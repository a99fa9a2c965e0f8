"""The Linux BLAS choice: never preload a library that cannot load."""

import sys

import pytest

from derta_mlx import backend

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux CPU path only")


def test_a_library_that_cannot_load_is_never_chosen(tmp_path, monkeypatch):
    broken = tmp_path / "libopenblas.so.0"
    broken.write_bytes(b"not an ELF file")
    monkeypatch.setattr(backend, "_CANDIDATES", (str(broken),))
    monkeypatch.setattr(backend.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(backend, "_pypi_openblas", lambda: None)
    assert not backend._loads(str(broken))
    assert backend.find_openblas() is None


def test_a_loadable_candidate_is_chosen(tmp_path, monkeypatch):
    import ctypes.util

    libc = ctypes.util.find_library("c")  # any library the loader finds stands in for OpenBLAS
    monkeypatch.setattr(backend, "_CANDIDATES", (str(tmp_path / "missing.so"),))
    monkeypatch.setattr(backend.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(backend, "_pypi_openblas", lambda: libc)
    assert backend.find_openblas() == libc


def test_pinned_kernels_are_reported_never_changed(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"avx512f", "avx512dq", "avx512bw", "avx512vl"})
    monkeypatch.setattr(backend, "find_openblas", lambda: "/usr/lib/libopenblas.so.0")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert backend.pinned_older_kernels() == "Haswell"
    env = backend.preload_env()
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"avx2"})
    assert backend.pinned_older_kernels() is None
