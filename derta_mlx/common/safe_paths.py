"""Writes stay where the user pointed: no write through a symlink, over an input, or over a folder
that is not the tool's own.

A symlink planted in a run, eval or cache folder (RUN/.lock -> ~/notes.txt) would otherwise turn
an append or a truncate into a write on its target; an `--out` equal to an input would destroy
the input; `--overwrite` must never delete a folder of the user's (or the current directory).
"""

import os
from pathlib import Path
from typing import Iterable, Optional

from derta_mlx.common.errors import UserError

_FLAGS = {"a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "a+": os.O_RDWR | os.O_APPEND | os.O_CREAT,
          "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}


def refuse_link(path) -> None:
    """A one-line error if `path` is a symbolic link (dangling or not)."""
    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link (to {os.readlink(path)}); derta-mlx does not write through "
                        "links in its own folders: remove the link and run again")


def open_own(path, mode: str = "a", encoding: Optional[str] = "utf-8"):
    """open(path, mode) for a file the tool owns, never following a symlink at `path`.
    mode: 'a', 'a+', 'w' or 'x' (text when encoding is given, else binary)."""
    path = Path(path)
    refuse_link(path)
    try:
        fd = os.open(path, _FLAGS[mode] | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        if path.is_symlink():  # appeared between the check and the open
            refuse_link(path)
        raise
    text_mode = mode.replace("x", "w")
    return os.fdopen(fd, text_mode if encoding else text_mode + "b", **({"encoding": encoding} if encoding else {}))


def same_file(a, b) -> bool:
    """Whether a and b name one file or folder: the same resolved path, or the same inode (hard links)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(out, inputs: Iterable, flag: str = "--out") -> None:
    """A one-line error if the output `out` is one of `inputs`, or a folder holding one of them."""
    out = Path(out)
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        if same_file(out, source):
            raise UserError(f"{flag} {out} is the input {source}; writing there would destroy it: give another {flag}")
        if out.exists() and out.is_dir() and source.exists() and source.resolve().is_relative_to(out.resolve()):
            raise UserError(f"{flag} {out} holds the input {source}; replacing it would delete the input: "
                            f"give another {flag}")


# what a model folder (Hugging Face, mlx-lm or ours) holds; anything else is someone's own file
MODEL_SUFFIXES = (".json", ".safetensors", ".model", ".tiktoken", ".jinja")
MODEL_NAMES = {"merges.txt", "vocab.txt", "README.md", "LICENSE", "LICENSE.txt", "USE_POLICY.md", ".gitattributes"}
MARKER = ".derta-mlx-model"  # written into every folder `models convert` makes


def check_replaceable_dir(path, inputs: Iterable = (), flag: str = "--out") -> None:
    """`path` may be replaced by a new model folder: it is one the tool wrote (MARKER) or holds only a
    model's files, and it is not the current directory, an ancestor of it, or an input's folder."""
    path = Path(path)
    resolved, here = path.resolve(), Path.cwd().resolve()
    if here.is_relative_to(resolved):
        raise UserError(f"{flag} {path} is the current directory or one above it; --overwrite never replaces that")
    check_not_input(path, inputs, flag)
    if (path / MARKER).is_file():
        return
    foreign = sorted(p.name for p in path.iterdir()
                     if p.is_symlink() or not p.is_file()
                     or not (p.name.endswith(MODEL_SUFFIXES) or p.name in MODEL_NAMES or p.name == MARKER))
    has_model = (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    if foreign or not has_model:
        what = f"holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}" if foreign else \
            "holds no model (config.json and *.safetensors)"
        raise UserError(f"{flag} {path} {what}; --overwrite only replaces a model folder: give a new {flag}")
