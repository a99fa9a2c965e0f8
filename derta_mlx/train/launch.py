"""Training in a separate process, so that a run outlives whatever started it (the TUI).

The child is `python -m derta_mlx train` in a session of its own: closing the terminal or
pressing Ctrl-C in the UI does not reach it. It writes the run directory as any CLI run does;
its console output goes to RUNS/.launch/NAME/train.log (not into the run directory, which
`train --out` insists is new). Stopping sends SIGINT: the trainer finishes the current step,
writes a checkpoint and marks the run stopped.
"""

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from derta_mlx.common.atomic import write_text
from derta_mlx.common.errors import UserError
from derta_mlx.common.safe_paths import open_own
from derta_mlx.train.claim import holder_pid, run_is_live
from derta_mlx.train.config import TrainConfig, dump_config
from derta_mlx.train.rundir import new_run_dir


def launch_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / ".launch" / run_dir.name


def launch_log(run_dir) -> Path:
    return launch_dir(run_dir) / "train.log"


def _spawn(args, run_dir: Path) -> subprocess.Popen:
    side = launch_dir(run_dir)
    side.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open_own(side / "train.log", "a") as log:
        return subprocess.Popen([sys.executable, "-m", "derta_mlx", "train", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def launch_training(cfg: TrainConfig, run_dir) -> subprocess.Popen:
    """Start a new run of `cfg` into run_dir (which must be new or empty)."""
    cfg.validate()
    run_dir = new_run_dir(str(run_dir), cfg.model or "default", cfg.method)
    side = launch_dir(run_dir)
    side.mkdir(parents=True, exist_ok=True)
    config_file = side / "launch.yaml"
    write_text(config_file, dump_config(replace(cfg, adapter_path=str(run_dir))))
    return _spawn(["--config", str(config_file), "--out", str(run_dir)], run_dir)


def resume_training(run_dir) -> subprocess.Popen:
    """Continue run_dir from its last checkpoint, in a new process."""
    return _spawn(["--resume", str(run_dir)], Path(run_dir))


def stop_training(run_dir, process=None) -> bool:
    """Ask the process training run_dir to stop after its current step; False if none runs.

    Only the process that holds the run's lock (claim.py) is signalled, never just the pid in
    status.json, which may by now belong to anything. `process` (the Popen that launched it)
    covers the moment before the child has claimed the directory.
    """
    pid = holder_pid(run_dir) if run_is_live(run_dir) else None
    if pid is None and process is not None and process.poll() is None:
        pid = process.pid
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise UserError(f"cannot signal process {pid}: {exc}") from None
    return True
