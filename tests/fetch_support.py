"""A hub cache pre-filled with the catalogue's dataset files, made from our own mild rows.

`tests/data/fetch/*.jsonl` hold hand-written rows in each dataset's real schema; here they are
packaged as each repo publishes them (JSON Lines, gzip, xz, a JSON array, Parquet) and laid out
as huggingface_hub lays out a dataset repo: datasets--OWNER--NAME/{blobs,refs/main,snapshots/COMMIT}.
"""

import gzip
import hashlib
import io
import json
import lzma
import os
from pathlib import Path

DATA = Path(__file__).parent / "data" / "fetch"
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def rows(name: str) -> list:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def json_array(records) -> bytes:
    return json.dumps(records, indent=4).encode()  # several lines per record, as the repos publish them


def parquet(records) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue()


def fill_dataset(hub_cache: Path, repo: str, files: dict) -> Path:
    """One dataset repo in the cache; returns its snapshot folder."""
    repo_dir = Path(hub_cache) / ("datasets--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    for name, content in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return snapshot


def fill_catalogue(hub_cache: Path) -> None:
    """Every hub dataset of the catalogue, with our rows in its real files."""
    safe = rows("pku_saferlhf.jsonl")
    fill_dataset(hub_cache, "PKU-Alignment/PKU-SafeRLHF", {
        "data/Alpaca-7B/train.jsonl": jsonl(safe[:5]),
        "data/Alpaca2-7B/train.jsonl": jsonl(safe[5:]),
        "data/Alpaca3-8B/train.jsonl": jsonl(safe[:1]),  # the same pair again: a duplicate
    })
    beaver = jsonl(rows("beavertails.jsonl"))
    fill_dataset(hub_cache, "PKU-Alignment/BeaverTails", {
        "round0/30k/train.jsonl.gz": gzip.compress(beaver),
        "round0/330k/train.jsonl.xz": lzma.compress(beaver),
    })
    alpaca = rows("alpaca.jsonl")
    fill_dataset(hub_cache, "tatsu-lab/alpaca", {"data/train-00000-of-00001-a09b74b3ef9c3b56.parquet": parquet(alpaca)})
    cleaned = [{k: r[k] for k in ("instruction", "input", "output")} for r in alpaca]
    fill_dataset(hub_cache, "yahma/alpaca-cleaned", {"alpaca_data_cleaned.json": json_array(cleaned)})
    fill_dataset(hub_cache, "cognitivecomputations/WizardLM_alpaca_evol_instruct_70k_unfiltered",
                 {"WizardLM_alpaca_evol_instruct_70k_unfiltered.json": json_array(rows("wizardlm.jsonl"))})
