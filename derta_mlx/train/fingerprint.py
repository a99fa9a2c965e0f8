"""What a checkpoint was trained from: its settings and a hash of each data file.

Resume compares the checkpoint's fingerprint with config.yaml and the data on disk now, so an
edited learning rate or a replaced data file is refused instead of silently mixed into a run
that claims to continue the old one.
"""

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import List

from derta_mlx.data.formats import data_files
from derta_mlx.data.mixing import spec_paths
from derta_mlx.demo import demo_paths
from derta_mlx.train.config import TrainConfig

# Settings that change what is logged or where, not what is trained: free to differ on resume.
FREE = ("adapter_path", "probe_after", "report_to", "project_name", "steps_per_report", "steps_per_eval",
        "save_every", "val_batches", "probe_every")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "missing"
    return digest.hexdigest()


def fingerprint(cfg: TrainConfig) -> dict:
    settings = {k: v for k, v in asdict(cfg).items() if k not in FREE}
    files = data_files(spec_paths(cfg.data) or demo_paths("train")) + data_files(cfg.val_data)
    return {"settings": settings, "data": {str(f): _sha256(f) for f in files}}


def differences(saved: dict, now: dict) -> List[str]:
    """What changed between two fingerprints, one short phrase each."""
    found = []
    old, new = saved.get("settings", {}), now["settings"]
    for key in sorted(set(old) | set(new)):
        if key not in FREE and old.get(key) != new.get(key):
            found.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    old_data, new_data = saved.get("data", {}), now["data"]
    for name in sorted(set(old_data) | set(new_data)):
        if name not in new_data:
            found.append(f"data file {name} no longer used")
        elif name not in old_data:
            found.append(f"data file {name} added")
        elif new_data[name] == "missing":
            found.append(f"data file {name} is missing")
        elif old_data[name] != new_data[name]:
            found.append(f"data file {name} changed")
    return found
