"""Bundled mild demo data (written for this project; see README.md here)."""

from pathlib import Path

_HERE = Path(__file__).parent
FILES = {
    "train": ["safety_train.jsonl", "helpful.jsonl"],
    "heldout": ["safety_heldout.jsonl"],
}


def demo_paths(split: str):
    return [_HERE / name for name in FILES[split]]
