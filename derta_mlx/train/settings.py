"""What each training setting may hold: one table of rules for the CLI, YAML configs and the TUI form.

`check_setting(name, value)` returns the value in its proper type or raises SettingError with a
message that names the setting; every way into a TrainConfig goes through it, so a NaN learning
rate, a quoted "no" for a switch or a string where a list belongs is refused the same way
everywhere, before anything is loaded or written.
"""

import math
from pathlib import Path
from dataclasses import dataclass
from typing import Optional, Tuple

from derta_mlx.common.errors import UserError
from derta_mlx.data.refusal_token import check_rule_form
from derta_mlx.data.templates import check_template_name


class SettingError(UserError):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.reason = message


@dataclass(frozen=True)
class Rule:
    kind: str  # int | float | bool | str | list | choice | schedule
    low: Optional[float] = None  # inclusive unless low_open
    high: Optional[float] = None  # inclusive unless high_open
    low_open: bool = False
    high_open: bool = False
    choices: Tuple = ()
    also: Tuple = ()  # values allowed outside the range (-1: "all")
    optional: bool = False  # None allowed


def _choice(*choices, optional=False):
    return Rule("choice", choices=choices, optional=optional)


OPTIMIZERS = ("adam", "adamw", "sgd", "adafactor", "muon")  # mlx-lm's, with its names

RULES = {
    "model": Rule("str", optional=True),
    "data": Rule("list"),
    "val_data": Rule("list"),
    "method": _choice("derta", "vanilla", "harmful-prefix", "rto"),
    "template": Rule("str", optional=True),
    "refusal": Rule("str", optional=True),
    "refusal_opening": Rule("str"),
    "mask_prompt": Rule("bool"),
    "prefix_distribution": _choice("official", "uniform", "qi"),
    "prefix_unit": _choice("word", "token", optional=True),
    "qi_cap": Rule("int", low=1),
    "prefix_cuts": Rule("int", low=1),
    "rto_weight": Rule("float", low=0),
    "rto_keep": Rule("float", low=0, high=1, low_open=True),
    "reduction": _choice("token-mean", "per-term"),
    "rto_eos": Rule("bool"),
    "fine_tune_type": _choice("lora", "dora", "full"),
    "num_layers": Rule("int", low=1, also=(-1,)),
    "lora_rank": Rule("int", low=1),
    "lora_scale": Rule("float", low=0, low_open=True),
    "lora_dropout": Rule("float", low=0, high=1, high_open=True),
    "lora_keys": Rule("list", optional=True),
    "resume_adapter_file": Rule("str", optional=True),
    "iters": Rule("int", low=1),
    "batch_size": Rule("int", low=1),
    "grad_accumulation_steps": Rule("int", low=1),
    "learning_rate": Rule("float", low=0, low_open=True),
    "optimizer": _choice(*OPTIMIZERS),
    "optimizer_config": Rule("optimizer_config"),
    "lr_schedule": Rule("schedule", choices=("cosine", "linear", "constant")),
    "warmup": Rule("int", low=0),
    "weight_decay": Rule("float", low=0),
    "max_seq_length": Rule("int", low=8),
    "length_bucketing": Rule("bool"),
    "grad_checkpoint": Rule("bool"),
    "dequantize": _choice("auto", "yes", "no"),
    "seed": Rule("int", low=0, high=2**32 - 1),
    "val_fraction": Rule("float", low=0, high=1, high_open=True),
    "val_batches": Rule("int", low=1, also=(-1,)),
    "test": Rule("bool"),
    "test_batches": Rule("int", low=1, also=(-1,)),
    "steps_per_report": Rule("int", low=1),
    "steps_per_eval": Rule("int", low=1),
    "save_every": Rule("int", low=1),
    "adapter_path": Rule("str", optional=True),
    "report_to": Rule("str", optional=True),
    "project_name": Rule("str", optional=True),
    "probe_after": Rule("bool"),
    "probe_every": Rule("int", low=0, optional=True),
}

REPORTERS = ("wandb", "swanlab")


def _number(name: str, value, kind: str):
    """value as an int or a finite float; numeric strings (a quoted "1e-4") are read as numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SettingError(name, f"expected {'an integer' if kind == 'int' else 'a number'}, "
                                 f"got {_shown(value)}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise SettingError(name, f"expected {'an integer' if kind == 'int' else 'a number'}, "
                                     f"got {_shown(value)}") from None
    if not math.isfinite(value):
        raise SettingError(name, f"must be a finite number, got {value}")
    if kind == "int":
        if value != int(value):
            raise SettingError(name, f"expected an integer, got {value}")
        return int(value)
    return float(value)


def _shown(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def _in_range(name: str, value, rule: Rule) -> None:
    if value in rule.also:
        return
    low_bad = rule.low is not None and (value <= rule.low if rule.low_open else value < rule.low)
    high_bad = rule.high is not None and (value >= rule.high if rule.high_open else value > rule.high)
    if low_bad or high_bad:
        low = "" if rule.low is None else ("(" if rule.low_open else "[") + _plain(rule.low)
        high = "" if rule.high is None else _plain(rule.high) + (")" if rule.high_open else "]")
        if rule.high is None:
            wanted = f"> {_plain(rule.low)}" if rule.low_open else f">= {_plain(rule.low)}"
        else:
            wanted = f"in {low}, {high}"
        extra = f" (or {', '.join(map(str, rule.also))})" if rule.also else ""
        raise SettingError(name, f"must be {wanted}{extra}, got {_plain(value)}")


def _plain(number) -> str:
    return str(int(number)) if number == int(number) else repr(number)


def _string_list(name: str, value):
    if isinstance(value, str):
        raise SettingError(name, f"expected a list of strings, got the string {value!r} "
                                 f"(in YAML: [{value}], on the command line: several words)")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SettingError(name, f"expected a list of non-empty strings, got {_shown(value)}")
    return list(value)


def _check_data_specs(name: str, specs: list) -> None:
    """`--data FILE:RATIO` mixes training files; validation files take no ratio."""
    from derta_mlx.data.mixing import parse_specs

    try:
        parsed = parse_specs(specs)
    except UserError as exc:
        raise SettingError(name, str(exc)) from None
    if name == "val_data" and any(spec.ratio is not None for spec in parsed):
        raise SettingError(name, "ratios (FILE:RATIO) mix training data; validation files take none")


def _checked_by(name: str, check, value) -> None:
    try:
        check(value)
    except UserError as exc:
        raise SettingError(name, str(exc)) from None


def check_setting(name: str, value):
    """value checked against RULES[name] and returned in its proper type."""
    rule = RULES[name]
    if value is None:
        if rule.optional:
            return None
        wanted = {"int": "an integer", "float": "a number", "bool": "true or false", "list": "a list of strings"}
        raise SettingError(name, f"has no value (expected {wanted.get(rule.kind, 'a value')})")
    if rule.kind in ("int", "float"):
        value = _number(name, value, rule.kind)
        _in_range(name, value, rule)
        return value
    if rule.kind == "bool":
        if not isinstance(value, bool):
            raise SettingError(name, f"expected true or false, got {_shown(value)}")
        return value
    if rule.kind == "list":
        value = _string_list(name, value)
        if name in ("data", "val_data"):
            _check_data_specs(name, value)
        return value
    if rule.kind == "choice":
        if name == "dequantize" and isinstance(value, bool):  # YAML 1.1 reads a bare yes/no as a bool
            value = "yes" if value else "no"
        if value not in rule.choices:
            raise SettingError(name, f"{value!r} is not one of {list(rule.choices)}")
        return value
    if rule.kind == "optimizer_config":
        return check_optimizer_config(value)
    if rule.kind == "schedule":
        if isinstance(value, dict):
            return check_schedule(value)
        if value not in rule.choices:
            raise SettingError(name, f"{value!r} is not one of {list(rule.choices)} (or mlx-lm's schedule dict)")
        return value
    if not isinstance(value, str) or not value.strip():
        raise SettingError(name, f"expected a non-empty string, got {_shown(value)}")
    if name == "template":
        _checked_by(name, check_template_name, value)
    if name == "refusal":
        _checked_by(name, check_rule_form, value)
    if name == "resume_adapter_file" and not (Path(value).is_file() and value.endswith(".safetensors")):
        raise SettingError(name, f"{value}: no such .safetensors file (mlx-lm's adapters.safetensors)")
    if name == "report_to":
        unknown = [r for r in value.split(",") if r.strip() not in REPORTERS]
        if unknown:
            raise SettingError(name, f"unknown reporter(s) {unknown}; known: {', '.join(REPORTERS)}")
    return value


def check_optimizer_config(value) -> dict:
    """mlx-lm's optimizer_config: {optimizer name: {keyword: number or list of numbers}}."""
    import inspect

    import mlx.optimizers as optim

    if not isinstance(value, dict):
        raise SettingError("optimizer_config", f"expected a mapping of optimizer names to settings, got {_shown(value)}")
    for name, kwargs in value.items():
        if name not in OPTIMIZERS:
            raise SettingError("optimizer_config", f"{name!r} is not one of {list(OPTIMIZERS)}")
        if not isinstance(kwargs, dict):
            raise SettingError(f"optimizer_config: {name}", f"expected a mapping of settings, got {_shown(kwargs)}")
        accepted = set(inspect.signature(optimizer_class(name)).parameters) - {"learning_rate"}
        for key, setting in kwargs.items():
            if key not in accepted:
                raise SettingError(f"optimizer_config: {name}", f"{key!r} is not a setting of mlx.optimizers."
                                   f"{optimizer_class(name).__name__} ({', '.join(sorted(accepted))})")
            for item in setting if isinstance(setting, list) else [setting]:
                if not isinstance(item, bool):
                    _number(f"optimizer_config: {name}: {key}", item, "float")
    return value


def optimizer_class(name: str):
    import mlx.optimizers as optim

    return {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "adafactor": optim.Adafactor,
            "muon": optim.Muon}[name]


def check_schedule(schedule: dict) -> dict:
    """An mlx-lm schedule dict: {name: <mlx.optimizers schedule>, arguments: [...], warmup?, warmup_init?}."""
    import mlx.optimizers as optim

    name, arguments = schedule.get("name"), schedule.get("arguments")
    if not isinstance(name, str) or not hasattr(optim.schedulers, name):
        raise SettingError("lr_schedule", f"name {name!r} is not a schedule in mlx.optimizers "
                                          "(e.g. cosine_decay, linear_schedule, exponential_decay)")
    if not isinstance(arguments, list) or not arguments:
        raise SettingError("lr_schedule", "'arguments' must be a list, the first being the initial learning rate")
    for i, argument in enumerate(arguments):
        _number(f"lr_schedule: arguments[{i}]", argument, "float")
    unknown = sorted(set(schedule) - {"name", "arguments", "warmup", "warmup_init"})
    if unknown:
        raise SettingError("lr_schedule", f"unknown key(s) {unknown}")
    for key in ("warmup", "warmup_init"):
        if key in schedule:
            _number(f"lr_schedule: {key}", schedule[key], "int" if key == "warmup" else "float")
    return schedule
