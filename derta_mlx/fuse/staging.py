"""Where a fused model is built: a hidden directory beside --out, renamed into place only once it
is complete (and, with the gate on, shown to keep the adapter's refusals).

A killed fuse leaves only a hidden `.NAME.fusing-PID` directory; the next fuse to the same --out
removes it once that process is gone. An --out that exists and holds anything is never touched.
"""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from derta_mlx.common.errors import UserError

MARK = ".fusing-"


def check_out(out: Path) -> None:
    """--out must be new or an empty directory, in a directory that exists."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --out needs a new or empty directory")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; fuse never overwrites a directory: give a new --out")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such directory (the parent of --out must exist)")


def check_new_file(path: Path, flag: str, suffix: str) -> None:
    if path.suffix != suffix:
        raise UserError(f"{flag} {path}: the file name must end in {suffix}")
    if path.exists():
        raise UserError(f"{path} exists; fuse never overwrites a file: give a new {flag}")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such directory (the parent of {flag} must exist)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(out: Path) -> None:
    """Building directories of earlier fuses to `out` whose process has died (a kill -9)."""
    for path in out.parent.glob(f".{out.name}{MARK}*"):
        pid = path.name.rpartition(MARK)[2].partition(".")[0]  # a hidden GGUF ends in PID.gguf
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def hidden_beside(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}{MARK}{os.getpid()}{suffix}")


@contextmanager
def building(out: Path):
    """Yields the hidden directory to build in; on any failure (a gate that fails, an error, a
    Ctrl-C) it is removed, so nothing half-written is left."""
    remove_stale(out)
    tmp = hidden_beside(out)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)  # published (renamed away) or abandoned


def publish(tmp: Path, out: Path) -> None:
    """Rename the finished directory into place (over an empty --out, never a non-empty one)."""
    check_out(out)
    os.rename(tmp, out)  # atomic; replaces an empty directory, fails on a non-empty one
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_file(tmp: Path, final: Path) -> None:
    if final.exists():
        raise UserError(f"{final} appeared while fusing; fuse never overwrites a file")
    os.replace(tmp, final)
