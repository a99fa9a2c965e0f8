"""Checkpoints for exact resume: adapter, optimizer state, step, data cursor and what they came from.

Layout: RUN/checkpoints/step-0000050/{adapters.safetensors, optimizer.safetensors, state.json}.
A checkpoint is written into a hidden temporary folder and renamed into place, and
`RUN/checkpoints/latest` (a one-line file) is replaced atomically after it, so a kill at any
moment leaves the previous checkpoint intact; a pointer that names nothing complete (a kill
between two renames, an edit) falls back to the newest complete checkpoint. state.json also
holds the run's fingerprint (settings and data hashes, see fingerprint.py), which resume checks.
Randomness needs no saved state: LoRA dropout is reseeded from (seed, step) and RTO target
dropping from (seed, micro-batch) every step.
"""

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from derta_mlx.common.atomic import save_safetensors, write_json, write_text
from derta_mlx.common.errors import UserError
from derta_mlx.common.safe_paths import refuse_link

KEEP = 2
FILES = ("adapters.safetensors", "optimizer.safetensors", "state.json")
STEP_NAME = re.compile(r"step-\d{7}")


@dataclass(frozen=True)
class ResumeState:
    step: int  # optimizer steps completed
    micro_batch: int  # data cursor: micro-batches consumed
    tokens: int  # training tokens consumed
    path: Path
    window: dict  # the partial report window, so the next metrics row averages the same steps
    fingerprint: Optional[dict] = None  # None: a checkpoint from before fingerprints
    note: str = ""  # set when `latest` could not be followed


def save_checkpoint(run_dir: Path, step: int, micro_batch: int, tokens: int, model, optimizer,
                    window: dict, fingerprint: Optional[dict] = None) -> Path:
    root = run_dir / "checkpoints"
    refuse_link(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    refuse_link(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_safetensors(tmp / "adapters.safetensors", dict(tree_flatten(model.trainable_parameters())))
        save_safetensors(tmp / "optimizer.safetensors", dict(tree_flatten(optimizer.state)))
        write_json(tmp / "state.json", {"step": step, "micro_batch": micro_batch, "tokens": tokens,
                                        "window": window, "fingerprint": fingerprint})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk or a kill leaves no half checkpoint
        raise
    if final.exists():  # the same step again: swap by renames, so one complete copy always exists
        old = root / f".old-step-{step:07d}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    write_text(root / "latest", final.name + "\n")
    for old in complete_checkpoints(run_dir)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _read_state(path: Path) -> Optional[dict]:
    """state.json of a complete checkpoint directory, else None."""
    if not all((path / name).is_file() for name in FILES):
        return None
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        int(state["step"]), int(state["micro_batch"]), int(state["tokens"]), dict(state["window"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def complete_checkpoints(run_dir: Path) -> list:
    """The run's complete checkpoint directories, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if STEP_NAME.fullmatch(p.name) and _read_state(p) is not None)


def latest_checkpoint(run_dir: Path) -> Optional[ResumeState]:
    """The checkpoint `latest` names, if it is one of this run's and complete; else the newest
    complete one (with a note saying why)."""
    root = run_dir / "checkpoints"
    pointer = root / "latest"
    note = ""
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
        state = _read_state(root / name) if STEP_NAME.fullmatch(name) else None
        if state is not None:
            return _resume_state(root / name, state, "")
        note = f"checkpoints/latest names {name[:60]!r}, which is not a complete checkpoint of this run"
    found = complete_checkpoints(run_dir)
    if not found:
        return None
    if note:
        note += f"; using the newest complete one, {found[-1].name}"
    return _resume_state(found[-1], _read_state(found[-1]), note)


def _resume_state(path: Path, state: dict, note: str) -> ResumeState:
    return ResumeState(int(state["step"]), int(state["micro_batch"]), int(state["tokens"]), path,
                       state["window"], state.get("fingerprint"), note)


def check_same_tree(what: str, path: Path, saved: dict, expected: dict) -> None:
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    wrong = [k for k in sorted(set(saved) & set(expected)) if tuple(saved[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
                 f"{wrong[0]} is {tuple(saved[wrong[0]].shape)}, the model wants {tuple(expected[wrong[0]].shape)}"
                 if wrong else ""]
        raise UserError(f"{path}: the {what} do not fit the model: " + "; ".join(p for p in parts if p)
                        + " (were lora_rank, num_layers, lora_keys or the model changed since it was saved?)")


def restore(checkpoint: ResumeState, model, optimizer) -> None:
    """Load a checkpoint into model and optimizer; every tensor must be there and fit."""
    adapters_file, optimizer_file = checkpoint.path / "adapters.safetensors", checkpoint.path / "optimizer.safetensors"
    try:
        adapters, state = mx.load(str(adapters_file)), mx.load(str(optimizer_file))
    except (RuntimeError, ValueError, OSError) as exc:
        raise UserError(f"{checkpoint.path}: cannot read the checkpoint: {exc}") from None
    check_same_tree("adapter weights", adapters_file, adapters, dict(tree_flatten(model.trainable_parameters())))
    model.load_weights(list(adapters.items()), strict=False)  # the base's weights are not in a checkpoint
    optimizer.state = tree_unflatten(list(state.items()))
    mx.eval(model.parameters(), optimizer.state)
