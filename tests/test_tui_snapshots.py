"""Snapshots of the main screens at 80x24 (pytest-textual-snapshot; --snapshot-update rewrites them).

Everything they show is fixed: an empty models directory and hub cache, and a hand-written run.
"""

import json
from pathlib import Path

import pytest

CONFIG = """# derta-mlx run configuration (written for the snapshot)
model: tiny-mistral
method: derta
iters: 20
batch_size: 2
"""


def fake_run(runs: Path, name: str = "snap-run") -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(CONFIG)
    rows = [{"step": s, "loss": 6.0 - 0.2 * s, "mle": 5.0 - 0.1 * s, "rto": 7.0 - 0.3 * s,
             "tokens_per_sec": 1000.0, "seconds_per_step": 0.1, "peak_memory_gb": 0.06} for s in range(1, 21)]
    rows.append({"step": 20, "val_loss": 2.5, "val_mle": 3.0, "val_rto": 2.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "status.json").write_text(json.dumps({"state": "finished", "pid": 1, "step": 20}))
    log = runs / ".launch" / name / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text("step 20/20 loss 2.000\nRun directory: runs/snap-run\n")
    return run


@pytest.fixture
def fixed_world(tmp_path, monkeypatch):
    monkeypatch.setenv("DERTA_MLX_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    fake_run(Path("runs"))
    return tmp_path


async def steady_cursors(pilot):
    """A focused Input's cursor blinks every 0.5 s; on a loaded machine the snapshot caught it in either phase."""
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False  # pauses the blink (Textual then shows the cursor steadily)
    await pilot.pause()


def app(start):
    from tui.app import DertaApp

    return DertaApp(runs_root="runs", start=start)


def test_models_screen(snap_compare, fixed_world):
    assert snap_compare(app("models"), run_before=steady_cursors)


def test_train_form(snap_compare, fixed_world):
    assert snap_compare(app("train"), run_before=steady_cursors)


def test_train_monitor_follows_a_run(snap_compare, fixed_world):
    async def follow(pilot):
        pilot.app.follow_run(Path("runs/snap-run"))
        await pilot.pause(0.3)
        await steady_cursors(pilot)

    assert snap_compare(app("models"), run_before=follow)


def test_runs_screen(snap_compare, fixed_world):
    assert snap_compare(app("runs"), run_before=steady_cursors)


def test_run_detail(snap_compare, fixed_world):
    assert snap_compare(app("runs"), press=["enter", "_"], run_before=steady_cursors)


def test_probe_setup(snap_compare, fixed_world):
    async def same_path_everywhere(pilot):  # the default is the installed demo file's full path
        pilot.app.screen.query_one("#p-data").value = "derta_mlx/demo/safety_heldout.jsonl"
        await steady_cursors(pilot)

    assert snap_compare(app("probe"), run_before=same_path_everywhere)
