"""Running the CLI in a subprocess, as a user does (tests import this beside their fixtures)."""

import subprocess
import sys


def train_cli(*args, wait=True):
    """`derta-mlx train ARGS`: the finished process, or (wait=False) the running Popen."""
    cmd = [sys.executable, "-m", "derta_mlx", "train", *args]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)
