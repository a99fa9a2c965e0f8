"""Hugging Face hub downloads: safetensors only, the same cache mlx-lm uses.

huggingface_hub itself honours HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE, resumes partial
files and draws progress bars; this module only narrows what is fetched so that no pickled
weights or remote code ever land on disk.
"""

from pathlib import Path
from typing import Optional

from huggingface_hub import constants, snapshot_download, try_to_load_from_cache

from derta_mlx.common.errors import UserError
from derta_mlx.common.hub_cache import hub_errors, not_cached_offline, offline

# What an mlx-lm model directory needs. No *.bin/*.pt/*.pth/*.pkl (pickles), no *.py (remote code).
ALLOW_PATTERNS = [
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
]


def looks_like_repo_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def cached_snapshot(repo: str, revision: Optional[str] = None) -> Optional[Path]:
    """The local snapshot of a repo if its config and weights are in the cache, else None."""
    config = try_to_load_from_cache(repo, "config.json", revision=revision)
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    return snapshot if any(snapshot.glob("*.safetensors")) else None


def download(repo: str, revision: Optional[str] = None) -> Path:
    """Fetch (or resume) a repo's safetensors snapshot into the hub cache; returns its folder."""
    if offline():
        found = cached_snapshot(repo, revision)
        if found is None:
            raise UserError(not_cached_offline(repo))
        return found
    with hub_errors(repo, revision):
        path = Path(snapshot_download(repo, revision=revision, allow_patterns=ALLOW_PATTERNS))
    if not any(path.glob("*.safetensors")):
        raise UserError(
            f"{repo} has no safetensors weights; derta-mlx never loads pickled weights. "
            "Convert it with `mlx_lm.convert` first."
        )
    return path


def cached_bytes(repo: str) -> int:
    """Bytes of `repo` in the hub cache so far, partial downloads included (for a progress bar)."""
    from huggingface_hub.file_download import repo_folder_name

    blobs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model") / "blobs"
    if not blobs.is_dir():
        return 0
    return sum(p.stat().st_size for p in blobs.iterdir() if p.is_file())
