"""From `--model` (catalogue name, hub repo id or local directory) to a loaded mlx-lm model."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from derta_mlx.common.errors import UserError
from derta_mlx.common.locks import exclusive
from derta_mlx.common.remote_code import check_no_remote_code
from derta_mlx.models import hub
from derta_mlx.models.arch import Arch, arch_from_dir
from derta_mlx.models.catalogue import ModelEntry, load_catalogue, models_dir
from derta_mlx.models.embedded import ensure_embedded
from derta_mlx.testing.tiny import TinySpec, build_tiny_model

Notify = Optional[Callable[[str], None]]


@dataclass(frozen=True)
class ModelRef:
    """A model the user named, and where its mlx-lm directory is (or will be)."""

    spec: str
    entry: Optional[ModelEntry]  # None for a bare hub id or directory
    repo: Optional[str]  # hub repo id, if it comes from the hub
    local_dir: Optional[Path]  # where it is (or will be) for local and generated models

    @property
    def template(self) -> str:
        return self.entry.template if self.entry else "auto"

    @property
    def refusal_rule(self) -> str:
        return self.entry.refusal if self.entry else "auto"


def find_model(spec: Optional[str]) -> ModelRef:
    """Interpret `--model` without touching the network or the disk beyond a stat."""
    catalogue = load_catalogue()
    spec = spec or catalogue.default
    if spec in catalogue.entries:
        entry = catalogue.entries[spec]
        if entry.source == "hub":
            return ModelRef(spec, entry, entry.repo, None)
        return ModelRef(spec, entry, None, models_dir() / entry.name)
    path = Path(spec).expanduser()
    if path.exists():
        return ModelRef(spec, None, None, path)
    if hub.looks_like_repo_id(spec):
        return ModelRef(spec, None, spec, None)
    catalogue.get(spec)  # raises with the close matches
    raise AssertionError("unreachable")


def local_path(ref: ModelRef) -> Optional[Path]:
    """The ready model directory if it is on this machine, else None."""
    if ref.repo:
        return hub.cached_snapshot(ref.repo)
    return ref.local_dir if (ref.local_dir / "config.json").is_file() else None


def check_model_dir(path: Path) -> None:
    """Refuse directories mlx-lm cannot load safely, with the reason."""
    if not path.is_dir():
        raise UserError(f"{path}: not a directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"{path}: no config.json; this is not a Hugging Face / mlx-lm model directory")
    try:
        config = json.loads(config_file.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{config_file}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except (UnicodeDecodeError, RecursionError):
        raise UserError(f"{config_file}: not a JSON file of settings (not UTF-8, or nested too deeply)") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise UserError(f"{config_file}: no model_type; this is not a Hugging Face / mlx-lm model config")
    if not supported_model_type(config):
        raise UserError(f"{config_file}: model_type {config['model_type']!r} is not one mlx-lm can load "
                        "(its models are in mlx_lm/models/)")
    if not list(path.glob("model*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
        found = f" (found pickled weights {pickles})" if pickles else ""
        raise UserError(
            f"{path}: no model*.safetensors weights{found}; derta-mlx never loads pickles. "
            "Convert with `mlx_lm.convert --hf-path ...` or `derta-mlx models convert --gguf FILE`."
        )
    check_no_remote_code(path)
    for weights in sorted(path.glob("model*.safetensors")):
        check_safetensors(weights)


def supported_model_type(config: dict) -> bool:
    """Whether mlx-lm has a model class for config's model_type (as mlx_lm.utils._get_classes maps it)."""
    import importlib.util

    from mlx_lm.utils import MODEL_REMAPPING

    model_type = MODEL_REMAPPING.get(config["model_type"], config["model_type"])
    if not model_type.replace("_", "").isalnum():
        return False
    return importlib.util.find_spec(f"mlx_lm.models.{model_type}") is not None


def check_safetensors(path: Path) -> None:
    """A truncated, empty or foreign file is named here instead of failing deep inside the loader.
    Reads only the header: the file's size must be what the header's offsets say."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(length)) if 8 <= size and 0 < length <= size - 8 else None
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        header = None
    if header is None or 8 + length + end != size:
        raise UserError(f"{path}: truncated or not a safetensors file ({size} bytes)")


def check_local_model(spec: Optional[str]) -> None:
    """When --model is a directory of the user's, check it before anything reads its config."""
    ref = find_model(spec)
    if ref.entry is None and ref.repo is None:
        check_model_dir(ref.local_dir)


def ensure_local(ref: ModelRef, notify: Notify = None) -> Path:
    """Make the model available locally (download, convert or build it) and return its directory."""
    notify = notify or (lambda message: None)
    if ref.repo:
        path = hub.cached_snapshot(ref.repo)
        if path is None:
            notify(f"Downloading {ref.repo} into the hub cache (safetensors only)...")
            path = hub.download(ref.repo)
    elif ref.entry and ref.entry.source == "embedded":
        path = ensure_embedded(ref.local_dir, notify)
    elif ref.entry and ref.entry.source == "tiny":
        path = ref.local_dir
        if not (path / "config.json").is_file():
            with exclusive(path.parent / f".{path.name}.lock"):  # built once, however many processes ask
                if not (path / "config.json").is_file():
                    notify(f"Building the tiny test model {ref.entry.name} in {path}...")
                    spec = TinySpec(family=ref.entry.family, quantize_bits=ref.entry.quantize_bits)
                    build_tiny_model(spec, path)
    else:
        path = ref.local_dir
    check_model_dir(path)
    return path


def load_tokenizer(path: Path):
    from mlx_lm.utils import load_tokenizer as _load_tokenizer

    check_no_remote_code(path)
    return _load_tokenizer(Path(path), tokenizer_config_extra={"trust_remote_code": False})


def load(spec: Optional[str], adapter_path: Optional[str] = None, notify: Notify = None):
    """Load (model, tokenizer, ref) through mlx-lm, making the model local first."""
    ref = find_model(spec)
    path = ensure_local(ref, notify)
    model, tokenizer = load_checked(path, adapter_path=adapter_path)
    return model, tokenizer, ref


def load_checked(path: Path, **kwargs):
    """mlx-lm's load(path) of a directory ensure_local has checked (check_model_dir: no remote code),
    still forbidding remote code, and what check_model_dir cannot see up front (a config whose
    shapes do not match the weights, say) as a UserError naming the directory."""
    from mlx_lm import load as mlx_load

    try:
        return mlx_load(str(path), trust_remote_code=False, tokenizer_config={"trust_remote_code": False}, **kwargs)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise UserError(f"{path}: mlx-lm cannot load this model: {str(exc).splitlines()[0][:300]}") from None


def arch_for_model(spec: Optional[str]) -> Arch:
    """The Arch of `--model` without loading (or downloading) weights: the local copy's
    config.json when there is one, else the catalogue entry's `arch` block."""
    ref = find_model(spec)
    path = local_path(ref)
    if path is not None and (path / "config.json").is_file():
        return arch_from_dir(path)
    if ref.entry and ref.entry.arch:
        return Arch(**ref.entry.arch)
    raise UserError(f"cannot estimate the memory of {ref.spec}: its config.json is not on this machine and the "
                    "catalogue has no `arch` for it (download it first: `derta-mlx models download`)")
