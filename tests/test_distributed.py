"""Data-parallel training under mlx.launch (ring backend, loopback): same adapter as one process.

Tolerance: both runs see the same global batches, RTO masks and loss denominators; only the
order of float32 additions differs (each rank sums its rows' gradients, then the all-reduce
adds the two halves). That changes results in the last bits, ~1e-7 of values ~0.1 after a few
steps; Adam divides by sqrt(v), which can amplify a relative difference in a near-zero gradient
by at most a few learning rates, so the bound is atol = 1e-5 (the learning rate is 1e-4 and the
measured difference 1.5e-7), far below the size of one update.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from derta_mlx.train.ranks import launch_command, strip_launch_flags

TOLERANCE = 1e-5


def triples(path: Path) -> Path:
    path.write_text("".join(json.dumps({
        "question": f"How do I sneak snack {i}?", "safe_response": "Sorry, I can't help with that. Ask first.",
        "harmful_response": f"Sure! Step 1: wait until nobody looks. Step 2: take snack {i} quietly."}) + "\n"
        for i in range(12)))
    return path


def train_args(model, data, out, iters):
    return ["--model", str(model), "--data", str(data), "--iters", str(iters), "--batch-size", "4",
            "--no-probe-after", "--val-fraction", "0", "--save-every", "2", "--steps-per-report", "1",
            "--learning-rate", "1e-4", "--out", str(out)]


def derta(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "derta_mlx", "train", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def max_difference(a: Path, b: Path) -> float:
    x, y = mx.load(str(a / "adapters.safetensors")), mx.load(str(b / "adapters.safetensors"))
    assert x.keys() == y.keys()
    return max(float(np.abs(np.array(x[k]) - np.array(y[k])).max()) for k in x)


def test_launch_flags_are_not_passed_to_the_ranks():
    argv = ["--ranks", "2", "--out", "r", "--backend=ring", "--hosts", "h.json", "--iters", "3"]
    assert strip_launch_flags(argv) == ["--out", "r", "--iters", "3"]
    command = launch_command(["--out", "r"], 2, None, "ring")
    assert command[command.index("--") + 1 :] == [sys.executable, "-m", "derta_mlx", "train", "--out", "r"]
    assert command[command.index("-n") + 1] == "2"


def test_a_batch_that_does_not_divide_is_refused_before_starting(tmp_path):
    out = derta("--ranks", "2", "--batch-size", "3", "--out", str(tmp_path / "r"))
    assert out.returncode == 2
    assert "--batch-size 3 does not divide by the 2 ranks" in out.stderr
    assert not (tmp_path / "r").exists()
    out = derta("--ranks", "2", "--batch-size", "4")
    assert out.returncode == 2 and "needs --out" in out.stderr


def test_a_bad_hostfile_is_named(tmp_path):
    hosts = tmp_path / "hosts.json"
    hosts.write_text('[{"ssh": "mac1.local"},\n oops]')
    out = derta("--hosts", str(hosts), "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and f"{hosts}:2: not JSON" in out.stderr


@pytest.mark.slow
def test_two_ranks_match_one_process(tiny_dir, tmp_path):
    model, data = tiny_dir("llama3"), triples(tmp_path / "d.jsonl")
    single = derta(*train_args(model, data, tmp_path / "one", 4))
    assert single.returncode == 0, single.stderr
    pair = derta("--ranks", "2", *train_args(model, data, tmp_path / "two", 4))
    assert pair.returncode == 0, pair.stderr
    assert "Data-parallel over 2 ranks" in pair.stderr
    assert max_difference(tmp_path / "one", tmp_path / "two") < TOLERANCE
    rows = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["ranks"] == 2 and len(r["peak_memory_gb_per_rank"]) == 2 for r in rows)
    ones = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [r["trained_tokens"] for r in rows] == [r["trained_tokens"] for r in ones]  # global tokens
    assert np.allclose([r["loss"] for r in rows], [r["loss"] for r in ones], rtol=1e-5)


def rank_pid(rank: int):
    """The pid of the training process that mlx.launch started as `rank`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"MLX_RANK={rank}".encode() in environ and b"derta_mlx" in cmdline and b"launch" not in cmdline:
            return int(entry.name)
    return None


def start_two_ranks(model, data, run: Path, iters: int) -> subprocess.Popen:
    """`derta-mlx train --ranks 2` in the background, returned once its first checkpoint exists."""
    launcher = subprocess.Popen([sys.executable, "-m", "derta_mlx", "train", "--ranks", "2",
                                 *train_args(model, data, run, iters)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "latest").exists():
        assert launcher.poll() is None and time.time() < deadline, launcher.stderr.read()
        time.sleep(0.2)
    return launcher


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the rank's process through /proc")
def test_kill_one_rank_then_resume(tiny_dir, tmp_path):
    model, data = tiny_dir("llama3"), triples(tmp_path / "d.jsonl")
    run = tmp_path / "run"
    launcher = start_two_ranks(model, data, run, 8)
    pid = rank_pid(1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 1
    assert "the data-parallel run stopped: rank 1 ended with signal 9" in stderr, stderr[-1500:]
    assert f"Resume with: derta-mlx train --ranks 2 --resume {run}" in stderr
    assert json.loads((run / "status.json").read_text())["state"] == "failed"

    resumed = derta("--ranks", "2", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming" in resumed.stderr
    whole = derta(*train_args(model, data, tmp_path / "whole", 8))
    assert whole.returncode == 0, whole.stderr
    assert max_difference(run, tmp_path / "whole") < TOLERANCE
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_abbreviated_or_conflicting_launch_flags_are_refused(tmp_path):
    out = derta("--rank", "2", "--out", str(tmp_path / "r"))  # would reach the ranks verbatim
    assert out.returncode == 2 and "unrecognized arguments: --rank" in out.stderr
    hosts = tmp_path / "hosts.json"
    hosts.write_text('[{"ssh": "a", "ips": ["127.0.0.1"]}]')
    out = derta("--ranks", "2", "--hosts", str(hosts), "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "not allowed with argument" in out.stderr
    inside = subprocess.run([sys.executable, "-m", "derta_mlx", "train", "--ranks", "2", "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, env={**os.environ, "MLX_RANK": "1"})
    assert inside.returncode == 2 and "inside a rank started by mlx.launch" in inside.stderr


@pytest.mark.slow
def test_sigint_to_rank_0_stops_every_rank_with_a_checkpoint(tiny_dir, tmp_path):
    """What the TUI's Stop and Ctrl-C do: rank 0 stops after its step, all ranks stop with it."""
    model, data = tiny_dir("llama3"), triples(tmp_path / "d.jsonl")
    run = tmp_path / "run"
    launcher = start_two_ranks(model, data, run, 40)
    os.kill(rank_pid(0), signal.SIGINT)
    stdout, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, stderr
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and 0 < status["step"] < 40
    assert f"Resume on the same ranks with: derta-mlx train --ranks 2 --resume {run}" in stderr
    assert "error" not in stderr
    checkpoint = (run / "checkpoints" / "latest").read_text().strip()
    assert checkpoint == f"step-{status['step']:07d}"
