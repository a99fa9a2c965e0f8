"""Train: the form (Setup) and the followed run (Monitor). Runs are separate processes."""

import time
from pathlib import Path

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, TabbedContent, TabPane

from derta_mlx.api import (
    UserError,
    find_model,
    launch_training,
    resume_training,
    stop_training,
)
from tui.widgets.run_monitor import RunMonitor
from tui.widgets.train_form import TrainForm


class TrainScreen(Screen):
    AUTO_FOCUS = None  # set in on_mount: focusing a Setup field would switch the tabs to Setup
    BINDINGS = [
        Binding("f5", "launch", "Launch"),
        Binding("f6", "stop", "Stop"),
        Binding("f7", "resume", "Resume"),
        Binding("ctrl+o", "load_config", "Load config", show=False),
        Binding("ctrl+s", "save_config", "Save config", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="train-tabs"):
            with TabPane("Setup", id="train-setup"):
                yield TrainForm(self.app.runs_root, id="train-form")
            with TabPane("Monitor", id="train-monitor"):
                yield RunMonitor(id="monitor")
        yield Footer()

    def commands(self):
        yield SystemCommand("Launch the run", "validate the form and start training (F5)", self.action_launch)
        yield SystemCommand("Stop the run", "checkpoint after the current step (F6)", self.action_stop)
        yield SystemCommand("Resume the run", "continue from the last checkpoint (F7)", self.action_resume)
        yield SystemCommand("Load a config file", "fill the form from a YAML config", self.action_load_config)
        yield SystemCommand("Save the config file", "write the form as a YAML config", self.action_save_config)

    @property
    def form(self) -> TrainForm:
        return self.query_one(TrainForm)

    @property
    def monitor(self) -> RunMonitor:
        return self.query_one(RunMonitor)

    def on_mount(self) -> None:
        self.mounted = True
        if "train" not in self.app.pending:
            self.query_one("#f-name").focus()
        self.on_screen_resume()

    def on_screen_resume(self) -> None:
        pending = self.app.take_pending("train") if getattr(self, "mounted", False) else None
        if pending:
            self.follow(*pending)

    def follow(self, run_dir: Path, process=None) -> None:
        self.monitor.follow(run_dir, process)
        self.query_one(TabbedContent).active = "train-monitor"
        self.query_one("#run-log").focus()

    def action_launch(self) -> None:
        form = self.form
        cfg, errors = form.read_config()
        form.show_errors(errors)
        if cfg is None:
            self.query_one(TabbedContent).active = "train-setup"
            self.notify("The form has errors: see the red lines.", severity="error")
            return
        name = form.run_name() or f"{Path(find_model(cfg.model).spec).name}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = self.app.runs_root / name
        try:
            process = launch_training(cfg, run_dir)
        except UserError as exc:
            form.show_errors({"form": str(exc)})
            return
        self.notify(f"started {run_dir} (pid {process.pid})")
        self.follow(run_dir, process)

    def action_stop(self) -> None:
        monitor = self.monitor
        if monitor.run_dir and stop_training(monitor.run_dir, monitor.process):
            self.notify("Stopping after the current step; a checkpoint will be written.")
        else:
            self.notify("No running run to stop.", severity="warning")

    def action_resume(self) -> None:
        monitor = self.monitor
        monitor.tick()
        if not (monitor.run_dir and not monitor.query_one("#run-resume", Button).disabled):
            self.notify("Nothing to resume: follow a stopped run first.", severity="warning")
            return
        self.follow(monitor.run_dir, resume_training(monitor.run_dir))
        self.notify(f"resuming {monitor.run_dir}")

    def action_load_config(self) -> None:
        self.query_one(TabbedContent).active = "train-setup"
        if self.form.load_file():
            self.notify(f"loaded {self.form.config_path()}")

    def action_save_config(self) -> None:
        if self.form.save_file():
            self.notify(f"saved {self.form.config_path()}")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"launch": self.action_launch, "run-stop": self.action_stop, "run-resume": self.action_resume}
        if event.button.id in actions:
            actions[event.button.id]()
