"""The run directory: runs/NAME/ with config.yaml, metrics.jsonl, adapters, checkpoints, results."""

import json
import time
from pathlib import Path
from typing import List

from .atomic import write_text
from .errors import UserError

RUNS = Path("runs")


def new_run_dir(requested, model_name: str, method: str) -> Path:
    """The requested directory (must be new or empty), or runs/<model>-<method>-<time>.

    Only the path: it is created once the model and data have loaded, so a bad input leaves
    nothing behind.
    """
    if requested:
        path = Path(requested)
        if path.exists() and any(path.iterdir()):
            raise UserError(f"{path} already holds a run; use --resume {path} to continue it, or another --out")
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
