"""The one table of setting rules (train/settings.py), as the CLI, YAML and the TUI form use it."""

import math
from dataclasses import fields

import pytest

from derta_mlx.common.errors import UserError
from derta_mlx.train.config import TrainConfig, config_from_dict, load_config
from derta_mlx.train.settings import RULES, SettingError, check_setting


def test_every_setting_has_a_rule_and_the_defaults_pass_it():
    assert set(RULES) == {f.name for f in fields(TrainConfig)}
    TrainConfig().validate()


@pytest.mark.parametrize("name", sorted(n for n, r in RULES.items() if r.kind in ("int", "float")))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", True, [1], {"a": 1}])
def test_numbers_refuse_non_finite_values_and_other_types(name, value):
    with pytest.raises(SettingError) as caught:
        check_setting(name, value)
    assert caught.value.name == name


def test_numbers_read_numeric_strings_and_whole_floats():
    assert check_setting("learning_rate", "1e-4") == pytest.approx(1e-4)
    assert check_setting("iters", 1000.0) == 1000 and isinstance(check_setting("iters", 1000.0), int)
    with pytest.raises(SettingError, match="integer"):
        check_setting("iters", 2.5)


def test_ranges_name_their_bounds():
    with pytest.raises(SettingError, match=r"must be in \[0, 1\), got 1.5"):
        check_setting("lora_dropout", 1.5)
    with pytest.raises(SettingError, match=r"must be >= 1 \(or -1\), got 0"):
        check_setting("num_layers", 0)
    assert check_setting("num_layers", -1) == -1 and check_setting("val_batches", -1) == -1
    assert check_setting("rto_keep", 1.0) == 1.0


def test_switches_lists_and_choices_take_only_their_own_kind():
    for bad in ("no", "false", 0, 1, None):
        with pytest.raises(SettingError, match="true or false"):
            check_setting("grad_checkpoint", bad)
    with pytest.raises(SettingError, match="list of strings"):
        check_setting("lora_keys", "self_attn.q_proj")
    assert check_setting("lora_keys", None) is None
    assert check_setting("dequantize", False) == "no"  # YAML 1.1 reads a bare `no` as false


def test_yaml_reads_1e_minus_4_as_a_number_and_errors_carry_the_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("iters: 5\nlearning_rate: 1e-4\nlora_parameters:\n  rank: 4\n  dropout: 0.05\n")
    cfg = load_config(path)
    assert cfg.learning_rate == pytest.approx(1e-4) and cfg.lora_rank == 4 and cfg.lora_dropout == 0.05
    path.write_text("iters: 5\n\nweight_decay: -1\n")
    with pytest.raises(UserError, match=f"^{path}:3: weight_decay: must be >= 0"):
        load_config(path)


def test_flags_name_the_flag():
    with pytest.raises(UserError, match=r"^--learning-rate: must be a finite number, got nan$"):
        config_from_dict({"learning_rate": math.nan}, "command line", flags=True)
