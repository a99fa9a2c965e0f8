"""The dataset catalogue (`datasets.yaml` beside this module): named public datasets and their files."""

import difflib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from derta_mlx.common.errors import UserError

CATALOGUE = Path(__file__).with_name("datasets.yaml")
SOURCES = ("hub", "github")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    repo: str
    description: str
    schema: str
    role: str
    licence: str
    default_split: str
    splits: Dict[str, List[str]]
    source: str = "hub"

    def files(self, split: Optional[str]) -> List[str]:
        split = split or self.default_split
        if split not in self.splits:
            raise UserError(f"{self.name} has no split {split!r}; its splits: {', '.join(self.splits)}")
        return self.splits[split]


def load_catalogue(path: Path = CATALOGUE) -> Dict[str, DatasetEntry]:
    from derta_mlx.data.fetch.schemas import SCHEMAS

    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {f.name for f in fields(DatasetEntry)} - {"name"}
    entries = {}
    for name, spec in raw.items():
        unknown = set(spec) - known
        if unknown:
            raise UserError(f"{path}: dataset {name!r}: unknown field(s) {sorted(unknown)}")
        entry = DatasetEntry(name=name, **spec)
        if entry.schema not in SCHEMAS or entry.source not in SOURCES or entry.default_split not in entry.splits:
            raise UserError(f"{path}: dataset {name!r}: schema, source or default_split is not one we know")
        entries[name] = entry
    return entries


def find_dataset(name: str) -> DatasetEntry:
    entries = load_catalogue()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, list(entries), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(f"no dataset {name!r} in the catalogue{hint}; `derta-mlx data fetch --list` shows them, "
                    "and OWNER/NAME --schema S --file PATH fetches any hub dataset")
