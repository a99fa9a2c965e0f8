"""The run directory: runs/NAME/ with config.yaml, metrics.jsonl, adapters, checkpoints, results."""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from derta_mlx.common.atomic import write_json, write_text
from derta_mlx.common.errors import UserError
from derta_mlx.train.checkpoint import latest_checkpoint
from derta_mlx.train.claim import LOCK, START_FILES, run_is_live
from derta_mlx.train.config import load_config

RUNS = Path("runs")


def new_run_dir(requested, model_name: str, method: str) -> Path:
    """The requested directory (must be new or empty), or runs/<model>-<method>-<time>.

    Only the path, checked early for a quick answer; claim_run_dir makes the check that counts
    (under the directory's lock) and creates it.
    """
    if requested:
        path = Path(requested)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file; --out needs a new or empty directory")
        if path.is_dir() and (path / "config.yaml").exists():
            raise UserError(f"{path} already holds a run; use --resume {path} to continue it, or another --out")
        if path.is_dir() and any(p.name not in START_FILES for p in path.iterdir()):
            raise UserError(f"{path} is not empty; give a new or empty directory to --out")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = RUNS / f"{Path(model_name).name}-{method}-{stamp}"
    return path


def read_metrics(run_dir: Path) -> List[dict]:
    """Rows of metrics.jsonl; a torn last line (a kill mid-write) is skipped."""
    rows = []
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def rewind_metrics(run_dir: Path, step: int) -> None:
    """Keep only rows up to the checkpoint being resumed from, so resumed rows follow on."""
    rows = [row for row in read_metrics(run_dir) if row.get("step", 0) <= step]
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in rows))


# Run status. run_training writes status.json at each change of state, with the pid of the
# process training it, so a run killed without a word (kill -9, a crash) is told apart from a
# live one: "running" with a dead pid reads as failed.
STATES = ("running", "finished", "stopped", "failed")


def write_status(run_dir: Path, state: str, **extra) -> None:
    write_json(run_dir / "status.json", {"state": state, "pid": os.getpid(), "time": time.time(), **extra})


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "status.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


@dataclass
class RunInfo:
    """One run directory as a list of runs shows it."""

    name: str
    path: Path
    status: str  # running | finished | stopped | failed
    method: str
    model: str
    step: int
    iters: int
    loss: Optional[float]
    mle: Optional[float]
    rto: Optional[float]
    val_loss: Optional[float]
    error: str
    pid: Optional[int]
    resumable: bool  # a checkpoint short of iters and no live process


def _last(rows: List[dict], key: str):
    for row in reversed(rows):
        if row.get(key) is not None:
            return row[key]
    return None


def run_info(run_dir) -> RunInfo:
    run_dir = Path(run_dir)
    try:
        cfg = load_config(run_dir / "config.yaml")
        method, model, iters = cfg.method, cfg.model or "default", cfg.iters
    except UserError:
        method, model, iters = "?", "?", 0
    rows = read_metrics(run_dir)
    step = _last(rows, "step") or 0
    status = read_status(run_dir)
    state, error, pid = status.get("state"), status.get("error", ""), status.get("pid")
    live = run_is_live(run_dir) if (run_dir / LOCK).is_file() else pid_alive(pid)  # runs from before the lock
    if state == "running" and not live:
        state, error = "failed", "the training process ended without a word (killed?)"
    if state not in STATES:  # a run from before status.json, or one that died while starting
        done = iters and step >= iters and (run_dir / "adapters.safetensors").exists()
        state = "finished" if done else "stopped" if (run_dir / "checkpoints").is_dir() else "failed"
    try:
        checkpoint = latest_checkpoint(run_dir)
    except (OSError, ValueError, KeyError):
        checkpoint = None
    # short of iters, or at iters but never marked finished (killed after its last checkpoint)
    resumable = state != "running" and checkpoint is not None and (checkpoint.step < iters or state != "finished")
    return RunInfo(run_dir.name, run_dir, state, method, model, step, iters, _last(rows, "loss"),
                   _last(rows, "mle"), _last(rows, "rto"), _last(rows, "val_loss"), error,
                   pid if state == "running" else None, resumable)


def list_runs(root=RUNS) -> List[RunInfo]:
    """Every run directory under root (those with a config.yaml), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "config.yaml").is_file()]
    found.sort(key=lambda p: (p / "config.yaml").stat().st_mtime, reverse=True)
    return [run_info(p) for p in found]
