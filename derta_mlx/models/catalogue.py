"""The model catalogue (`models/catalogue.yaml`) and where local weights live."""

import difflib
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import yaml

from derta_mlx.common.errors import UserError
from derta_mlx.models.arch import Arch

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # derta_mlx/
_SOURCE_MODELS_DIR = _PACKAGE_DIR.parent / "models"

SOURCES = ("hub", "embedded", "tiny")
TEMPLATES = ("derta", "chat", "auto")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    source: str
    family: str
    template: str
    refusal: str
    licence: str
    params_b: float
    disk_gb: float
    repo: Optional[str] = None
    quantize_bits: Optional[int] = None
    arch: Optional[dict] = None  # config.json numbers for memory estimates (derta_mlx.models.arch.Arch)


def catalogue_path() -> Path:
    """The catalogue of a source checkout, else the copy packed into the wheel."""
    source = _SOURCE_MODELS_DIR / "catalogue.yaml"
    return source if source.is_file() else _PACKAGE_DIR / "catalogue.yaml"


def models_dir() -> Path:
    """Default home of local weights: $DERTA_MLX_MODELS_DIR, the checkout's models/, or a user cache."""
    if env := os.environ.get("DERTA_MLX_MODELS_DIR"):
        return Path(env).expanduser()
    if (_SOURCE_MODELS_DIR / "catalogue.yaml").is_file():
        return _SOURCE_MODELS_DIR
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "derta-mlx" / "models"


def _entry_from_dict(name: str, raw: dict, path: Path) -> ModelEntry:
    known = {f.name for f in fields(ModelEntry)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise UserError(f"{path}: model {name!r}: unknown field(s) {sorted(unknown)}")
    try:
        entry = ModelEntry(name=name, **raw)
    except TypeError as exc:
        raise UserError(f"{path}: model {name!r}: {exc}") from None
    if entry.source not in SOURCES:
        raise UserError(f"{path}: model {name!r}: source must be one of {SOURCES}")
    if entry.source == "hub" and not entry.repo:
        raise UserError(f"{path}: model {name!r}: a hub entry needs a repo")
    if entry.arch is not None:
        try:
            Arch(**entry.arch)
        except TypeError as exc:
            raise UserError(f"{path}: model {name!r}: arch: {exc}") from None
    if entry.template not in TEMPLATES:
        raise UserError(f"{path}: model {name!r}: template must be one of {TEMPLATES}")
    return entry


@dataclass(frozen=True)
class Catalogue:
    default: str
    entries: dict

    def get(self, name: str) -> ModelEntry:
        if name in self.entries:
            return self.entries[name]
        close = difflib.get_close_matches(name, list(self.entries), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UserError(
            f"unknown model {name!r}.{hint} `derta-mlx models list` shows the catalogue; "
            "a Hugging Face repo id (org/name) or a local model directory also works."
        )


def load_catalogue(path: Optional[Path] = None) -> Catalogue:
    path = path or catalogue_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the model catalogue {path}: {exc}") from None
    entries = {name: _entry_from_dict(name, body, path) for name, body in raw["models"].items()}
    default = raw.get("default")
    if default not in entries:
        raise UserError(f"{path}: default {default!r} is not a catalogue entry")
    return Catalogue(default=default, entries=entries)
