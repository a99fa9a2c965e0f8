import os
import subprocess
import sys

import pytest

from derta_mlx.common.errors import UserError
from derta_mlx.models.catalogue import load_catalogue
from derta_mlx.models.loading import check_model_dir, find_model

NAMED_IN_PRODUCT_SPEC = [
    "mistral-7b-4bit", "mistral-7b-instruct-4bit", "llama3-8b-4bit", "llama3-8b-instruct-4bit",
    "llama3-70b-4bit", "mixtral-8x7b-4bit", "smollm2-135m-4bit", "tiny-llama3", "tiny-mistral",
]


def run_cli(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "derta_mlx", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


def test_catalogue_has_every_entry_with_every_field():
    catalogue = load_catalogue()
    assert catalogue.default == "smollm2-135m-4bit"
    for name in NAMED_IN_PRODUCT_SPEC:
        entry = catalogue.get(name)
        assert entry.family and entry.template in ("derta", "chat") and entry.licence
        assert entry.disk_gb > 0
    assert catalogue.get("mistral-7b-4bit").repo == "mlx-community/Mistral-7B-v0.1-hf-4bit-mlx"


def test_unknown_name_lists_close_matches():
    with pytest.raises(UserError, match="Did you mean: mistral-7b-4bit"):
        load_catalogue().get("mistral-7b")


def test_model_spec_forms(tmp_path):
    assert find_model(None).spec == "smollm2-135m-4bit"
    assert find_model("llama3-8b-4bit").repo == "mlx-community/Meta-Llama-3-8B-4bit"
    assert find_model("someone/some-model").repo == "someone/some-model"
    assert find_model(str(tmp_path)).local_dir == tmp_path
    with pytest.raises(UserError, match="unknown model"):
        find_model("no-such-thing")


def test_model_dir_checks(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        check_model_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match=r"never loads pickles.*|pickled weights"):
        check_model_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama",\n "x": }')
    with pytest.raises(UserError, match=r"config.json:2: invalid JSON"):
        check_model_dir(tmp_path)


def test_cli_list_and_unknown_model():
    listed = run_cli("models", "list")
    assert listed.returncode == 0, listed.stderr
    for name in NAMED_IN_PRODUCT_SPEC:
        assert name in listed.stdout
    bad = run_cli("models", "show", "mistral-7b")
    assert bad.returncode == 2
    assert "Did you mean" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_help_has_examples():
    for args in (["--help"], ["models", "show", "--help"], ["models", "convert", "--help"]):
        out = run_cli(*args)
        assert out.returncode == 0 and "example" in out.stdout


def test_cli_show_tiny_prints_refusal_ids(tmp_path):
    out = run_cli("models", "show", "tiny-llama3", env={"DERTA_MLX_MODELS_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "id 33386" in out.stdout and "19701" in out.stdout
    assert (tmp_path / "tiny-llama3" / "config.json").is_file()


def test_embedded_default_converts_on_first_use_and_resolves_its_refusal(tmp_path):
    env = {"DERTA_MLX_MODELS_DIR": str(tmp_path)}
    out = run_cli("models", "show", "smollm2-135m-4bit", env=env)
    assert out.returncode == 0, out.stderr
    assert "First use: converting" in out.stderr
    # SmolLM2 splits " Sorry": auto takes the glued "Sorry" that its chat answers open with
    assert "'Sorry' id 37388" in out.stdout
    assert (tmp_path / "smollm2-135m-4bit" / "model.safetensors").is_file()
    listed = run_cli("models", "list", env=env)
    assert any(line.startswith("smollm2-135m-4bit") and line.rstrip().endswith("yes")
               for line in listed.stdout.splitlines())
    two_tokens = run_cli("models", "show", "smollm2-135m-4bit", "--refusal", "space", env=env)
    assert two_tokens.returncode == 2 and "2 tokens" in two_tokens.stderr


def test_cli_convert_refuses_a_non_gguf_file(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("hello")
    out = run_cli("models", "convert", "--gguf", str(fake), "--out", str(tmp_path / "out"))
    assert out.returncode == 2 and "not a GGUF file" in out.stderr and not (tmp_path / "out").exists()


def test_train_memory_column_is_the_estimate_of_the_default_run():
    """The catalogue carries no memory figure of its own: the column is train --dry-run's estimate."""
    from derta_mlx.models.catalogue import load_catalogue
    from derta_mlx.train.memory import default_run_gb, train_memory_label

    for name, entry in load_catalogue().entries.items():
        plain, checkpointed = default_run_gb(name), default_run_gb(name, grad_checkpoint=True)
        assert plain is not None and checkpointed <= plain
        if entry.source == "hub":
            assert checkpointed > entry.disk_gb  # the weights and more
    assert train_memory_label("llama3-8b-4bit") == f"{default_run_gb('llama3-8b-4bit'):.0f} / " \
        f"{default_run_gb('llama3-8b-4bit', grad_checkpoint=True):.0f} GB"
