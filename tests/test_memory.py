"""Will it fit? The memory estimate, `train --dry-run`, and the refusal to start a run that cannot fit."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from derta_mlx.models.arch import Arch
from derta_mlx.models.catalogue import load_catalogue
from derta_mlx.train.memory import Settings, estimate, suggest

ROOT = Path(__file__).resolve().parents[1]
LLAMA3_8B = Arch(**load_catalogue().get("llama3-8b-4bit").arch)


def train_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "derta_mlx", "train", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_catalogue_hub_entries_carry_their_architecture():
    catalogue = load_catalogue()
    for name in ("mistral-7b-4bit", "mistral-7b-instruct-4bit", "llama3-8b-4bit", "llama3-8b-instruct-4bit",
                 "llama3-70b-4bit", "mixtral-8x7b-4bit"):
        entry = catalogue.get(name)
        arch = Arch(**entry.arch)
        assert arch.params() / 1e9 == pytest.approx(entry.params_b, rel=0.01), name
    assert Arch(**catalogue.get("mistral-7b-instruct-4bit").arch).vocab_size == 32768


@pytest.mark.parametrize("dequantize", [False, True])
def test_estimate_grows_with_batch_length_and_adapted_blocks(dequantize):
    base = Settings(batch_size=4, max_seq_length=512, num_layers=16, dequantize=dequantize)
    total = lambda **change: estimate(LLAMA3_8B, replace(base, **change)).total  # noqa: E731
    assert total(batch_size=2) < total() < total(batch_size=8)
    assert total(max_seq_length=256) < total() < total(max_seq_length=1024)
    assert total(num_layers=8) < total() < total(num_layers=32) == total(num_layers=-1)
    assert total(grad_checkpoint=True) < total()
    assert total(lora_rank=4) < total() < total(lora_rank=64)
    # a 4-bit base is a fraction of its float32 copy
    assert estimate(LLAMA3_8B, replace(base, dequantize=False)).base_weights < \
        estimate(LLAMA3_8B, replace(base, dequantize=True)).base_weights / 5


def test_suggestion_fits_and_keeps_the_effective_batch():
    s = Settings(batch_size=8, max_seq_length=512)
    usable = estimate(LLAMA3_8B, s).total * 0.7
    new, est = suggest(LLAMA3_8B, s, usable)
    assert est.total <= usable and new.grad_checkpoint
    assert new.batch_size * new.grad_accumulation_steps == 8
    assert suggest(LLAMA3_8B, s, 1e9) is None  # 1 GB: not even the weights


def test_dry_run_on_a_hub_entry_that_is_not_downloaded():
    small = train_cli("--dry-run", "--model", "llama3-70b-4bit", "--memory-gb", "16", "--device", "gpu")
    assert small.returncode == 1, small.stderr
    assert "Does not fit" in small.stdout and ("Nothing fits" in small.stdout or "Would fit" in small.stdout)
    assert "base weights" in small.stdout and "75% of 16 GB" in small.stdout
    big = train_cli("--dry-run", "--model", "llama3-70b-4bit", "--memory-gb", "128", "--device", "gpu")
    assert big.returncode == 0 and "Fits" in big.stdout, big.stdout + big.stderr
    # the 8B model on a 16 GB Mac: fits only with changed settings, which are printed
    mid = train_cli("--dry-run", "--model", "llama3-8b-4bit", "--memory-gb", "16", "--device", "gpu",
                    "--batch-size", "8", "--max-seq-length", "1024")
    assert mid.returncode == 1 and "Would fit" in mid.stdout and "--grad-checkpoint" in mid.stdout
    # on a CPU the 4-bit base is dequantised: far more memory for the same run
    cpu = train_cli("--dry-run", "--model", "llama3-8b-4bit", "--memory-gb", "16", "--device", "cpu")
    assert cpu.returncode == 1 and "dequantised to float32" in cpu.stdout


def test_dry_run_of_the_demo_fits_here():
    out = train_cli("--dry-run")
    assert out.returncode == 0 and "Fits" in out.stdout, out.stdout + out.stderr


def test_a_run_that_cannot_fit_is_refused_before_loading_and_the_override_starts_it(tmp_path, tiny_dir):
    model = str(tiny_dir("llama3"))
    run = tmp_path / "run"
    small = ["--model", model, "--memory-gb", "0.05", "--out", str(run), "--iters", "2", "--batch-size", "2",
             "--max-seq-length", "64", "--no-probe-after"]
    refused = train_cli(*small)
    assert refused.returncode == 1 and "Not starting the run" in refused.stderr
    assert "--ignore-memory-check" in refused.stderr and not run.exists()
    started = train_cli(*small, "--ignore-memory-check")
    assert started.returncode == 0, started.stderr
    assert (run / "adapters.safetensors").is_file()


def test_measured_peak_of_a_tiny_run_is_within_25_percent_of_the_estimate():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "memory_fit.py"), "--one", "tiny-llama3-2x128"],
                         capture_output=True, text=True, timeout=300)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert abs(result["error"]) <= 0.25, result
