"""What a probe needs besides the examples: the model loaded once, its template and refusal ids.

`derta-mlx probe` and the TUI's Probe screen share this; base versus adapter comes from one
load by setting the LoRA scale (`set_adapter_scale`).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from derta_mlx.accel import load_for_inference
from derta_mlx.common.errors import UserError
from derta_mlx.data.formats import SafetyTriple, read_rows
from derta_mlx.data.refusal_token import resolve_refusal
from derta_mlx.data.templates import get_template
from derta_mlx.models.loading import check_safetensors, ensure_local, find_model
from derta_mlx.probe.curves import ProbeExample
from derta_mlx.train.config import load_config


@dataclass
class ProbeModel:
    model: object
    tokenizer: object
    template: object
    refusal: object
    refusal_ids: List[int]
    spec: str
    adapter: Optional[str]
    can_compare_base: bool  # LoRA can be switched off by scale; DoRA cannot


def load_probe_model(spec: Optional[str], adapter: Optional[str] = None, notify=None,
                     dequantize: str = "auto", template: Optional[str] = None,
                     refusal: Optional[str] = None) -> ProbeModel:
    """The model (dequantised on a CPU, as `derta-mlx probe` does: see accel/dequantize.py) with the adapter."""
    dora = bool(adapter) and read_adapter_config(adapter).get("fine_tune_type") == "dora"
    trained_on = adapter_base_model(adapter)
    ref = find_model(spec or trained_on)
    if spec and trained_on and notify and not _same_model(spec, trained_on):
        notify(f"note: {adapter} was trained on {trained_on}; probing it on {spec}")
    model, tokenizer, dequantised = load_for_inference(ensure_local(ref, notify), adapter, dequantize)
    if dequantised and notify:
        notify("computing with the dequantised float32 weights (same values as the 4-bit kernels; --dequantize no)")
    template = get_template(template or ref.template, tokenizer)
    opening = "Sorry"
    run_config = Path(adapter) / "config.yaml" if adapter else None
    if run_config is not None and run_config.is_file():  # probe the token the run trained
        trained = load_config(run_config)
        refusal, opening = refusal or trained.refusal, trained.refusal_opening
    refusal = resolve_refusal(tokenizer, refusal or ref.refusal_rule, template.response_lead, opening)
    ids = refusal.probe_ids
    return ProbeModel(model, tokenizer, template, refusal, ids, ref.spec, adapter, bool(adapter) and not dora)


def _same_model(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def adapter_base_model(adapter) -> Optional[str]:
    """The base model a training run recorded, when it names one we can find (else None: the default)."""
    if not adapter:
        return None
    spec = read_adapter_config(adapter).get("model")
    try:
        find_model(spec)
    except (UserError, TypeError):
        return None
    return spec


def read_adapter_config(adapter) -> dict:
    """A run directory's adapter_config.json, once the adapter beside it is known to be whole."""
    path = Path(adapter)
    if not path.is_dir():
        raise UserError(f"{adapter}: no such directory (give a training run directory)")
    config_file = path / "adapter_config.json"
    for name in ("adapter_config.json", "adapters.safetensors"):
        if not (path / name).is_file():
            raise UserError(f"{adapter}: no {name}; is this a run directory? (a run writes its adapter "
                            "at its first checkpoint)")
    check_safetensors(path / "adapters.safetensors")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", 1)
        raise UserError(f"{config_file}:{line}: not valid JSON; it is written by training") from None
    missing = [key for key in ("num_layers", "lora_parameters") if not isinstance(config, dict) or key not in config]
    if missing:
        raise UserError(f"{config_file}: not an adapter config (no {', '.join(missing)})")
    return config


def set_adapter_scale(model, scale: float) -> None:
    """0 turns every LoRA layer off (the base model), 1 back on; the lora weights stay loaded."""
    from mlx_lm.tuner.lora import LoRALinear

    for _, module in model.named_modules():
        if isinstance(module, LoRALinear):
            if not hasattr(module, "_derta_scale"):
                module._derta_scale = module.scale
            module.scale = module._derta_scale * scale


def set_adapter_enabled(probe_model: ProbeModel, enabled: bool) -> None:
    if probe_model.adapter:
        set_adapter_scale(probe_model.model, 1.0 if enabled else 0.0)


def read_probe_examples(path, notify=None) -> list:
    """The safety triples of a data file as ProbeExamples (other rows are skipped)."""
    rows = [r for r in read_rows([path], *([notify] if notify else [])) if isinstance(r, SafetyTriple)]
    if not rows:
        raise UserError(f"{path}: no safety triples (question, safe_response, harmful_response)")
    return [ProbeExample(r.question, r.harmful_response, r.id) for r in rows]


def check_positions(positions: List[int], lengths: List[int], unit: str, notify=None, prefix: str = "") -> None:
    """No position past every answer (it would probe only answers' ends); past some is a note."""
    longest = max(lengths)
    if positions[-1] > longest:
        raise UserError(f"{prefix}positions: k={positions[-1]} is past the end of every harmful answer "
                        f"(the longest is {longest} {unit}s)")
    short = sum(1 for n in lengths if n < positions[-1])
    if short and notify:
        notify(f"note: k={positions[-1]} is past the end of {short} of {len(lengths)} answer(s); "
               "those are probed at their end")


def parse_positions(text: str = "", every: int = 0, longest: int = 64, prefix: str = "") -> List[int]:
    """Positions from "0,5,10" or every N up to `longest`; errors name `prefix`+field ("--")."""
    if every:
        if every < 1:
            raise UserError(f"{prefix}every must be >= 1")
        return list(range(0, longest + 1, every))
    try:
        positions = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise UserError(f"{prefix}positions must be integers separated by commas, got {text!r}") from None
    if not positions or positions[0] < 0:
        raise UserError(f"{prefix}positions must be non-negative integers")
    return positions
