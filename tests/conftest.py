"""Shared fixtures: tiny models with the real tokenizers, built once per session."""

import os

import pytest

# Under xdist every core already runs a worker; a BLAS that also starts a thread per core in each
# worker (and in the CLIs it starts) oversubscribes them, and OpenBLAS's waiting threads spin.
# One BLAS thread per worker. A thread count, not one of the settings the machine fixes
# (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE), which stay as they are.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Build (once) and return the directory of a tiny model: tiny_dir("llama3", bits=None)."""
    from derta_mlx.testing.tiny import TinySpec, build_tiny_model

    built = {}
    root = tmp_path_factory.mktemp("tiny")

    def get(family: str, bits=None, instruct: bool = False):
        key = (family, bits, instruct)
        if key not in built:
            name = f"{family}-{bits or 'fp'}-{'instruct' if instruct else 'base'}"
            built[key] = build_tiny_model(
                TinySpec(family=family, quantize_bits=bits, instruct=instruct), root / name
            )
        return built[key]

    return get


@pytest.fixture(scope="session")
def tokenizer_of(tiny_dir):
    """The mlx-lm tokenizer of a tiny model family: tokenizer_of("mistral")."""
    from mlx_lm.utils import load_tokenizer

    cache = {}

    def get(family: str, instruct: bool = False):
        if (family, instruct) not in cache:
            cache[(family, instruct)] = load_tokenizer(tiny_dir(family, instruct=instruct))
        return cache[(family, instruct)]

    return get


# The suite runs on two workers (pyproject: pytest-xdist, whole files per worker). The main job
# takes a third of the suite's time, so it starts first: the other worker runs everything else
# meanwhile instead of waiting for it at the end.
LONGEST_FIRST = ("test_main_job.py",)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # stable: the rest keep their order
