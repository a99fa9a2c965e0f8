"""Batched greedy generation into a resumable per-sample record file.

Each finished sample is one line of `records.jsonl`, written with a single append and synced
after every batch, so a kill loses at most the batch in flight. On a rerun, samples whose
(suite, id, prompt) already have a record are skipped; a torn last line is cut off first.
Batches are formed in suite order over the samples still to do, so a run resumed at a batch
boundary decodes exactly the batches an uninterrupted run would.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from derta_mlx.common.safe_paths import refuse_link

RECORDS = "records.jsonl"
Key = Tuple[str, str, str]


@dataclass(frozen=True)
class Job:
    suite: str
    id: str
    prompt: str  # the exact text sent (for completion attacks: the raw lead-in)
    ids: Tuple[int, ...]

    @property
    def key(self) -> Key:
        return (self.suite, self.id, self.prompt)


@dataclass
class GenerationStats:
    samples: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def record_key(record: dict) -> Key:
    return (record["suite"], str(record["id"]), record["prompt"])


def repair_tail(path: Path) -> int:
    """Cut a torn last line (a kill mid-write) so appends start on a fresh line; bytes cut."""
    refuse_link(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as handle:
        handle.truncate(keep)
    return len(data) - keep


def read_records(path) -> List[dict]:
    """Every complete record, in file order; unreadable lines are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and {"suite", "id", "prompt"} <= set(record):
            out.append(record)
    return out


def append_records(path: Path, records: Sequence[dict]) -> None:
    refuse_link(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        for record in records:
            os.write(fd, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def pending_jobs(jobs: Sequence[Job], path) -> List[Job]:
    """The jobs with no record in `path` yet (a torn last line is cut first)."""
    path = Path(path)
    repair_tail(path)
    done = {record_key(r) for r in read_records(path)}
    return [job for job in jobs if job.key not in done]


def generate_records(model, tokenizer, jobs: Sequence[Job], path, make_record: Callable[[Job, str, int], dict],
                     batch_size: int = 8, max_tokens: int = 128,
                     on_batch: Optional[Callable[[int, int, GenerationStats], None]] = None) -> GenerationStats:
    """Generate every job without a record in `path`, appending records batch by batch."""
    from mlx_lm.generate import batch_generate

    path = Path(path)
    pending = pending_jobs(jobs, path)
    stats = GenerationStats()
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        began = time.perf_counter()
        result = batch_generate(model, tokenizer, [list(j.ids) for j in chunk], max_tokens=max_tokens,
                                return_token_ids=True)
        stats.seconds += time.perf_counter() - began
        stats.tokens += sum(len(ids) for ids in result.token_ids)
        stats.samples += len(chunk)
        append_records(path, [make_record(job, text, len(ids))
                              for job, text, ids in zip(chunk, result.texts, result.token_ids)])
        if on_batch:
            on_batch(stats.samples, len(pending), stats)
    return stats


def latest_by_key(records: Sequence[dict]) -> Dict[Key, dict]:
    """The last record for each key (a re-judged record replaces an older one)."""
    return {record_key(r): r for r in records}
