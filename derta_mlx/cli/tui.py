"""`derta-mlx tui`: the Textual terminal UI (the `tui` package, imported only when run)."""

import argparse

EPILOG = """examples:
  derta-mlx tui                 # F1 Models, F2 Train, F3 Runs, F4 Probe, ctrl+p commands, ctrl+q quit
  derta-mlx tui --screen runs --runs runs
"""


def cmd_tui(args) -> int:
    from derta_mlx import accel

    accel.start(argv=args.argv)  # probes run in-process: the fast BLAS matters here too
    from tui.app import DertaApp

    DertaApp(runs_root=args.runs, start=args.screen).run()
    return 0


def register(commands) -> None:
    p = commands.add_parser("tui", help="terminal UI: models, training runs, probes",
                            description="A keyboard-first terminal UI over the same functions as the CLI.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs", help="the runs directory (default runs/)")
    p.add_argument("--screen", choices=("models", "train", "runs", "probe"), default="models",
                   help="screen to open first")
    p.set_defaults(run=cmd_tui)
