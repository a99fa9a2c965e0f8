"""`data fetch`: resolve a dataset, get its files, convert every record, write one JSON Lines file.

Nothing is written unless at least one row converts, and then atomically; the summary says how
many rows were kept, and how many were left out and why (bad records by FILE:LINE). No record's
text is ever printed: these files hold harmful answers.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from derta_mlx.common.atomic import write_text
from derta_mlx.common.errors import UserError
from derta_mlx.data.fetch.catalogue import DatasetEntry, find_dataset, load_catalogue
from derta_mlx.data.fetch.download import dataset_file
from derta_mlx.data.fetch.records import iter_records
from derta_mlx.data.fetch.refusing import apply_rule
from derta_mlx.data.fetch.schemas import SCHEMAS, Outcome
from derta_mlx.data.formats import content_key

BAD_ROWS_SHOWN = 10
RULE_WORDS = {"refuses": "refuse in their first sentence", "rewritten": "rewritten to open with a refusal",
              "kept": "kept without a refusal"}


@dataclass(frozen=True)
class FetchRequest:
    name: str  # a catalogue name, or OWNER/NAME of any hub dataset (then schema and files are needed)
    split: Optional[str] = None
    limit: Optional[int] = None
    out: Optional[str] = None
    revision: Optional[str] = None
    local: Optional[str] = None  # --from: a file, or a folder holding the split's files (a git clone)
    schema: Optional[str] = None
    files: Tuple[str, ...] = ()
    non_refusing: str = "drop"
    force: bool = False


@dataclass
class FetchSummary:
    out: Path
    kinds: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    bad: List[str] = field(default_factory=list)
    safe_rules: Counter = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return sum(self.kinds.values())

    def lines(self) -> List[str]:
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.kinds.items())
        lines = [f"wrote {self.kept} rows to {self.out}: {kinds}"]
        if self.safe_rules:
            lines.append("safe answers: " + ", ".join(f"{n} {RULE_WORDS[rule]}" for rule, n in self.safe_rules.items()))
        if self.dropped or self.bad:
            reasons = [f"{n} {reason}" for reason, n in self.dropped.most_common()]
            reasons += [f"{len(self.bad)} bad record(s)"] if self.bad else []
            lines.append(f"left out {sum(self.dropped.values()) + len(self.bad)}: " + ", ".join(reasons))
        lines += self.bad[:BAD_ROWS_SHOWN]
        if len(self.bad) > BAD_ROWS_SHOWN:
            lines.append(f"... and {len(self.bad) - BAD_ROWS_SHOWN} more bad record(s)")
        return lines


def resolve_entry(request: FetchRequest) -> DatasetEntry:
    """The catalogue's entry, or an ad-hoc one for OWNER/NAME with --schema and --file."""
    if request.name in load_catalogue():
        entry = find_dataset(request.name)
        if request.schema and request.schema != entry.schema:
            raise UserError(f"{entry.name} is read with schema {entry.schema!r}; --schema is for OWNER/NAME datasets")
        return entry
    if "/" not in request.name:
        return find_dataset(request.name)  # raises, with the closest name
    if not request.schema or not request.files:
        raise UserError(f"{request.name} is not in the catalogue: say how to read it with --schema "
                        f"({'|'.join(SCHEMAS)}) and which files with --file PATH")
    if request.schema not in SCHEMAS:
        raise UserError(f"--schema {request.schema!r}: one of {', '.join(SCHEMAS)}")
    return DatasetEntry(name=request.name.replace("/", "--"), repo=request.name, description="",
                        schema=request.schema, role="", default_split="files",
                        licence=f"not in our catalogue: read https://huggingface.co/datasets/{request.name}",
                        splits={"files": list(request.files)})


def _local_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / Path(name).name):
        if candidate.is_file():
            return candidate
    raise UserError(f"--from {folder}: no {name} in it (nor {Path(name).name})")


def source_files(entry: DatasetEntry, request: FetchRequest, notify) -> List[Tuple[str, Path]]:
    """(the file's name in the dataset, its local path) for each file of the split."""
    names = list(request.files) or entry.files(request.split)
    if request.local:
        local = Path(request.local)
        if local.is_file():
            return [(local.name, local)]
        if not local.is_dir():
            raise UserError(f"--from {local}: no such file or folder")
        return [(name, _local_file(local, name)) for name in names]
    if entry.source == "github":
        raise UserError(f"{entry.name} is published on GitHub, not the hub: `git clone "
                        f"https://github.com/{entry.repo}` and fetch with --from CLONE")
    found = []
    for name in names:
        notify(f"{entry.repo}/{name}")
        found.append((name, dataset_file(entry.repo, name, request.revision)))
    return found


def _outcomes(entry: DatasetEntry, files, notify) -> Iterator[Outcome]:
    convert = SCHEMAS[entry.schema]
    for name, path in files:
        notify(f"converting {name} ({entry.schema})")  # ~30K records a second
        yield from convert(iter_records(path), f"{entry.name}/{name}")


def _kind(row: dict) -> str:
    if "harmful_response" in row:
        return "safety triples"
    return "DeRTa rows" if "prefix" in row else "helpfulness rows"


def _collect(outcomes: Iterator[Outcome], request: FetchRequest, summary: FetchSummary) -> List[str]:
    """The JSON lines to write; every record left out is counted in `summary` with its reason."""
    seen, lines = set(), []
    for outcome in outcomes:
        if request.limit is not None and summary.kept >= request.limit:
            break
        row = outcome.row
        if outcome.bad:
            summary.bad.append(f"{outcome.where}: {outcome.reason}")
            continue
        if row is None:
            summary.dropped[outcome.reason] += 1
            continue
        key = content_key(outcome.parsed)  # as read_rows judges duplicates
        if key in seen:  # a duplicate would leak across the train/validation split
            summary.dropped["duplicate of an earlier row"] += 1
            continue
        seen.add(key)
        if "harmful_response" in row:
            row, rule = apply_rule(row, request.non_refusing)
            if row is None:
                summary.dropped[rule] += 1
                continue
            summary.safe_rules[rule] += 1
        summary.kinds[_kind(row)] += 1
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    return lines


def fetch(request: FetchRequest, notify: Callable[[str], None]) -> FetchSummary:
    entry = resolve_entry(request)
    out = Path(request.out or Path("data") / f"{entry.name}-{request.split or entry.default_split}.jsonl")
    if out.exists() and not request.force:
        raise UserError(f"{out} already exists; --force replaces it, or name another with --out")
    notify(f"{entry.name}: {entry.repo}; licence: {entry.licence}")
    files = source_files(entry, request, notify)
    summary = FetchSummary(out)
    lines = _collect(_outcomes(entry, files, notify), request, summary)  # an unreadable file raises: nothing written
    if not lines:
        first = f"; first bad record: {summary.bad[0]}" if summary.bad else ""
        raise UserError(f"no rows converted from {entry.name}, nothing written "
                        f"({dict(summary.dropped) or 'no records'}){first}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, "".join(lines))
    return summary
