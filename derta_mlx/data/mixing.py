"""`train --data safety.jsonl:1 helpful.jsonl:3`: several data files mixed in stated proportions.

DeRTa trained on a mix of safety and helpfulness data (3K + 3K safety rows beside 60K helpful
ones). A ratio after a file (or folder) sets its share of the training rows: the file that runs
out first sets the total, and every other file gives a seeded sample of its rows in proportion.
A row is never repeated (a repeat would leak across the train/validation split). Without ratios
every row of every file is used, as before. The ratios stay in config.yaml's `data:` list as
typed, with the seed; the counts each gave are written beside them as a comment.
"""

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from derta_mlx.common.progress import notify_stderr
from derta_mlx.data.formats import (
    DataError,
    Row,
    drop_duplicates,
    read_files,
    read_rows,
)

_NUMBERISH = re.compile(r"[\d.,eE+-]+")


@dataclass(frozen=True)
class DataSpec:
    path: str
    ratio: Optional[float] = None


@dataclass(frozen=True)
class MixPart:
    path: str
    ratio: float
    available: int
    taken: int


def parse_spec(text: str) -> DataSpec:
    """`FILE` or `FILE:RATIO`; a path that exists as written is a path even with a colon in it."""
    text = str(text)
    path, colon, ratio = text.rpartition(":")
    if not colon or Path(text).exists() or not path:
        return DataSpec(text)
    try:
        value = float(ratio)
    except ValueError:
        if Path(path).exists() or _NUMBERISH.fullmatch(ratio):  # else a colon in a missing path's name
            raise DataError(f"{text}: the ratio after ':' must be a positive number, got {ratio!r}") from None
        return DataSpec(text)
    if not math.isfinite(value) or value <= 0:
        raise DataError(f"{text}: the ratio after ':' must be a positive number, got {ratio!r}")
    return DataSpec(path, value)


def parse_specs(texts: Sequence[str]) -> List[DataSpec]:
    specs = [parse_spec(text) for text in texts]
    rated = [s for s in specs if s.ratio is not None]
    if rated and len(rated) != len(specs):
        plain = next(s.path for s in specs if s.ratio is None)
        raise DataError(f"{plain}: give every data file a ratio (FILE:RATIO) or none; "
                        f"{len(rated)} of {len(specs)} have one")
    return specs


def spec_paths(texts: Sequence[str]) -> List[str]:
    """The paths of data specs, ratios left off."""
    return [spec.path for spec in parse_specs(texts)]


def _shares(specs: List[DataSpec], sizes: List[int]) -> List[int]:
    unit = min(size / spec.ratio for spec, size in zip(specs, sizes))
    takes = [min(size, math.floor(spec.ratio * unit + 1e-9)) for spec, size in zip(specs, sizes)]
    for spec, take in zip(specs, takes):
        if take == 0:
            raise DataError(f"{spec.path}:{spec.ratio:g}: its share of the mix is less than one row; "
                            "raise its ratio or add rows to the other files")
    return takes


def mix_rows(texts: Sequence[str], seed: int,
             notify: Callable[[str], None] = notify_stderr) -> Tuple[List[Row], List[MixPart]]:
    """The training rows of `--data` specs and, when ratios are given, what each file gave."""
    specs = parse_specs(texts)
    if all(spec.ratio is None for spec in specs):
        return read_rows([spec.path for spec in specs], notify), []
    groups = [read_files([spec.path]) for spec in specs]
    kept = {id(row) for row in drop_duplicates([row for rows in groups for row in rows], notify)}
    groups = [[row for row in rows if id(row) in kept] for rows in groups]
    for spec, rows in zip(specs, groups):
        if not rows:
            raise DataError(f"{spec.path}: every row duplicates a row of an earlier --data file; nothing to mix")
    takes = _shares(specs, [len(rows) for rows in groups])
    rng = random.Random(f"mix:{seed}")
    mixed, parts = [], []
    for spec, rows, take in zip(specs, groups, takes):
        chosen = sorted(rng.sample(range(len(rows)), take))
        mixed.extend(rows[i] for i in chosen)
        parts.append(MixPart(spec.path, spec.ratio, len(rows), take))
    return mixed, parts


def describe_mix(parts: List[MixPart], seed: int) -> str:
    """What each file gave; `available` counts a file's rows after duplicates were dropped."""
    return f"data mix (seed {seed}): " + ", ".join(
        f"{part.path} {part.taken} of {part.available} rows (ratio {part.ratio:g})" for part in parts)
