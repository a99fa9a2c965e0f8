"""Hub loading, offline, against a hub cache pre-filled in the real layout."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = "derta-test/tiny-llama3-4bit"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_hub_cache(hf_home, model_dir):
    """models--ORG--NAME/{blobs,refs/main,snapshots/COMMIT/} as huggingface_hub writes it."""
    repo_dir = hf_home / "hub" / ("models--" + REPO.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    blobs = repo_dir / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, file in enumerate(sorted(model_dir.iterdir())):
        blob = blobs / f"{i:040x}"
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)


@pytest.fixture
def offline_cache(tmp_path, tiny_dir):
    hf_home = tmp_path / "hf"
    fill_hub_cache(hf_home, tiny_dir("llama3", bits=4))
    return {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


def run(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_load_by_repo_id_offline(offline_cache):
    code = (
        "import mlx.core as mx, mlx.nn as nn\n"
        "from derta_mlx.models.loading import load\n"
        f"model, tok, ref = load({REPO!r})\n"
        "assert ref.repo == %r\n"
        "assert any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules())\n"
        "print(model(mx.array([tok.encode('hi')])).shape)\n" % REPO
    )
    out = run(code, offline_cache)
    assert out.returncode == 0, out.stderr
    assert "128256" in out.stdout


def test_cli_download_offline_finds_cache_or_says_why(offline_cache):
    cli = [sys.executable, "-m", "derta_mlx", "models", "download"]
    ok = subprocess.run(cli + [REPO], capture_output=True, text=True, env=offline_cache, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert COMMIT in ok.stdout
    missing = subprocess.run(cli + ["nobody/absent"], capture_output=True, text=True, env=offline_cache, timeout=300)
    assert missing.returncode == 2
    assert "HF_HUB_OFFLINE" in missing.stderr and "Traceback" not in missing.stderr


def test_mlx_lm_loads_the_same_cache_by_repo_id(offline_cache):
    out = run(f"from mlx_lm import load\nmodel, tok = load({REPO!r})\nprint('ok')", offline_cache)
    assert out.returncode == 0, out.stderr
