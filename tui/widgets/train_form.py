"""The Train form: the run's name, model, data, method and main knobs, each with its own error line.

read_config() turns the form into a TrainConfig and checks it the way `derta-mlx train` would
(TrainConfig.validate, the model name, every data row), so a mistake shows next to its field
before anything starts. Fields not on the form keep the values of the last loaded config.
"""

from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Tuple

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Select, Static

from derta_mlx.api import (
    SettingError,
    TrainConfig,
    UserError,
    dump_config,
    find_model,
    load_catalogue,
    load_config,
    mix_rows,
    spec_paths,
    write_text,
)
from tui.presets import PRESETS
from tui.widgets.toggle import Toggle

METHODS = ("derta", "vanilla", "harmful-prefix", "rto")

# (TrainConfig field, label, kind): kind is how the text of the widget becomes a value.
FIELDS = (
    ("model", "model", "text"),
    ("data", "data files", "paths"),
    ("method", "method", "method"),
    ("iters", "steps", "int"),
    ("batch_size", "batch size", "int"),
    ("learning_rate", "learning rate", "float"),
    ("max_seq_length", "max length", "int"),
    ("lora_rank", "LoRA rank", "int"),
    ("num_layers", "LoRA layers", "int"),
    ("rto_weight", "RTO weight", "float"),
    ("steps_per_report", "report every", "int"),
    ("save_every", "save every", "int"),
    ("probe_after", "probe", "bool"),
)
NAMES = {name for name, _, _ in FIELDS}


def _row(label: str, widget, name: str) -> ComposeResult:
    with Horizontal(classes="field"):
        yield Label(label, classes="field-label")
        yield widget
    yield Static("", id=f"err-{name}", classes="field-error")


class TrainForm(VerticalScroll, can_focus=False):  # Tab goes straight to the fields
    def __init__(self, runs_root: Path, **kwargs):
        super().__init__(**kwargs)
        self.runs_root = runs_root
        self.base = TrainConfig()

    def compose(self) -> ComposeResult:
        catalogue = load_catalogue()
        yield Static("", id="err-form", classes="field-error")
        yield from _row("run name", Input(placeholder="runs/NAME (blank: model-method-time)", id="f-name",
                                          compact=True), "name")
        yield from _row("preset", Select([(name, name) for name in PRESETS], prompt="(none)", id="f-preset",
                                         compact=True), "preset")
        for name, label, kind in FIELDS:
            if kind == "method":
                widget = Select([(m, m) for m in METHODS], allow_blank=False, value="derta", id="f-method",
                                compact=True)
            elif kind == "bool":
                widget = Toggle("probe refusal before and after", id=f"f-{name}", compact=True)
            elif name == "model":
                widget = Input(placeholder=f"{catalogue.default} (catalogue name, hub id or directory)",
                               suggester=SuggestFromList(list(catalogue.entries)), id="f-model", compact=True)
            elif name == "data":
                widget = Input(placeholder="blank: the bundled demo data; else FILE[:RATIO] ... (space separated)",
                               id="f-data", compact=True)
            else:
                widget = Input(id=f"f-{name}", compact=True)
            yield from _row(label, widget, name)
        with Horizontal(classes="field"):
            yield Label("config file", classes="field-label")
            yield Input(placeholder="run.yaml", id="f-config", compact=True)
            yield Button("Load", id="config-load", compact=True)
            yield Button("Save", id="config-save", compact=True)
        yield Static("", id="err-config", classes="field-error")
        yield Button("Launch (F5)", id="launch", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.set_config(self.base)

    # --- values in and out ---
    def set_config(self, cfg: TrainConfig) -> None:
        self.base = cfg
        for name, _, kind in FIELDS:
            value = getattr(cfg, name)
            widget = self.query_one(f"#f-{name}")
            if kind == "bool":
                widget.value = bool(value)
            elif kind == "method":
                widget.value = value
            elif kind == "paths":
                widget.value = " ".join(value)
            else:
                widget.value = "" if value is None else str(value)

    def apply_preset(self, name: str) -> None:
        values = {**asdict(self.read_values()[0]), **PRESETS[name]}
        self.set_config(TrainConfig(**values))

    def read_values(self) -> Tuple[TrainConfig, Dict[str, str]]:
        """The form as a TrainConfig (unparsable fields keep their base value) and parse errors."""
        values, errors = asdict(self.base), {}
        for name, _, kind in FIELDS:
            widget = self.query_one(f"#f-{name}")
            if kind in ("bool", "method"):
                values[name] = widget.value
                continue
            text = widget.value.strip()
            if kind == "paths":
                values[name] = text.split()
            elif kind == "text":
                values[name] = text or None
            else:
                try:
                    values[name] = int(text) if kind == "int" else float(text)
                except ValueError:
                    errors[name] = f"expected {'a whole number' if kind == 'int' else 'a number'}, got {text!r}"
        return TrainConfig(**values), errors

    def run_name(self) -> str:
        """The run's name; "runs/NAME", as the placeholder shows it, is NAME."""
        name = self.query_one("#f-name", Input).value.strip()
        return name.removeprefix(f"{self.runs_root.name}/") if "/" in name else name

    def read_config(self) -> Tuple[Optional[TrainConfig], Dict[str, str]]:
        """(config, {}) when launchable, else (None, {field or "form": message})."""
        cfg, errors = self.read_values()
        if errors:
            return None, errors
        try:
            cfg.validate()
        except SettingError as exc:
            return None, {exc.name if exc.name in NAMES else "form": str(exc)}
        except UserError as exc:
            return None, {"form": str(exc)}
        try:
            find_model(cfg.model)
        except UserError as exc:
            errors["model"] = str(exc)
        missing = [p for p in spec_paths(cfg.data) if not Path(p).exists()]
        if missing:
            errors["data"] = f"no such file: {missing[0]}"
        elif cfg.data:
            try:
                mix_rows(cfg.data, cfg.seed, lambda _note: None)
            except UserError as exc:
                errors["data"] = str(exc)
        name = self.run_name()
        if name and ("/" in name or name.startswith(".")):
            errors["name"] = "a plain name: the run goes into runs/NAME"
        elif name and (self.runs_root / name).exists() and any((self.runs_root / name).iterdir()):
            errors["name"] = f"{self.runs_root / name} already holds a run (resume it from Runs, or pick another name)"
        return (None, errors) if errors else (cfg, {})

    def show_errors(self, errors: Dict[str, str]) -> None:
        for widget in self.query(".field-error"):
            name = widget.id.removeprefix("err-")
            widget.update(errors.get(name, ""))
            widget.set_class(name in errors, "shown")

    # --- config files ---
    def config_path(self) -> str:
        return self.query_one("#f-config", Input).value.strip()

    def load_file(self) -> bool:
        path = self.config_path()
        try:
            if not path:
                raise UserError("give the path of a YAML config first")
            self.set_config(load_config(path))
        except UserError as exc:
            self.show_errors({"config": str(exc)})
            return False
        self.show_errors({})
        return True

    def save_file(self) -> bool:
        cfg, errors = self.read_values()
        path = self.config_path()
        if not path:
            errors["config"] = "give a path to save the config to"
        elif Path(path).is_dir():
            errors["config"] = f"{path} is a directory: give a file name, e.g. {Path(path) / 'run.yaml'}"
        if errors:
            self.show_errors(errors)
            return False
        try:
            write_text(path, dump_config(cfg.validate()))
        except SettingError as exc:
            self.show_errors({exc.name if exc.name in NAMES else "config": str(exc)})
            return False
        except OSError as exc:
            self.show_errors({"config": f"{path}: cannot write: {exc.strerror}"})
            return False
        self.show_errors({})
        return True

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "f-preset" and event.value in PRESETS:
            self.apply_preset(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "config-load" and self.load_file():
            self.notify(f"loaded {self.config_path()}")
        elif event.button.id == "config-save" and self.save_file():
            self.notify(f"saved {self.config_path()}")
        else:
            return
        event.stop()
