"""The training configuration: one dataclass, every field a CLI flag and a YAML key.

Names follow mlx-lm's LoRA trainer where it has the same knob (iters, batch_size,
learning_rate, num_layers, max_seq_length, save_every, steps_per_report, steps_per_eval,
grad_checkpoint, seed, adapter_path, report_to, project_name), so mlx-lm's own
`lora_config.yaml` loads: its `lora_parameters` map onto the lora_* fields, an `lr_schedule`
dict goes to mlx-lm's `build_schedule` as it is, and its keys that mean nothing here are named
in a note and ignored.
"""

import difflib
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, List, Optional, Union

import yaml

from derta_mlx.common.errors import UserError
from derta_mlx.train.settings import SettingError, check_setting


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
MLX_LM_IGNORED = ("train", "adapter_file", "wandb", "config", "training_mode")


@dataclass
class TrainConfig:
    # what
    model: Optional[str] = None  # catalogue name, hub id or directory; None = embedded default
    data: List[str] = field(default_factory=list)  # files or directories; empty = bundled demo
    val_data: List[str] = field(default_factory=list)
    method: str = "derta"  # derta | vanilla | harmful-prefix | rto
    template: Optional[str] = None  # derta | derta-eval | chat | auto; None = the catalogue's
    refusal: Optional[str] = None  # refusal rule; None = the catalogue's (see refusal.py)
    mask_prompt: bool = True  # helpfulness rows: supervise only the answer (mlx-lm's meaning; its default is false)
    refusal_opening: str = "Sorry"  # every safe target opens with it (data/opening.py); "none": as written
    # harmful prefix sampling
    prefix_distribution: str = "official"  # official | uniform | qi
    prefix_unit: Optional[str] = None  # word | token; None = word for official, token otherwise
    qi_cap: int = 100
    prefix_cuts: int = 3  # harmful-prefix instances per safety triple; the extra ones cut inside (k >= 1)
    # loss (defaults from the sweep in docs/method.md: per-term, 0.1, 3 cuts)
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
    resume_adapter_file: Optional[str] = None  # start from these adapter weights (mlx-lm's adapters.safetensors)
    # optimisation
    iters: int = 60
    batch_size: int = 4
    grad_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    optimizer: str = "adamw"  # adam | adamw | sgd | adafactor | muon (mlx-lm's choices)
    optimizer_config: dict = field(default_factory=dict)  # {optimizer: {its keyword arguments}}, as mlx-lm's
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
    test: bool = False  # after training: the loss (and refusal probe) on the data folder's test.jsonl
    test_batches: int = 500  # -1 = the whole test set (mlx-lm's default 500)
    steps_per_report: int = 10
    steps_per_eval: int = 50
    save_every: int = 50
    adapter_path: Optional[str] = None  # the run directory; None = runs/<name>
    report_to: Optional[str] = None  # mlx-lm's reporters, comma-separated: wandb, swanlab
    project_name: Optional[str] = None  # their project (default: the run directory's name)
    # the main job's before/after probe
    probe_after: bool = True
    # steps between probes of the validation rows that keep checkpoints/best (0: off; None: on, every
    # 20 steps, for the demo data only: the main job)
    probe_every: Optional[int] = None

    def validate(self) -> "TrainConfig":
        """Every field against its rule (settings.py), then the checks across fields."""
        for f in fields(self):
            setattr(self, f.name, check_setting(f.name, getattr(self, f.name)))
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


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def hf_dataset_paths(value, where: str, data) -> list:
    """mlx-lm's `hf_dataset:` block(s) as --data hub ids; the options that need the `datasets` library
    (split slices, feature names) are refused by name: `derta-mlx data fetch OWNER/NAME --schema`
    maps a dataset's columns instead."""
    blocks = value if isinstance(value, list) else [value]
    if data:
        raise UserError(f"{where}: give the data as hf_dataset or as data, not both")
    paths = []
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("path"), str) or not block["path"].strip():
            raise UserError(f"{where}: hf_dataset needs a 'path' (a hub dataset id, OWNER/NAME)")
        other = sorted(k for k in block if k != "path")
        if other:
            raise UserError(f"{where}: hf_dataset: {', '.join(other)} not supported: derta-mlx reads a dataset's "
                            "train/valid/test.jsonl as mlx-lm's data folders; for other layouts use "
                            f"`derta-mlx data fetch {block['path']} --schema ...` and give --data the file")
        paths.append(block["path"].strip())
    return paths


def config_from_dict(raw: dict, source: str, note: Callable[[str], None] = _note,
                     lines: Optional[dict] = None, flags: bool = False) -> TrainConfig:
    """A checked TrainConfig from `raw` (a YAML mapping, or flags over one). Errors name
    `source:LINE` when `lines` (key -> line) is given, and the flag (--learning-rate) with `flags`."""
    lines = lines or {}
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(str(k) for k in raw if k not in known and k not in MLX_LM_IGNORED
                     and k not in ("lora_parameters", "hf_dataset"))
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"{_at(source, lines, unknown[0])}: unknown setting(s) {unknown}{hint}")
    if raw.get("training_mode", "normal") != "normal":
        raise UserError(f"{_at(source, lines, 'training_mode')}: training_mode {raw['training_mode']!r}: derta-mlx "
                        "trains DeRTa (mlx-lm's 'normal' mode with DeRTa's targets), not mlx-lm's other modes")
    ignored = sorted(k for k in raw if k in MLX_LM_IGNORED)
    if ignored:
        note(f"{source}: mlx-lm setting(s) with no meaning for DeRTa training, ignored: {', '.join(ignored)}")
    lora = raw.get("lora_parameters") or {}
    if not isinstance(lora, dict):
        raise UserError(f"{_at(source, lines, 'lora_parameters')}: lora_parameters: expected a mapping "
                        "(rank, scale, dropout, keys)")
    merged = {k: v for k, v in raw.items() if k in known}
    if "hf_dataset" in raw:
        merged["data"] = hf_dataset_paths(raw["hf_dataset"], _at(source, lines, "hf_dataset"), merged.get("data"))
    for key, ours in (("rank", "lora_rank"), ("scale", "lora_scale"), ("dropout", "lora_dropout"),
                      ("keys", "lora_keys")):
        if key in lora:
            merged.setdefault(ours, lora[key])
            lines.setdefault(ours, lines.get("lora_parameters"))
    for name in ("data", "val_data"):  # one file may be given as a plain string
        if isinstance(merged.get(name), str):
            merged[name] = [merged[name]]
    cfg = TrainConfig()
    try:
        for name, value in merged.items():
            setattr(cfg, name, check_setting(name, value))
        return cfg.validate()
    except SettingError as exc:
        if flags:
            raise UserError(f"--{exc.name.split(':')[0].replace('_', '-')}: {exc.reason}") from None
        raise UserError(f"{_at(source, lines, exc.name)}: {exc.name}: {exc.reason}") from None


def _at(source: str, lines: dict, name: str) -> str:
    line = lines.get(name.split(":")[0])
    return f"{source}:{line}" if line else source


def _key_lines(text: str, name: str) -> dict:
    """Top-level key -> line number of a YAML mapping (for FILE:LINE in errors)."""
    try:
        node = yaml.compose(text, YamlLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    lines = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            if key.value in lines:  # PyYAML would keep the last silently
                raise UserError(f"{name}:{key.start_mark.line + 1}: {key.value!r} is set twice "
                                f"(first on line {lines[key.value]})")
            lines[key.value] = key.start_mark.line + 1
    return lines


def load_config(path) -> TrainConfig:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a YAML file of settings")
    try:
        text = path.read_bytes().decode("utf-8")
        raw = yaml.load(text, YamlLoader) or {}
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        data = path.read_bytes()
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise UserError(f"{path}: UTF-16 text; save the file as UTF-8") from None
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise UserError(f"{path}: invalid YAML: nested too deeply") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    return config_from_dict(raw, str(path), lines=_key_lines(text, str(path)))


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
