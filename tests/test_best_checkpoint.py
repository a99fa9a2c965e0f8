"""--probe-every: the validation probe at checkpoints, its curve in metrics.jsonl, and
checkpoints/best kept by safety and helpfulness, which probe and fuse take with --checkpoint best."""

import json
import subprocess
import sys

import pytest
from cli_support import train_cli

from derta_mlx.common.errors import UserError
from derta_mlx.train.best import beats, best_dir, best_record, resolve_checkpoint, save_best

TRIPLES = [{"id": f"t{i}", "question": f"How do I sneak cookie number {i} from the jar?",
            "safe_response": "Sorry, I can't help with sneaking cookies. Ask your parents for one instead.",
            "harmful_response": f"Sure! Step 1: wait until everyone is busy. Step 2: take cookie {i}."}
           for i in range(12)]
HELPFUL = [{"id": f"h{i}", "instruction": f"What is {i} plus {i}?", "output": f"{i} plus {i} is {2 * i}."}
           for i in range(12)]


def test_a_checkpoint_meeting_the_floor_beats_a_higher_score_below_it():
    assert beats({"floors_met": False, "score": -0.5}, None)
    assert beats({"floors_met": True, "score": 0.1}, {"floors_met": False, "score": 0.9})
    assert not beats({"floors_met": False, "score": 0.9}, {"floors_met": True, "score": 0.1})
    assert beats({"floors_met": True, "score": 0.6}, {"floors_met": True, "score": 0.5})
    assert not beats({"floors_met": True, "score": 0.5}, {"floors_met": True, "score": 0.5})  # ties keep the earlier


def test_the_best_folder_is_replaced_whole_and_a_bad_pointer_reads_as_none(tmp_path):
    import mlx.core as mx
    import mlx.nn as nn

    model = nn.Linear(2, 2)
    (tmp_path / "adapter_config.json").write_text("{}")
    save_best(tmp_path, 20, model, {"score": 0.5, "floors_met": True})
    first = best_dir(tmp_path)
    assert first.name == "best-0000020" and (first / "adapter_config.json").is_file()
    model.weight = mx.ones((2, 2))
    save_best(tmp_path, 40, model, {"score": 0.7, "floors_met": True})
    assert best_dir(tmp_path).name == "best-0000040" and not first.exists()
    assert best_record(tmp_path)["step"] == 40 and resolve_checkpoint(tmp_path, "best") == best_dir(tmp_path)
    (tmp_path / "checkpoints" / "best").write_text("../../etc\n")
    assert best_dir(tmp_path) is None
    with pytest.raises(UserError, match="no best checkpoint; train with --probe-every N"):
        resolve_checkpoint(tmp_path, "best")
    assert resolve_checkpoint(tmp_path, None) == tmp_path


@pytest.mark.slow  # trains a tiny model with the probe on
def test_probe_every_logs_the_curve_keeps_the_best_and_probe_takes_it(tiny_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TRIPLES + HELPFUL))
    run = tmp_path / "run"
    out = train_cli("--model", str(tiny_dir("llama3")), "--data", str(data), "--iters", "4", "--batch-size", "2",
                    "--probe-every", "2", "--val-fraction", "0.3", "--no-probe-after", "--out", str(run))
    assert out.returncode == 0, out.stderr
    probes = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"probe"' in line]
    assert [row["step"] for row in probes] == [2, 4]
    for row in probes:
        p = row["probe"]
        assert p["k"] == 10 and p["n_safety"] >= 1 and p["n_safe"] >= 1
        assert p["score"] == pytest.approx(p["coherent"] - p["over_refusal"], abs=1e-3)
    kept = best_record(run)
    assert kept["step"] in (2, 4) and [r["probe"]["best"] for r in probes][0] is True
    assert "probe of the validation rows: coherent refusal at k=10" in out.stderr
    assert "Best checkpoint by the validation probe: step" in out.stdout
    folder = best_dir(run)
    assert {"adapters.safetensors", "adapter_config.json", "config.yaml", "best.json"} <= {p.name for p in folder.iterdir()}

    shown = subprocess.run([sys.executable, "-m", "derta_mlx", "probe", "--adapter-path", str(run), "--checkpoint",
                            "best", "--question", "How do I bake bread?", "--harmful-response",
                            "Sure! Step 1: mix flour.", "--positions", "0", "--max-tokens", "4"],
                           capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr
    assert str(folder) in shown.stderr + shown.stdout


def test_probe_every_without_validation_rows_of_both_kinds_is_refused(tiny_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TRIPLES))
    out = train_cli("--model", str(tiny_dir("llama3")), "--data", str(data), "--iters", "2", "--batch-size", "2",
                    "--probe-every", "1", "--no-probe-after", "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert "--probe-every probes the validation rows, which hold" in out.stderr and "0 ordinary questions" in out.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written
