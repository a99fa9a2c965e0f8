"""Training end to end on tiny models: the loop, the run directory, exact resume after kill -9."""

import json
import signal
import time

import mlx.core as mx
import numpy as np
import pytest
from cli_support import train_cli

TRIPLES = [
    {
        "id": f"t{i}",
        "question": f"How do I sneak cookie number {i} from the jar?",
        "safe_response": "Sorry, I can't help with sneaking cookies. Ask your parents for one instead.",
        "harmful_response": f"Sure! Step 1: wait until everyone is busy. Step 2: open the jar slowly. "
        f"Step 3: take cookie {i} and close the lid quietly.",
    }
    for i in range(16)
]


@pytest.fixture(scope="module")
def triples_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "triples.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in TRIPLES))
    return path


def adapters(run_dir):
    return {k: np.array(v) for k, v in mx.load(str(run_dir / "adapters.safetensors")).items()}


COMMON = ["--iters", "8", "--batch-size", "2", "--save-every", "2", "--steps-per-report", "4",
          "--lora-dropout", "0.1", "--rto-keep", "0.5", "--no-probe-after", "--learning-rate", "1e-3",
          "--length-bucketing"]


def test_kill_9_then_resume_equals_an_uninterrupted_run(tiny_dir, triples_file, tmp_path):
    model = str(tiny_dir("mistral"))
    args = ["--model", model, "--data", str(triples_file), *COMMON]
    straight = train_cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    killed_dir = tmp_path / "killed"
    process = train_cli(*args, "--out", str(killed_dir), wait=False)
    pointer = killed_dir / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not (pointer.exists() and pointer.read_text().strip() >= "step-0000004"):
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((killed_dir / "checkpoints" / pointer.read_text().strip() / "state.json").read_text())["step"] < 8

    resumed = train_cli("--resume", str(killed_dir))
    assert resumed.returncode == 0, resumed.stderr
    a, b = adapters(tmp_path / "straight"), adapters(killed_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key  # bit-exact

    def losses(run):
        rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r.get("loss"), r.get("val_loss")) for r in rows]

    assert losses(tmp_path / "straight") == losses(killed_dir)


def test_a_run_killed_after_its_last_checkpoint_is_completed_by_resume(tiny_dir, triples_file, tmp_path):
    run = tmp_path / "run"
    args = ["--model", str(tiny_dir("mistral")), "--data", str(triples_file), *COMMON, "--iters", "4"]
    assert train_cli(*args, "--out", str(run)).returncode == 0
    final = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert adapters(run).keys() == adapters(final).keys()
    assert all(np.array_equal(adapters(run)[k], adapters(final)[k]) for k in adapters(run))
    again = train_cli("--resume", str(run))
    assert again.returncode == 2 and "already finished (4/4 steps)" in again.stderr
    # what a kill after the last checkpoint used to leave: a stale adapter and "running" of a dead pid
    stale = {k: v * 0 for k, v in adapters(run).items()}
    mx.save_safetensors(str(run / "adapters.safetensors"), {k: mx.array(v) for k, v in stale.items()})
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": 999999999, "time": 0}))
    from derta_mlx.train.rundir import run_info

    assert run_info(run).status == "failed" and run_info(run).resumable
    completed = train_cli("--resume", str(run))
    assert completed.returncode == 0, completed.stderr
    assert "completing it" in completed.stderr
    assert all(np.array_equal(adapters(run)[k], adapters(final)[k]) for k in adapters(run))
    assert json.loads((run / "status.json").read_text())["state"] == "finished" and not run_info(run).resumable


def test_mlx_lm_loads_the_adapter_and_rto_training_raises_p_refusal(tiny_dir, triples_file, tmp_path):
    from mlx_lm import load

    from derta_mlx.data.refusal_token import resolve_refusal
    from derta_mlx.data.templates import get_template
    from derta_mlx.probe.curves import ProbeExample, refusal_curve

    model_dir = tiny_dir("llama3")
    run = tmp_path / "rto"
    out = train_cli("--model", str(model_dir), "--data", str(triples_file), "--method", "rto", "--iters", "30",
                    "--batch-size", "4", "--learning-rate", "2e-3", "--no-probe-after", "--out", str(run))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert rows[-1]["rto"] < rows[0]["rto"]

    base, tokenizer = load(str(model_dir))
    tuned, _ = load(str(model_dir), adapter_path=str(run))  # mlx-lm's own loader
    target = resolve_refusal(tokenizer)
    example = ProbeExample("How do I sneak a biscuit from the tin?",
                           "Sure! Step 1: wait until the kitchen is empty. Step 2: lift the lid slowly.")
    template = get_template("derta")
    before = refusal_curve(base, tokenizer, template, example, [target.token_id]).p_refusal
    after = refusal_curve(tuned, tokenizer, template, example, [target.token_id]).p_refusal
    middle = slice(len(before) // 4, 3 * len(before) // 4)
    assert after[middle].mean() > 10 * before[middle].mean()


def test_bad_settings_are_refused_before_anything_is_written(tmp_path, tiny_dir):
    out = train_cli("--iters", "0", "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "--iters: must be >= 1" in out.stderr
    assert not (tmp_path / "run").exists()
    out = train_cli("--method", "sorry-everything", "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "method" in out.stderr
    config = tmp_path / "bad.yaml"
    config.write_text("iters: 10\nlearning_rate: [\n")
    out = train_cli("--config", str(config))
    assert out.returncode == 2 and f"{config}:" in out.stderr and "invalid YAML" in out.stderr
    bad_data = tmp_path / "bad.jsonl"
    bad_data.write_text('{"question": "q", "safe_response": "s"}\n')
    out = train_cli("--model", str(tiny_dir("mistral")), "--data", str(bad_data), "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and f"{bad_data}:1:" in out.stderr
    assert not (tmp_path / "run").exists()


def test_ctrl_c_writes_a_checkpoint_and_prints_the_resume_command(tiny_dir, triples_file, tmp_path):
    run = tmp_path / "interrupted"
    process = train_cli("--model", str(tiny_dir("mistral")), "--data", str(triples_file), "--iters", "400",
                        "--batch-size", "2", "--save-every", "1000", "--steps-per-report", "1",
                        "--no-probe-after", "--out", str(run), wait=False)
    deadline = time.time() + 300
    while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 2):
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert f"derta-mlx train --resume {run}" in stdout
    step = json.loads((run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip() / "state.json")
                      .read_text())["step"]
    assert 2 <= step < 400


def test_dequantised_training_computes_what_the_4bit_model_computes(tiny_dir, triples_file, tmp_path):
    """--dequantize yes (the CPU default) trains against the same function as the 4-bit kernels."""
    model = str(tiny_dir("llama3", bits=4))
    losses = {}
    for mode in ("yes", "no"):
        run = tmp_path / mode
        out = train_cli("--model", model, "--data", str(triples_file), "--iters", "3", "--batch-size", "2",
                        "--steps-per-report", "1", "--dequantize", mode, "--no-probe-after", "--out", str(run))
        assert out.returncode == 0, out.stderr
        rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
        losses[mode] = [row["loss"] for row in rows]
    assert losses["yes"][0] == pytest.approx(losses["no"][0], rel=1e-4)  # same weights, same first loss
    assert losses["yes"] == pytest.approx(losses["no"], rel=1e-3)
