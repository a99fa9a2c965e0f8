"""The embedded default: SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI), converted on first use."""

from pathlib import Path
from typing import Callable, Optional

from derta_mlx.common.assets import SMOLLM2_GGUF, AssetMissing, asset_path
from derta_mlx.common.errors import UserError
from derta_mlx.common.locks import exclusive
from derta_mlx.models.gguf.convert import convert_gguf


def ensure_embedded(out_dir: Path, notify: Optional[Callable[[str], None]] = None) -> Path:
    """Convert the bundled GGUF into an mlx-lm directory at `out_dir` unless it is already there."""
    if (out_dir / "config.json").is_file():
        return out_dir
    with exclusive(out_dir.parent / f".{out_dir.name}.lock"):
        if (out_dir / "config.json").is_file():  # another process converted it while this one waited
            return out_dir
        return _convert(out_dir, notify)


def _convert(out_dir: Path, notify) -> Path:
    try:
        gguf = asset_path(SMOLLM2_GGUF)
    except AssetMissing as exc:
        raise UserError(f"the embedded default model is missing: {exc}") from None
    if notify:
        notify(f"First use: converting {gguf.name} into {out_dir} ...")
    return convert_gguf(gguf, out_dir)
