"""The derta-mlx terminal UI: four screens (Models, Train, Runs, Probe), one per mode, on the
number keys 1-4 (and F2-F4 for Train, Runs, Probe, which also work inside a text field); F1 or ?
lists every key.

Each screen keeps its state while another is shown (Textual modes), so a run followed on Train
keeps updating while you look at Runs. Everything it does goes through derta_mlx.api.
"""

from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding

from derta_mlx.api import RUNS
from tui.dialogs.help import HelpScreen
from tui.screens.models import ModelsScreen
from tui.screens.probe import ProbeScreen
from tui.screens.runs import RunsScreen
from tui.screens.train import TrainScreen

SCREENS = (("models", "Models", "the model catalogue: local copies, download, GGUF import"),
           ("train", "Train", "set up, launch, follow, stop and resume a training run"),
           ("runs", "Runs", "every run in runs/ with status, losses, config and probe results"),
           ("probe", "Probe", "P(refusal) inside a harmful answer, base versus adapter"))


class DertaApp(App):
    TITLE = "derta-mlx"
    CSS_PATH = "app.tcss"
    MODES = {"models": ModelsScreen, "train": TrainScreen, "runs": RunsScreen, "probe": ProbeScreen}
    BINDINGS = [
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help", "Help", show=False),  # not priority: a text field still takes "?"
        *(Binding(str(n), f"switch_mode('{mode}')", title, show=False) for n, (mode, title, _) in enumerate(SCREENS, 1)),
        Binding("f2", "switch_mode('train')", "Train", show=False, priority=True),
        Binding("f3", "switch_mode('runs')", "Runs", show=False, priority=True),
        Binding("f4", "switch_mode('probe')", "Probe", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, runs_root=RUNS, start: str = "models"):
        super().__init__()
        self.runs_root = Path(runs_root)
        self.start = start
        self.pending = {}

    def on_mount(self) -> None:
        self.sub_title = "  ".join(f"{n} {title}" for n, (_, title, _) in enumerate(SCREENS, 1)) + "  F1 help"
        self.switch_mode(self.start)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        screen_keys = [b for b in getattr(self.screen, "BINDINGS", []) if isinstance(b, Binding)]
        self.push_screen(HelpScreen([("Everywhere", [b for b in self.BINDINGS if b.key != "question_mark"]),
                                     (type(self.screen).__name__.removesuffix("Screen"), screen_keys)]))

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for mode, title, help_text in SCREENS:
            yield SystemCommand(f"Go to {title}", help_text, lambda mode=mode: self.switch_mode(mode))
        yield from getattr(screen, "commands", lambda: ())()

    def follow_run(self, run_dir, process=None) -> None:
        """Show run_dir on the Train screen's monitor (process: the Popen, if this session started it)."""
        self.pending["train"] = (Path(run_dir), process)
        self.switch_mode("train")

    def probe_run(self, run_dir) -> None:
        """Open Probe with run_dir's adapter selected."""
        self.pending["probe"] = Path(run_dir)
        self.switch_mode("probe")

    def take_pending(self, mode: str):
        """What follow_run/probe_run left for a screen that may still be mounting."""
        return self.pending.pop(mode, None)
