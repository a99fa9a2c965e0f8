"""Atomic writes: a file is either its old content or its new content, never half of either."""

import json
import os
from pathlib import Path

from derta_mlx.common.safe_paths import open_own, refuse_link


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(tmp: Path, final: Path, write) -> None:
    """write(tmp), then rename it over final; a failed write (a full disk) leaves no temporary.
    A symlink at final is refused (not replaced, not followed); one at tmp is removed unfollowed."""
    refuse_link(final)
    tmp.unlink(missing_ok=True)
    try:
        write()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def write_text(path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")

    def write() -> None:
        with open_own(tmp, "x") as handle:
            handle.write(text)

    _replace(tmp, path, write)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def save_safetensors(path, arrays: dict, metadata: dict = None) -> None:
    import mlx.core as mx

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.safetensors")  # MLX insists on the suffix
    _replace(tmp, path, lambda: mx.save_safetensors(str(tmp), arrays, metadata=metadata or {}))
