"""A lock between processes, for work that must happen once (the embedded model's first conversion).

Two derta-mlx processes that both find the model unconverted (a probe started beside a training
run, or the ranks of a run on one Mac) would both convert it, and the second would find the
first's directory in its way. An flock on a file beside the directory makes the second wait and
then see the finished model; the kernel drops the lock if its holder dies.
"""

import fcntl
from contextlib import contextmanager
from pathlib import Path

from derta_mlx.common.safe_paths import open_own


@contextmanager
def exclusive(lock_file: Path):
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open_own(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the holder is done
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
