"""`derta-mlx` command line: one sub-command module per job, errors as plain messages."""

import argparse
import sys

from derta_mlx import __version__
from derta_mlx.cli import data as data_command
from derta_mlx.cli import eval as eval_command
from derta_mlx.cli import fuse as fuse_command
from derta_mlx.cli import models as models_command
from derta_mlx.cli import probe as probe_command
from derta_mlx.cli import train as train_command
from derta_mlx.cli import tui as tui_command
from derta_mlx.common.errors import UserError

EPILOG = """examples:
  derta-mlx train                       # DeRTa on the embedded model with the bundled demo data
  derta-mlx models list
  derta-mlx models show smollm2-135m-4bit
  derta-mlx models download mistral-7b-4bit
  derta-mlx fuse --adapter-path runs/demo      # a servable model, published only if its refusals survived
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="derta-mlx",
        description="Decoupled Refusal Training (DeRTa) for MLX: train models that refuse at any "
        "point of an answer, and probe refusal position by position.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"derta-mlx {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train_command.register(commands)
    probe_command.register(commands)
    eval_command.register(commands)
    data_command.register(commands)
    models_command.register(commands)
    fuse_command.register(commands)
    tui_command.register(commands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for `train --ranks` to pass on
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except UserError as exc:
        print(f"derta-mlx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("derta-mlx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
