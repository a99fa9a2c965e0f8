"""Who owns a run directory: an exclusive lock on RUN/.lock, held by the training process.

A run claims its directory before it loads anything, so two `train --out runs/x` started
together cannot both pass the "is it new?" check and interleave their files. The lock is an
flock on an open file, so the kernel drops it when the process dies (kill -9 included): a
directory whose lock nobody holds has no live run, whatever status.json says. The lock file
stays in place after a run (removing it would let two late comers lock two different files).
"""

import fcntl
import os
import time
from pathlib import Path

from derta_mlx.common.errors import UserError
from derta_mlx.common.safe_paths import open_own

LOCK = ".lock"
# What a start that failed or was killed before writing config.yaml may leave: such a directory
# can be claimed again by `--out`.
START_FILES = {LOCK, "status.json"}


class RunClaim:
    """This process's hold on a run directory, for the length of the run."""

    def __init__(self, path: Path, handle, created: bool):
        self.path, self.handle, self.created = path, handle, created

    def release(self) -> None:
        if not self.handle.closed:
            self.handle.close()  # closing drops the flock

    def abandon(self) -> None:
        """A start that failed before writing the run: take away what the claim put there."""
        for name in START_FILES:
            (self.path / name).unlink(missing_ok=True)
        if self.created:
            try:
                self.path.rmdir()
            except OSError:  # something else was put there meanwhile: leave it
                pass
        self.release()


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def claim_run_dir(path: Path, new: bool, wait_s: float = 2.0) -> RunClaim:
    """Lock `path` (created if missing) for this process. `new`: it must not hold a run yet.

    Waits up to `wait_s` for the lock, so that a quick look by another process (run_is_live)
    does not turn a start away; a run that holds it is reported with its pid.
    """
    path = Path(path)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = open_own(path / LOCK, "a+")
    except OSError as exc:
        raise UserError(f"{path}: cannot create the run directory: {exc.strerror}") from None
    deadline = time.monotonic() + wait_s
    while not _try_lock(handle):
        if time.monotonic() > deadline:
            handle.close()
            raise UserError(f"{path} is in use by another derta-mlx process (pid {holder_pid(path) or '?'}): "
                            "wait for it to end, or stop it, or use another --out")
        time.sleep(0.05)
    claim = RunClaim(path, handle, created)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    if new:
        extra = sorted(p.name for p in path.iterdir() if p.name not in START_FILES)
        if extra:
            claim.release()
            if "config.yaml" in extra:
                raise UserError(f"{path} already holds a run; use --resume {path} to continue it, or another --out")
            raise UserError(f"{path} is not empty ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); "
                            "give a new or empty directory to --out")
    return claim


def holder_pid(path):
    """The pid the lock's holder wrote into it (None if unreadable)."""
    try:
        return int((Path(path) / LOCK).read_text().strip())
    except (OSError, ValueError):
        return None


def run_is_live(path) -> bool:
    """True while a process holds the run's lock (its status.json pid is then that process).
    Opens the lock read-only, so runs on a read-only disk can still be listed."""
    try:
        handle = open(Path(path) / LOCK, "rb")
    except OSError:
        return False
    with handle:
        if not _try_lock(handle):
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
