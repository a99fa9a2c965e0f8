"""A model folder's own Python code is never run.

transformers runs a folder's code when a settings file names it (`auto_map`, `custom_pipelines`,
config's `model_file`) and the caller allows it, or asks on a terminal when the caller says
nothing. derta-mlx both forbids it at every load (`trust_remote_code=False`, checked by
tests/test_safe_paths.py) and refuses such a folder up front, reading the *parsed* keys: every
object at every depth, duplicates and JSON escapes ("auto\\u005fmap") included.
"""

import json
from pathlib import Path

from derta_mlx.common.errors import UserError

# the settings files transformers and mlx-lm read from a model folder
SETTINGS_FILES = ("config.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
                  "preprocessor_config.json", "processor_config.json", "chat_template.json")
REMOTE_CODE_KEYS = {"auto_map", "custom_pipelines", "model_file"}


def _keys_of(path: Path) -> list:
    """Every key of every JSON object in `path`, in file order, duplicates kept."""
    keys = []

    def collect(pairs):
        keys.extend(key for key, _ in pairs)
        return dict(pairs)

    try:
        json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=collect)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except (UnicodeDecodeError, RecursionError):
        raise UserError(f"{path}: not a JSON file of settings (not UTF-8, or nested too deeply)") from None
    return keys


def check_no_remote_code(model_dir) -> None:
    """A one-line error naming the file and key if the folder asks for code of its own."""
    model_dir = Path(model_dir)
    for name in SETTINGS_FILES:
        path = model_dir / name
        if not path.is_file():
            continue
        for key in _keys_of(path):
            if isinstance(key, str) and key.strip().lower() in REMOTE_CODE_KEYS:
                raise UserError(f"{path}: key {key!r} asks to run the folder's own Python code, which derta-mlx "
                                "never runs; use a model that transformers and mlx-lm support without it")
