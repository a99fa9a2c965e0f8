"""The training configuration: one dataclass, every field a CLI flag and a YAML key.

Names follow mlx-lm's LoRA trainer where it has the same knob (iters, batch_size,
learning_rate, num_layers, max_seq_length, save_every, steps_per_report, steps_per_eval,
grad_checkpoint, seed, adapter_path, report_to, project_name), so mlx-lm's own
`lora_config.yaml` loads: its `lora_parameters` map onto the lora_* fields, an `lr_schedule`
dict goes to mlx-lm's `build_schedule` as it is, and its keys that mean nothing here are named
in a note and ignored.
"""

import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, List, Optional, Union

import yaml

from derta_mlx.common.errors import UserError


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-5` as a float as mlx-lm's loader does (YAML 1.1, which
    PyYAML follows, wants `1.0e-5`); a subclass, so that PyYAML's own loader stays as it is."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)

# mlx-lm's LoRA settings with no meaning here (its data loader, optimizer choice, test split,
# prompt masking: DeRTa decides what is supervised).
MLX_LM_IGNORED = ("train", "test", "test_batches", "adapter_file", "resume_adapter_file", "optimizer",
                  "optimizer_config", "mask_prompt", "hf_dataset", "wandb", "config", "training_mode")


@dataclass
class TrainConfig:
    # what
    model: Optional[str] = None  # catalogue name, hub id or directory; None = embedded default
    data: List[str] = field(default_factory=list)  # files or directories; empty = bundled demo
    val_data: List[str] = field(default_factory=list)
    method: str = "derta"  # derta | vanilla | harmful-prefix | rto
    template: Optional[str] = None  # derta | derta-eval | chat | auto; None = the catalogue's
    refusal: Optional[str] = None  # refusal rule; None = the catalogue's (see refusal.py)
    refusal_opening: str = "Sorry"  # every safe target opens with it (data/opening.py); "none": as written
    # harmful prefix sampling
    prefix_distribution: str = "official"  # official | uniform | qi
    prefix_unit: Optional[str] = None  # word | token; None = word for official, token otherwise
    qi_cap: int = 100
    prefix_cuts: int = 3  # harmful-prefix instances per safety triple; the extra ones cut inside (k >= 1)
    # loss (defaults from the sweep in README "Choosing the defaults": per-term, 0.1, 3 cuts)
    rto_weight: float = 0.1
    rto_keep: float = 1.0
    reduction: str = "per-term"  # token-mean (the official code) | per-term
    rto_eos: bool = False  # also target the refusal at the EOS position, as the official code
    # LoRA
    fine_tune_type: str = "lora"  # lora | dora
    num_layers: int = 16  # -1 = all
    lora_rank: int = 8
    lora_scale: float = 20.0
    lora_dropout: float = 0.0
    lora_keys: Optional[List[str]] = None  # None = every linear layer of the block
    # optimisation
    iters: int = 60
    batch_size: int = 4
    grad_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    lr_schedule: Union[str, dict] = "cosine"  # cosine | linear | constant | mlx-lm's schedule dict
    warmup: int = 0
    weight_decay: float = 0.0
    max_seq_length: int = 512
    length_bucketing: bool = False  # batch rows of like length (less padding; see data/batches.py)
    grad_checkpoint: bool = False
    dequantize: str = "auto"  # auto | yes | no: float32 base weights on a CPU (same arithmetic)
    seed: int = 0
    # validation, reporting, saving
    val_fraction: float = 0.1  # held-out share of the training rows when no val_data is given
    val_batches: int = 8  # -1 = the whole validation set
    steps_per_report: int = 10
    steps_per_eval: int = 50
    save_every: int = 50
    adapter_path: Optional[str] = None  # the run directory; None = runs/<name>
    report_to: Optional[str] = None  # mlx-lm's reporters, comma-separated: wandb, swanlab
    project_name: Optional[str] = None  # their project (default: the run directory's name)
    # the main job's before/after probe
    probe_after: bool = True

    def validate(self) -> "TrainConfig":
        choices = {
            "method": ("derta", "vanilla", "harmful-prefix", "rto"),
            "prefix_distribution": ("official", "uniform", "qi"),
            "prefix_unit": (None, "word", "token"),
            "reduction": ("token-mean", "per-term"),
            "fine_tune_type": ("lora", "dora"),
            "dequantize": ("auto", "yes", "no"),
        }
        if not isinstance(self.lr_schedule, dict):
            choices["lr_schedule"] = ("cosine", "linear", "constant")
        else:
            check_schedule(self.lr_schedule)
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name}: {getattr(self, name)!r} is not one of {[a for a in allowed if a]}")
        positive = ("iters", "batch_size", "prefix_cuts", "grad_accumulation_steps", "lora_rank", "max_seq_length",
                    "steps_per_report", "steps_per_eval", "save_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.rto_keep <= 1.0:
            raise UserError(f"rto_keep must be in (0, 1], got {self.rto_keep}")
        if self.rto_weight < 0 or self.learning_rate <= 0:
            raise UserError("rto_weight must be >= 0 and learning_rate > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.warmup >= self.iters:
            raise UserError(f"warmup ({self.warmup}) must be shorter than iters ({self.iters})")
        return self

    @property
    def unit(self) -> str:
        if self.prefix_unit:
            return self.prefix_unit
        return "word" if self.prefix_distribution == "official" else "token"

    def to_dict(self) -> dict:
        return asdict(self)


def check_schedule(schedule: dict) -> None:
    """An mlx-lm schedule dict: {name: <mlx.optimizers schedule>, arguments: [...], warmup?, warmup_init?}."""
    import mlx.optimizers as optim

    name, arguments = schedule.get("name"), schedule.get("arguments")
    if not isinstance(name, str) or not hasattr(optim.schedulers, name):
        raise UserError(f"lr_schedule: name {name!r} is not a schedule in mlx.optimizers "
                        "(e.g. cosine_decay, linear_schedule, exponential_decay)")
    if not isinstance(arguments, list) or not arguments:
        raise UserError("lr_schedule: 'arguments' must be a list, the first being the initial learning rate")
    unknown = sorted(set(schedule) - {"name", "arguments", "warmup", "warmup_init"})
    if unknown:
        raise UserError(f"lr_schedule: unknown key(s) {unknown}")


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def config_from_dict(raw: dict, source: str, note: Callable[[str], None] = _note) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(k for k in raw if k not in known and k not in MLX_LM_IGNORED and k != "lora_parameters")
    if unknown:
        raise UserError(f"{source}: unknown setting(s) {unknown}")
    if raw.get("training_mode", "normal") != "normal":
        raise UserError(f"{source}: training_mode {raw['training_mode']!r}: derta-mlx trains DeRTa "
                        "(mlx-lm's 'normal' mode with DeRTa's targets), not mlx-lm's other modes")
    ignored = sorted(k for k in raw if k in MLX_LM_IGNORED)
    if ignored:
        note(f"{source}: mlx-lm setting(s) with no meaning for DeRTa training, ignored: {', '.join(ignored)}")
    lora = raw.get("lora_parameters") or {}
    merged = {k: v for k, v in raw.items() if k in known}
    for key, ours in (("rank", "lora_rank"), ("scale", "lora_scale"), ("dropout", "lora_dropout"),
                      ("keys", "lora_keys")):
        if key in lora:
            merged.setdefault(ours, lora[key])
    if isinstance(merged.get("data"), str):
        merged["data"] = [merged["data"]]
    try:
        return TrainConfig(**merged)
    except TypeError as exc:
        raise UserError(f"{source}: {exc}") from None


def load_config(path) -> TrainConfig:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), YamlLoader) or {}
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of settings")
    return config_from_dict(raw, str(path))


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
