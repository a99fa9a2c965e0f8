"""A run's adapter fused into its base, with mlx-lm's own pieces: the steps of `mlx_lm.fuse`
(load with the adapter, each LoRA/DoRA layer's `fuse`, `dequantize_model`, `save`,
`convert_to_gguf`), called here rather than copied.

mlx-lm re-quantises each fused layer with the base's group size and bits; `--group-size` fuses
in full precision and re-quantises only the fused layers with another group size.
"""

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from derta_mlx.common.errors import UserError
from derta_mlx.common.remote_code import check_no_remote_code
from derta_mlx.models.loading import ensure_local, find_model
from derta_mlx.probe.model import read_adapter_config
from derta_mlx.train.claim import run_is_live
from derta_mlx.train.config import TrainConfig, load_config

# The model types mlx_lm.gguf.convert_to_gguf writes (LLaMA-shaped weights and vocabulary);
# llama.cpp's own convert_hf_to_gguf.py covers the others.
GGUF_ARCHITECTURES = ("llama", "mistral", "mixtral")


@dataclass(frozen=True)
class RunSource:
    run_dir: Path
    config: TrainConfig
    base_path: Path
    base_config: dict  # the base's config.json
    fine_tune_type: str
    adapter_dir: Optional[Path] = None  # the adapter fused: the run (None) or its checkpoints/best

    @property
    def adapter(self) -> Path:
        return self.adapter_dir or self.run_dir

    @property
    def quantization(self) -> Optional[dict]:
        return self.base_config.get("quantization")


def read_run(run_dir, notify: Callable[[str], None], checkpoint: Optional[str] = None) -> RunSource:
    """The run's adapter (its final one, or `checkpoint` "best"), settings and base model,
    checked before anything loads."""
    from derta_mlx.train.best import resolve_checkpoint

    run_dir = Path(run_dir)
    adapter_dir = resolve_checkpoint(run_dir, checkpoint)
    adapter_config = read_adapter_config(run_dir)  # no adapter: a UserError that says so
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: no config.yaml; fuse needs a derta-mlx run directory (it names the base "
                        "model and the held-out data)")
    if run_is_live(run_dir):
        raise UserError(f"{run_dir} is still training; fuse it once it has finished or been stopped")
    cfg = load_config(run_dir / "config.yaml")
    base = Path(ensure_local(find_model(cfg.model), notify))
    try:
        base_config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{base}/config.json: cannot read the base model's config ({exc})") from None
    if adapter_dir != run_dir:
        read_adapter_config(adapter_dir)
        notify(f"--checkpoint {checkpoint}: fusing the adapter in {adapter_dir}")
    return RunSource(run_dir, cfg, base, base_config, adapter_config.get("fine_tune_type", "lora"),
                     None if adapter_dir == run_dir else adapter_dir)


def check_gguf_supported(source: RunSource) -> None:
    model_type = source.base_config.get("model_type")
    if model_type not in GGUF_ARCHITECTURES:
        raise UserError(f"--gguf: mlx-lm's GGUF exporter writes only {', '.join(GGUF_ARCHITECTURES)} models, "
                        f"not {model_type!r}; fuse without --gguf and convert the directory with llama.cpp's "
                        "convert_hf_to_gguf.py")


def check_group_size(source: RunSource, group_size: int, dequantize: bool) -> None:
    if dequantize:
        raise UserError("--group-size re-quantises the fused layers; --dequantize keeps them unquantised: "
                        "give one of the two")
    if not source.quantization:
        raise UserError(f"--group-size: the base {source.base_path} is not quantised; its fused model is not "
                        "quantised either")
    if source.quantization.get("mode", "affine") != "affine":
        raise UserError(f"--group-size: only affine quantisation, not {source.quantization['mode']!r}")


def weights_sha256(model_dir: Path, progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """{"sha256": one hash over the weights files in name order, "files": {name: sha256}}."""
    files = sorted(model_dir.glob("*.safetensors"))
    total = sum(f.stat().st_size for f in files)
    done, per_file, combined = 0, {}, hashlib.sha256()
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done >> 20, total >> 20)
        per_file[path.name] = digest.hexdigest()
        combined.update(f"{path.name} {per_file[path.name]}\n".encode())
    return {"sha256": combined.hexdigest(), "files": per_file}


def fuse_model(source: RunSource, dequantize: bool = False, group_size: Optional[int] = None,
               progress: Optional[Callable[[int, int], None]] = None, scale_lora_b: float = 1.0):
    """(model, tokenizer, config) with every adapter layer fused, as mlx_lm.fuse builds them.
    `scale_lora_b` multiplies each LoRA B before fusing: a test's deliberately weakened adapter."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import dequantize_model, load

    check_no_remote_code(source.base_path)
    model, tokenizer, config = load(str(source.base_path), adapter_path=str(source.adapter), return_config=True,
                                    trust_remote_code=False, tokenizer_config={"trust_remote_code": False})
    layers = [(name, module) for name, module in model.named_modules() if hasattr(module, "fuse")]
    if not layers:
        raise UserError(f"{source.run_dir}: the adapter put no LoRA or DoRA layer into the model; nothing to fuse")
    fused = []
    for done, (name, module) in enumerate(layers, 1):
        if scale_lora_b != 1.0:
            module.lora_b = module.lora_b * scale_lora_b
        fused.append((name, module.fuse(dequantize=dequantize or group_size is not None)))
        if progress:
            progress(done, len(layers))
    model.update_modules(tree_unflatten(fused))
    if dequantize:
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    elif group_size is not None:
        _requantize(model, config, {name for name, _ in fused}, group_size)
    return model, tokenizer, config


def _requantize(model, config: dict, names: set, group_size: int) -> None:
    """The fused layers quantised at `group_size` (the base's bits), each recorded in config.json
    as a per-layer entry that mlx_lm.load reads; layers the group does not divide stay unquantised."""
    import mlx.nn as nn

    bits = config["quantization"]["bits"]

    def chosen(path, module):
        return path in names and isinstance(module, nn.Linear) and module.weight.shape[-1] % group_size == 0

    nn.quantize(model, group_size=group_size, bits=bits, class_predicate=chosen)
    for name, module in model.named_modules():
        if name in names and isinstance(module, nn.QuantizedLinear):
            config["quantization"][name] = {"group_size": group_size, "bits": bits}


def save_fused(model, tokenizer, config: dict, source: RunSource, dest: Path) -> None:
    """mlx-lm's save: weights, config.json, tokenizer, the base's generation config and code."""
    from mlx_lm.utils import save

    save(dest, str(source.base_path), model, tokenizer, dict(config), donate_model=False)


def export_gguf(fused_dir: Path, gguf_path: Path) -> None:
    """The fused directory as an f16 GGUF through mlx_lm.gguf (it writes unquantised weights only, so a
    quantised fused model is written with its dequantised values: the weights the gate measured)."""
    from mlx.utils import tree_flatten
    from mlx_lm.gguf import convert_to_gguf
    from mlx_lm.utils import dequantize_model, load

    model, _, config = load(str(fused_dir), return_config=True, trust_remote_code=False,
                            tokenizer_config={"trust_remote_code": False})
    model = dequantize_model(model)
    config = {k: v for k, v in config.items() if k not in ("quantization", "quantization_config")}
    weights = dict(tree_flatten(model.parameters()))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the temporary file's name
            convert_to_gguf(fused_dir, weights, config, str(gguf_path))
    except (KeyError, ValueError, NotImplementedError) as exc:
        raise UserError(f"--gguf: mlx-lm's exporter cannot write this model ({exc})") from None
