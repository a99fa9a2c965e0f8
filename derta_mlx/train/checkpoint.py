"""Checkpoints for exact resume: adapter, optimizer state, step and data cursor.

Layout: RUN/checkpoints/step-0000050/{adapters.safetensors, optimizer.safetensors, state.json}.
A checkpoint is written into a hidden temporary folder and renamed into place, and
`RUN/checkpoints/latest` (a one-line file) is replaced atomically after it, so a kill at any
moment leaves the previous checkpoint intact. Randomness needs no saved state: LoRA dropout is
reseeded from (seed, step) and RTO target dropping from (seed, micro-batch) every step.
"""

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from derta_mlx.common.atomic import save_safetensors, write_json, write_text

KEEP = 2


@dataclass(frozen=True)
class ResumeState:
    step: int  # optimizer steps completed
    micro_batch: int  # data cursor: micro-batches consumed
    tokens: int  # training tokens consumed
    path: Path
    window: dict  # the partial report window, so the next metrics row averages the same steps


def save_checkpoint(run_dir: Path, step: int, micro_batch: int, tokens: int, model, optimizer,
                    window: dict) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_safetensors(tmp / "adapters.safetensors", dict(tree_flatten(model.trainable_parameters())))
    save_safetensors(tmp / "optimizer.safetensors", dict(tree_flatten(optimizer.state)))
    write_json(tmp / "state.json", {"step": step, "micro_batch": micro_batch, "tokens": tokens,
                                         "window": window})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text(root / "latest", final.name + "\n")
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Optional[ResumeState]:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    state = json.loads((path / "state.json").read_text())
    return ResumeState(state["step"], state["micro_batch"], state["tokens"], path, state["window"])


def restore(checkpoint: ResumeState, model, optimizer) -> None:
    model.load_weights(list(mx.load(str(checkpoint.path / "adapters.safetensors")).items()), strict=False)
    optimizer.state = tree_unflatten(list(mx.load(str(checkpoint.path / "optimizer.safetensors")).items()))
    mx.eval(model.parameters(), optimizer.state)
