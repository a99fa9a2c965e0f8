"""The `derta-mlx` command line: one module per command (train, data, probe, eval, models, tui)."""

from derta_mlx.cli.main import main

__all__ = ["main"]
