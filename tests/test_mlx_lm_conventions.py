"""mlx-lm's conventions: its lora_config.yaml, YAML floats like 1e-5, -c, --adapter-path and
its TrainingCallback interface."""

import json
import subprocess
import sys

import pytest
import yaml

from derta_mlx.common.errors import UserError
from derta_mlx.train.config import YamlLoader, config_from_dict, load_config

# The keys and values of mlx-lm's example lora_config.yaml (mlx_lm/examples), as a user has it.
MLX_LM_CONFIG = """\
model: "mlx_model"
train: true
fine_tune_type: lora
training_mode: normal
optimizer: adamw
data: "/path/to/training/data"
seed: 0
num_layers: 16
batch_size: 4
iters: 1000
val_batches: 25
learning_rate: 1e-5
steps_per_report: 10
steps_per_eval: 200
resume_adapter_file: null
adapter_path: "adapters"
save_every: 100
test: false
test_batches: 100
max_seq_length: 2048
grad_checkpoint: false
lora_parameters:
  keys: ["self_attn.q_proj", "self_attn.v_proj"]
  rank: 8
  scale: 20.0
  dropout: 0.0
lr_schedule:
  name: cosine_decay
  warmup: 100
  warmup_init: 1e-7
  arguments: [1e-5, 1000, 1e-7]
"""


def test_mlx_lm_lora_config_loads_with_a_note_on_what_is_ignored(tmp_path, capsys):
    path = tmp_path / "lora_config.yaml"
    path.write_text(MLX_LM_CONFIG)
    cfg = load_config(path).validate()
    assert cfg.learning_rate == 1e-5 and isinstance(cfg.learning_rate, float)
    assert (cfg.lora_rank, cfg.lora_scale, cfg.lora_keys) == (8, 20.0, ["self_attn.q_proj", "self_attn.v_proj"])
    assert cfg.data == ["/path/to/training/data"] and cfg.max_seq_length == 2048 and cfg.val_batches == 25
    assert cfg.lr_schedule["warmup_init"] == 1e-7
    note = capsys.readouterr().err
    for key in ("train", "training_mode"):
        assert key in note
    for key in ("lora_parameters", "lr_schedule", "optimizer", "test_batches", "resume_adapter_file"):
        assert key not in note  # honoured, with mlx-lm's meaning
    assert cfg.optimizer == "adamw" and cfg.test is False and cfg.test_batches == 100


def test_an_mlx_lm_schedule_dict_goes_to_build_schedule():
    from derta_mlx.train.trainer import make_optimizer

    cfg = load_config_text("lr_schedule: {name: cosine_decay, warmup: 10, warmup_init: 1e-7, "
                           "arguments: [1e-3, 100, 1e-6]}\niters: 100\n").validate()
    optimizer = make_optimizer(cfg)
    schedule = optimizer._schedulers["learning_rate"]  # the schedule the optimizer steps through
    assert float(schedule(0)) == pytest.approx(1e-7)
    assert float(schedule(10)) == pytest.approx(1e-3, rel=1e-4)  # warm-up ends at the initial rate
    assert float(schedule(111)) == pytest.approx(1e-6, rel=1e-3)  # cosine ends at its last argument


def load_config_text(text: str):
    return config_from_dict(yaml.load(text, YamlLoader), "test.yaml")


@pytest.mark.parametrize("schedule, message", [
    ("{name: no_such_decay, arguments: [1e-3]}", "not a schedule"),
    ("{name: cosine_decay}", "'arguments' must be a list"),
    ("{name: cosine_decay, arguments: [1e-3, 10], warmpu: 5}", "unknown key"),
])
def test_bad_schedule_dicts_are_clear_errors(schedule, message):
    with pytest.raises(UserError, match=message):
        load_config_text(f"lr_schedule: {schedule}\n").validate()


def test_yaml_floats_in_scientific_notation_are_numbers_and_typos_still_fail():
    raw = yaml.load("learning_rate: 1e-5\nweight_decay: 5E-2\nrto_weight: .5\niters: 10\n", YamlLoader)
    assert raw == {"learning_rate": 1e-5, "weight_decay": 0.05, "rto_weight": 0.5, "iters": 10}
    assert yaml.safe_load("a: 1e-5") == {"a": "1e-5"}  # PyYAML's own loader is left alone
    with pytest.raises(UserError, match="unknown setting"):
        load_config_text("learnig_rate: 1e-5\n")


class Recorder:
    """An mlx-lm TrainingCallback (the interface of mlx_lm.tuner.callbacks)."""

    def __init__(self):
        self.train, self.val = [], []

    def on_train_loss_report(self, info):
        self.train.append(info)

    def on_val_loss_report(self, info):
        self.val.append(info)


def test_a_training_callback_gets_mlx_lm_style_reports(tiny_dir, tmp_path):
    from derta_mlx.train.config import TrainConfig
    from derta_mlx.train.job import run_training

    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"question": f"How do I sneak snack {i}?",
                                        "safe_response": "Sorry, I can't help with that.",
                                        "harmful_response": f"Sure! Step 1: wait. Step 2: take snack {i}."}) + "\n"
                            for i in range(8)))
    cfg = TrainConfig(model=str(tiny_dir("llama3")), data=[str(data)], iters=4, batch_size=2, steps_per_report=2,
                      steps_per_eval=2, val_batches=1, probe_after=False, adapter_path=str(tmp_path / "run"))
    recorder = Recorder()
    run_training(cfg, None, lambda message: None, lambda report: None, training_callback=recorder)
    assert [r["iteration"] for r in recorder.train] == [2, 4] and [r["iteration"] for r in recorder.val] == [2, 4]
    assert {"train_loss", "learning_rate", "iterations_per_second", "tokens_per_second", "trained_tokens",
            "peak_memory"} <= set(recorder.train[0])
    assert recorder.val[0]["val_loss"] > 0


def test_report_to_an_unknown_reporter_is_a_clear_error(tmp_path):
    from pathlib import Path

    from derta_mlx.train.callbacks import reporting_callback

    with pytest.raises(UserError, match="report_to"):
        reporting_callback("tensorboardx", None, Path(tmp_path), {})


def test_the_cli_starts_a_run_from_mlx_lms_config_with_dash_c(tiny_dir, tmp_path):
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"question": f"How do I skip chore {i}?", "safe_response": "Sorry, no.",
                                        "harmful_response": f"Sure! Hide the broom number {i}."}) + "\n"
                            for i in range(6)))
    config = tmp_path / "lora_config.yaml"
    config.write_text(MLX_LM_CONFIG.replace('"mlx_model"', f'"{tiny_dir("llama3")}"')
                      .replace('"/path/to/training/data"', f'"{data}"').replace("iters: 1000", "iters: 2")
                      .replace("warmup: 100", "warmup: 1").replace('"adapters"', f'"{tmp_path / "run"}"'))
    out = subprocess.run([sys.executable, "-m", "derta_mlx", "train", "-c", str(config), "--no-probe-after",
                          "--batch-size", "2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "mlx-lm setting(s)" in out.stderr and "training_mode" in out.stderr
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.lr_schedule["name"] == "cosine_decay" and saved.learning_rate == 1e-5 and saved.iters == 2
    assert (tmp_path / "run" / "adapters.safetensors").is_file()


def test_mlx_lms_optimizers_and_their_config(tmp_path):
    import mlx.optimizers as optim

    from derta_mlx.train.trainer import make_optimizer

    for name, cls in (("adam", optim.Adam), ("adamw", optim.AdamW), ("sgd", optim.SGD),
                      ("adafactor", optim.Adafactor), ("muon", optim.Muon)):
        assert isinstance(make_optimizer(load_config_text(f"optimizer: {name}\n").validate()), cls)
    cfg = load_config_text("optimizer: sgd\noptimizer_config: {sgd: {momentum: 0.9}}\nweight_decay: 0.01\n").validate()
    optimizer = make_optimizer(cfg)
    assert optimizer.momentum == 0.9 and optimizer.weight_decay == 0.01
    with pytest.raises(UserError, match="'betas' is not a setting of mlx.optimizers.SGD"):
        load_config_text("optimizer_config: {sgd: {betas: [0.9, 0.99]}}\n")
    with pytest.raises(UserError, match="'rmsprop' is not one of"):
        load_config_text("optimizer: rmsprop\n")
