"""The public API: what front ends (the TUI) use, and the types those functions return.

Plain re-exports, no logic here; `tui/` imports nothing else from derta_mlx (tests/test_tui.py).
"""

from derta_mlx.common.atomic import write_text
from derta_mlx.common.errors import UserError
from derta_mlx.data.formats import read_rows
from derta_mlx.data.mixing import mix_rows, spec_paths
from derta_mlx.demo import demo_paths
from derta_mlx.fuse.job import default_out as fused_out
from derta_mlx.fuse.launch import FuseLaunch, FuseStatus, fuse_status, launch_fuse
from derta_mlx.models.catalogue import Catalogue, ModelEntry, load_catalogue, models_dir
from derta_mlx.models.gguf.convert import convert_gguf
from derta_mlx.models.hub import cached_bytes
from derta_mlx.models.loading import ModelRef, ensure_local, find_model, local_path
from derta_mlx.probe.curves import ProbeExample, refusal_curves, top_next_tokens
from derta_mlx.probe.model import (
    ProbeModel,
    load_probe_model,
    parse_positions,
    read_probe_examples,
    set_adapter_enabled,
)
from derta_mlx.probe.positions import ExampleProbe, PositionResult, probe_examples
from derta_mlx.train.config import TrainConfig, dump_config, load_config
from derta_mlx.train.launch import (
    launch_log,
    launch_training,
    resume_training,
    stop_training,
)
from derta_mlx.train.memory import train_memory_label
from derta_mlx.train.rundir import RUNS, RunInfo, list_runs, read_metrics, run_info
from derta_mlx.train.settings import SettingError

__all__ = [
    "write_text",
    "Catalogue", "ModelEntry", "load_catalogue", "models_dir",
    "TrainConfig", "dump_config", "load_config", "SettingError",
    "read_rows", "mix_rows", "spec_paths", "demo_paths", "UserError",
    "convert_gguf", "cached_bytes",
    "launch_log", "launch_training", "resume_training", "stop_training",
    "ModelRef", "ensure_local", "find_model", "local_path",
    "ExampleProbe", "PositionResult", "ProbeExample", "probe_examples", "refusal_curves", "top_next_tokens",
    "ProbeModel", "load_probe_model", "parse_positions", "read_probe_examples", "set_adapter_enabled",
    "FuseLaunch", "FuseStatus", "fuse_status", "fused_out", "launch_fuse",
    "RUNS", "RunInfo", "list_runs", "read_metrics", "run_info", "train_memory_label",
]
