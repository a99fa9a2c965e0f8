"""The best checkpoint by safety and helpfulness (`train --probe-every N`), kept beside `latest`.

Layout: RUN/checkpoints/best-0000040/{adapters.safetensors, adapter_config.json, config.yaml,
best.json} and the one-line pointer RUN/checkpoints/best. The folder is an adapter directory as
mlx-lm reads it (`--adapter-path` takes it), with the run's config.yaml so that probe and fuse
know the base and the refusal token. Written into a hidden folder and renamed into place, then
the pointer is replaced atomically: a kill at any moment leaves the previous best intact.

The score is computed by the probe layer (probe/during.py) and passed in; this module only
decides and keeps: a checkpoint that meets the floors beats one that does not, then the higher
score wins, then the earlier step (ties keep what was kept).
"""

import json
import re
import shutil
from pathlib import Path
from typing import Optional

from mlx.utils import tree_flatten

from derta_mlx.common.atomic import save_safetensors, write_json, write_text
from derta_mlx.common.errors import UserError
from derta_mlx.common.safe_paths import refuse_link

BEST_NAME = re.compile(r"best-\d{7}")
POINTER = "best"
RECORD = "best.json"


def best_dir(run_dir: Path) -> Optional[Path]:
    """The folder the `best` pointer names, when it is complete; else None."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / POINTER
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    folder = root / name
    if not BEST_NAME.fullmatch(name) or not all((folder / f).is_file() for f in ("adapters.safetensors", RECORD)):
        return None
    return folder


def best_record(run_dir: Path) -> Optional[dict]:
    """best.json of the kept best checkpoint ({"step", "score", "floors_met", "probe"}), or None."""
    folder = best_dir(run_dir)
    if folder is None:
        return None
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        float(record["score"]), int(record["step"]), bool(record["floors_met"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def beats(candidate: dict, kept: Optional[dict]) -> bool:
    if kept is None:
        return True
    return (candidate["floors_met"], candidate["score"]) > (kept["floors_met"], kept["score"])


def save_best(run_dir: Path, step: int, model, record: dict) -> Path:
    """Keep the model's adapter at `step` as the best checkpoint, with `record` as best.json."""
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    refuse_link(root)
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"best-{step:07d}", root / f".tmp-best-{step:07d}"
    refuse_link(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_safetensors(tmp / "adapters.safetensors", dict(tree_flatten(model.trainable_parameters())))
        for name in ("adapter_config.json", "config.yaml"):
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, tmp / name)
        write_json(tmp / RECORD, {**record, "step": step})
        shutil.rmtree(final, ignore_errors=True)  # the same step again (a resumed run): replaced whole
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text(root / POINTER, final.name + "\n")
    for old in root.iterdir():  # only the pointed-to best is kept
        if BEST_NAME.fullmatch(old.name) and old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(run_dir, checkpoint: Optional[str]) -> Path:
    """The adapter folder `--checkpoint` names: "final" (the run itself) or "best"."""
    run_dir = Path(run_dir)
    if checkpoint in (None, "final"):
        return run_dir
    if checkpoint != "best":
        raise UserError(f"--checkpoint {checkpoint}: expected final or best")
    folder = best_dir(run_dir)
    if folder is None:
        raise UserError(f"{run_dir}: no best checkpoint; train with --probe-every N to keep one "
                        "(the main job does), or leave out --checkpoint")
    return folder
