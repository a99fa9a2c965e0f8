"""The Linux BLAS choice: never preload a library that cannot load."""

import sys

import pytest

from derta_mlx.accel import blas as backend

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux CPU path only")


def test_a_library_that_cannot_load_is_never_chosen(tmp_path, monkeypatch):
    broken = tmp_path / "libopenblas.so.0"
    broken.write_bytes(b"not an ELF file")
    monkeypatch.setattr(backend, "_CANDIDATES", (str(broken),))
    monkeypatch.setattr(backend.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(backend, "_wheel_library", lambda distribution, stem: None)
    assert not backend._loads(str(broken))
    assert backend.find_blas() is None


def test_a_loadable_candidate_is_chosen(tmp_path, monkeypatch):
    import ctypes.util

    libc = ctypes.util.find_library("c")  # any library the loader finds stands in for OpenBLAS
    monkeypatch.setattr(backend, "_CANDIDATES", (str(tmp_path / "missing.so"),))
    monkeypatch.setattr(backend.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(backend, "_wheel_library", lambda distribution, stem: libc if distribution == "mkl" else None)
    assert backend.find_blas() == backend.Blas("Intel MKL", libc, "mkl")


def test_pinned_kernels_are_reported_never_changed(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"avx512f", "avx512dq", "avx512bw", "avx512vl"})
    monkeypatch.setattr(backend, "find_blas", lambda: backend.Blas("OpenBLAS", "/usr/lib/libopenblas.so.0", "system"))
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert backend.pinned_older_kernels() == "Haswell"
    env = backend.preload_env()
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"avx2"})
    assert backend.pinned_older_kernels() is None


def test_the_wheel_library_is_found_from_the_wheels_file_list(tmp_path, monkeypatch):
    """A wheel's data files (mkl puts its libraries in <prefix>/lib) are found from its RECORD."""
    from importlib import metadata

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libmkl_rt.so.3").write_bytes(b"")

    class Dist:
        files = ["../../lib/libmkl_core.so.3", "../../lib/libmkl_rt.so.3"]

        def locate_file(self, file):
            return tmp_path / "site" / "packages" / file

    monkeypatch.setattr(metadata, "distribution", lambda name: Dist())
    assert backend._wheel_library("mkl", "libmkl_rt.so") == str(lib / "libmkl_rt.so.3")
    assert backend._wheel_library("mkl", "libmkl_avx.so") is None


def test_a_preloaded_mkl_counts_as_a_fast_blas(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/venv/lib/libmkl_rt.so.3")
    assert backend.preloaded_blas() == "/venv/lib/libmkl_rt.so.3"
    assert backend.preload_env() == {}
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert backend.preloaded_blas() is None
