"""Dataset files from the Hugging Face hub, through huggingface_hub's shared cache.

huggingface_hub honours HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE, resumes a partial download and
draws its progress bar; this module only names the dataset repo and turns the hub's errors into
one line that says what to do.
"""

from pathlib import Path
from typing import Optional

from huggingface_hub import hf_hub_download, snapshot_download

from derta_mlx.common.hub_cache import hub_errors, offline


def dataset_file(repo: str, filename: str, revision: Optional[str] = None) -> Path:
    """The local path of one file of a dataset repo: from the cache, else downloaded into it."""
    with hub_errors(repo, revision, filename, "dataset", " (see its Files tab; --file names another)"):
        return Path(hf_hub_download(repo, filename, repo_type="dataset", revision=revision,
                                    local_files_only=offline()))


def looks_like_dataset_id(spec: str) -> bool:
    parts = str(spec).split("/")
    return len(parts) == 2 and all(parts) and not str(spec).startswith((".", "/", "~")) and not Path(spec).exists()


def dataset_folder(repo: str, revision: Optional[str] = None) -> Path:
    """A hub dataset repo's JSON Lines files (mlx-lm's train/valid/test.jsonl), from the cache or
    downloaded into it: `--data OWNER/NAME` as mlx-lm reads it."""
    with hub_errors(repo, revision, None, "dataset"):
        path = Path(snapshot_download(repo, repo_type="dataset", revision=revision,
                                      allow_patterns=["*.jsonl", "*.json", "*/*.jsonl"],
                                      local_files_only=offline()))
    return path
