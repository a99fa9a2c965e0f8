"""The public API: what front ends (the TUI) use, and the types those functions return.

Plain re-exports, no logic here; `tui/` imports nothing else from derta_mlx (tests/test_tui.py).
"""

from .atomic import write_text
from .catalogue import Catalogue, ModelEntry, load_catalogue, models_dir
from .config import TrainConfig, dump_config, load_config
from .data.formats import read_rows
from .demo import demo_paths
from .errors import UserError
from .gguf import convert_gguf
from .hub import cached_bytes
from .launch import launch_log, launch_training, resume_training, stop_training
from .loading import ModelRef, ensure_local, find_model, local_path
from .probe import ExampleProbe, PositionResult, ProbeExample, probe_examples, refusal_curves, top_next_tokens
from .probe_setup import ProbeModel, load_probe_model, parse_positions, read_probe_examples, set_adapter_enabled
from .rundir import RUNS, RunInfo, list_runs, read_metrics, run_info

__all__ = [
    "write_text",
    "Catalogue", "ModelEntry", "load_catalogue", "models_dir",
    "TrainConfig", "dump_config", "load_config",
    "read_rows", "demo_paths", "UserError",
    "convert_gguf", "cached_bytes",
    "launch_log", "launch_training", "resume_training", "stop_training",
    "ModelRef", "ensure_local", "find_model", "local_path",
    "ExampleProbe", "PositionResult", "ProbeExample", "probe_examples", "refusal_curves", "top_next_tokens",
    "ProbeModel", "load_probe_model", "parse_positions", "read_probe_examples", "set_adapter_enabled",
    "RUNS", "RunInfo", "list_runs", "read_metrics", "run_info",
]
