"""`derta-mlx fuse` as its own process, for the TUI: the UI stays responsive, and a fuse it started
finishes even if the UI closes. Its output goes to RUNS/.launch/NAME/fuse.log and the gate's
numbers to fuse-gate.json beside it (written whether the gate passes or fails)."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from derta_mlx.common.safe_paths import open_own
from derta_mlx.fuse.job import default_out
from derta_mlx.fuse.report import format_gate_table
from derta_mlx.train.launch import launch_dir


@dataclass
class FuseLaunch:
    run_dir: Path
    out: Path
    process: subprocess.Popen
    log: Path
    gate_json: Path


@dataclass(frozen=True)
class FuseStatus:
    state: str  # running | passed | failed | skipped | error
    text: str  # the gate's table, or the error line


def launch_fuse(run_dir, out=None, dequantize: bool = False) -> FuseLaunch:
    run_dir = Path(run_dir)
    out = Path(out) if out else default_out(run_dir)
    side = launch_dir(run_dir)
    side.mkdir(parents=True, exist_ok=True)
    log, gate_json = side / "fuse.log", side / "fuse-gate.json"
    gate_json.unlink(missing_ok=True)  # an earlier fuse's numbers are not this one's
    args = ["--adapter-path", str(run_dir), "--out", str(out), "--gate-json", str(gate_json)]
    if dequantize:
        args.append("--dequantize")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open_own(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "derta_mlx", "fuse", *args], stdout=handle,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    return FuseLaunch(run_dir, out, process, log, gate_json)


def fuse_status(launch: FuseLaunch) -> FuseStatus:
    code = launch.process.poll()
    if code is None:
        return FuseStatus("running", _last_line(launch.log))
    gate = json.loads(launch.gate_json.read_text()) if launch.gate_json.is_file() else None
    if code == 0 and gate and gate.get("skipped"):
        return FuseStatus("skipped", f"fused into {launch.out}; the gate was skipped")
    if code == 0 and gate:
        return FuseStatus("passed", format_gate_table(gate) + f"\nwrote {launch.out}")
    if code == 1 and gate:
        return FuseStatus("failed", format_gate_table(gate) + "\nNot safe to ship: no fused model was written.")
    error = next((line for line in reversed(_lines(launch.log)) if "error:" in line), None)
    return FuseStatus("error", error or f"derta-mlx fuse exited with {code}; see {launch.log}")


def _lines(path: Path) -> list:
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []


def _last_line(path: Path) -> Optional[str]:
    lines = [line for line in _lines(path) if line.strip()]
    return lines[-1] if lines else "starting..."
