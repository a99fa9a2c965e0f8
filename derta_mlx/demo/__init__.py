"""Bundled mild demo data (written for this project; see README.md here)."""

from pathlib import Path

_HERE = Path(__file__).parent
FILES = {
    "train": ["safety_train.jsonl", "helpful.jsonl", "borderline.jsonl"],
    "heldout": ["safety_heldout.jsonl"],
}
# The main job's mix, as --data FILE:RATIO specs: rows of each file (a seeded sample of the safety
# triples). Chosen by bench/ablation.py sweeps of the borderline share and the safety share
# (docs/method.md): all 250 borderline rows and 80 of the 120 triples halved over-refusal of the
# held-out borderline prompts and kept coherent refusal at every k.
TRAIN_MIX = {"safety_train.jsonl": 80, "helpful.jsonl": 140, "borderline.jsonl": 250}


def demo_paths(split: str):
    return [_HERE / name for name in FILES[split]]


def demo_mix() -> list:
    """The main job's training data as mixing specs (`PATH:ROWS`)."""
    return [f"{_HERE / name}:{TRAIN_MIX[name]}" for name in FILES["train"]]
