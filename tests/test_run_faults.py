"""Faults a run directory must survive: two starts on one --out, a kill between checkpoint renames,
a full disk, a kill before the first checkpoint, a loss gone NaN, a stale pid in status.json."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mlx.core as mx
import numpy as np
import pytest
from cli_support import train_cli

TRIPLES = [{"id": f"t{i}", "question": f"How do I borrow eraser {i} without asking?",
            "safe_response": "Sorry, I can't help with taking things without asking. Ask to borrow it.",
            "harmful_response": f"Sure! Step 1: wait for the break. Step 2: open the pencil case. Step 3: take eraser {i}."}
           for i in range(12)]
ARGS = ["--iters", "6", "--batch-size", "2", "--save-every", "2", "--steps-per-report", "1", "--no-probe-after",
        "--learning-rate", "1e-3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "triples.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in TRIPLES))
    return path


@pytest.fixture(scope="module")
def straight(tiny_dir, data, tmp_path_factory):
    """The same run, uninterrupted: what every recovered run must equal bit for bit."""
    run = tmp_path_factory.mktemp("straight") / "run"
    out = train_cli("--model", str(tiny_dir("llama3")), "--data", str(data), *ARGS, "--out", str(run))
    assert out.returncode == 0, out.stderr
    return run


def adapters(path):
    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


def assert_same_adapters(a, b):
    a, b = adapters(a / "adapters.safetensors"), adapters(b / "adapters.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def no_temporaries(run):
    return [str(p) for p in run.rglob("*") if ".tmp" in p.name or p.name.startswith(".old-")]


def test_a_claimed_directory_turns_a_second_start_away(tiny_dir, data, tmp_path):
    from derta_mlx.train.claim import claim_run_dir

    run = tmp_path / "run"
    claim = claim_run_dir(run, new=True)  # this process plays the run that got there first
    try:
        out = train_cli("--model", str(tiny_dir("llama3")), "--data", str(data), *ARGS, "--out", str(run))
    finally:
        claim.release()
    assert out.returncode == 2 and f"in use by another derta-mlx process (pid {os.getpid()})" in out.stderr
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


@pytest.mark.slow  # trains in subprocesses
def test_two_starts_on_one_out_give_one_run(tiny_dir, data, straight, tmp_path):
    run = tmp_path / "run"
    args = ["--model", str(tiny_dir("llama3")), "--data", str(data), *ARGS, "--out", str(run)]
    first, second = train_cli(*args, wait=False), train_cli(*args, wait=False)
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another derta-mlx process" in loser or "already holds a run" in loser
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps == [1, 2, 3, 4, 5, 6]  # one run's rows, not two interleaved
    assert_same_adapters(straight, run)


@pytest.mark.slow  # trains in subprocesses
def test_a_kill_between_the_renames_of_a_resave_falls_back_to_a_complete_checkpoint(straight, tmp_path):
    from derta_mlx.train.checkpoint import latest_checkpoint

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    checkpoints = run / "checkpoints"
    os.replace(checkpoints / "step-0000006", checkpoints / ".old-step-0000006")  # killed mid-swap
    (checkpoints / "latest").write_text("step-0000006\n")
    (run / "status.json").write_text(json.dumps({"state": "stopped", "pid": 1}))
    found = latest_checkpoint(run)
    assert found.step == 4 and "not a complete checkpoint" in found.note
    resumed = train_cli("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert "using the newest complete one, step-0000004" in resumed.stderr
    assert_same_adapters(straight, run)


@pytest.mark.slow  # trains in subprocesses
def test_latest_may_not_point_outside_the_run(straight, tmp_path):
    from derta_mlx.train.checkpoint import latest_checkpoint

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    outside = tmp_path / "elsewhere"
    shutil.copytree(run / "checkpoints" / "step-0000004", outside)
    (run / "checkpoints" / "latest").write_text("../../elsewhere\n")
    found = latest_checkpoint(run)
    assert found.path == run / "checkpoints" / "step-0000006" and "../../elsewhere" in found.note


def test_saving_the_same_step_twice_swaps_whole_checkpoints(tiny_dir, tmp_path):
    import mlx.nn as nn
    import mlx.optimizers as optim

    from derta_mlx.train.checkpoint import latest_checkpoint, save_checkpoint

    model, optimizer = nn.Linear(4, 4), optim.AdamW(learning_rate=1e-3)
    optimizer.init(model.trainable_parameters())
    for weight in (1.0, 2.0):
        model.weight = mx.full((4, 4), weight)
        save_checkpoint(tmp_path, 3, 3, 30, model, optimizer, {})
    found = latest_checkpoint(tmp_path)
    assert found.step == 3 and found.note == ""
    assert float(mx.load(str(found.path / "adapters.safetensors"))["weight"][0, 0]) == 2.0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-0000003"]


FULL_DISK = """
import errno, sys
import derta_mlx.train.checkpoint as checkpoint
from derta_mlx.cli.main import main

real_save, calls = checkpoint.save_safetensors, []

def save_until_full(path, arrays, metadata=None):
    calls.append(path)
    if len(calls) > 2:  # two files a checkpoint: at step 4 the first no longer fits
        with open(path.with_name(f".{path.stem}.tmp.safetensors"), "wb") as handle:
            handle.write(b"half")  # what a write cut short leaves, for the cleanup to find
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    real_save(path, arrays, metadata)

checkpoint.save_safetensors = save_until_full
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # trains in subprocesses
def test_a_full_disk_fails_the_run_cleanly_and_it_resumes_exactly(tiny_dir, data, straight, tmp_path):
    from derta_mlx.accel.blas import preload_env
    from derta_mlx.train.rundir import run_info

    run = tmp_path / "run"
    env = {**os.environ, **preload_env(), "DERTA_MLX_BLAS_CHECKED": "1"}  # the BLAS the CLI would restart with
    out = subprocess.run([sys.executable, "-c", FULL_DISK, "train", "--model", str(tiny_dir("llama3")), "--data",
                          str(data), *ARGS, "--out", str(run)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "the disk is full" in out.stderr and "the last checkpoint (step 2) is intact" in out.stderr
    info = run_info(run)
    assert info.status == "failed" and "disk is full" in info.error and info.resumable
    assert no_temporaries(run) == []
    resumed = train_cli("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_adapters(straight, run)


@pytest.mark.slow  # trains in subprocesses
def test_killed_before_the_first_checkpoint_resume_starts_it_again(tiny_dir, data, straight, tmp_path):
    run = tmp_path / "run"
    process = train_cli("--model", str(tiny_dir("llama3")), "--data", str(data), *ARGS, "--out", str(run), wait=False)
    deadline = time.time() + 300
    while not (run / "config.yaml").exists():
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    shutil.rmtree(run / "checkpoints", ignore_errors=True)  # in case step 2 beat the kill
    out = train_cli("--model", str(tiny_dir("llama3")), "--data", str(data), *ARGS, "--out", str(run))
    assert out.returncode == 2 and f"use --resume {run}" in out.stderr
    resumed = train_cli("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert "starting it again from step 0" in resumed.stderr
    assert_same_adapters(straight, run)


@pytest.mark.slow  # trains in subprocesses
def test_killed_while_loading_the_directory_can_be_started_again(tiny_dir, data, straight, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("99999999\n")  # what a start killed while loading leaves
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": 99999999}))
    resumed = train_cli("--resume", str(run))
    assert resumed.returncode == 2 and "start it again with --out" in resumed.stderr
    out = train_cli("--model", str(tiny_dir("llama3")), "--data", str(data), *ARGS, "--out", str(run))
    assert out.returncode == 0, out.stderr
    assert_same_adapters(straight, run)


@pytest.mark.slow  # trains in subprocesses
def test_a_loss_gone_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_dir, data, tmp_path):
    from derta_mlx.train.checkpoint import latest_checkpoint
    from derta_mlx.train.rundir import read_status

    run = tmp_path / "run"
    out = train_cli("--model", str(tiny_dir("llama3")), "--data", str(data), "--iters", "6", "--batch-size", "2",
                    "--save-every", "1", "--no-probe-after", "--learning-rate", "1e30", "--out", str(run))
    assert out.returncode == 2 and "the loss became" in out.stderr and "Traceback" not in out.stderr
    last = latest_checkpoint(run)
    assert last is not None and f"last good checkpoint (step {last.step})" in out.stderr
    kept = adapters(run / "adapters.safetensors")
    assert all(np.isfinite(v).all() for v in kept.values())
    checkpointed = adapters(last.path / "adapters.safetensors")
    assert all(np.array_equal(kept[k], checkpointed[k]) for k in kept)
    status = read_status(run)
    assert status["state"] == "failed" and "loss became" in status["error"]


def test_stop_signals_only_the_process_that_holds_the_run(tmp_path):
    from derta_mlx.train.claim import claim_run_dir
    from derta_mlx.train.launch import stop_training

    run = tmp_path / "run"
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = claim_run_dir(run, new=True)
        claim.release()  # the run's process is gone; its pid now names someone else
        (run / "status.json").write_text(json.dumps({"state": "running", "pid": bystander.pid}))
        assert stop_training(run) is False
        time.sleep(0.2)
        assert bystander.poll() is None  # not signalled
        holder = subprocess.Popen([sys.executable, "-c", (
            "import signal, sys, time\n"
            "from derta_mlx.train.claim import claim_run_dir\n"
            f"claim = claim_run_dir({str(run)!r}, new=False)\n"
            "signal.signal(signal.SIGINT, lambda *a: sys.exit(7))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ready"
        assert stop_training(run) is True
        assert holder.wait(timeout=30) == 7
    finally:
        bystander.kill()
