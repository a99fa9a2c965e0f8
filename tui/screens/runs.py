"""Runs: every run directory with its status and latest losses; Enter opens one."""

import json
from pathlib import Path
from typing import Optional

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from derta_mlx.api import (
    FuseLaunch,
    fuse_status,
    fused_out,
    launch_fuse,
    list_runs,
    read_metrics,
    resume_training,
    run_info,
    stop_training,
)
from tui.widgets.charts import LossChart

COLUMNS = ("run", "status", "method", "model", "step", "loss", "MLE", "RTO", "val")
STATUS_STYLE = {"running": "bold green", "finished": "cyan", "stopped": "yellow", "failed": "bold red"}


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _model_name(model: str) -> str:
    return Path(model).name if "/" in model and Path(model).exists() else model


FUSE_STYLE = {"running": "yellow", "passed": "bold green", "skipped": "yellow", "failed": "bold red",
              "error": "bold red"}


class RunsScreen(Screen):
    BINDINGS = [Binding("o", "open", "Open"), Binding("r", "refresh", "Refresh"), Binding("f8", "fuse", "Fuse")]
    shown = None  # the rows on screen, so an unchanged list is not redrawn
    fusing: Optional[FuseLaunch] = None  # the fuse this screen started, followed until it ends
    fuse_state: Optional[str] = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-where")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="runs-fuse-box"):
            yield Static("", id="runs-fuse", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.query_one("#runs-fuse-box").display = False
        self.action_refresh()
        self.set_interval(1.0, self.action_refresh)

    def commands(self):
        yield SystemCommand("Refresh runs", "read runs/ again", self.action_refresh)
        yield SystemCommand("Open the selected run", "config, curves and probe results", self.action_open)
        yield SystemCommand("Fuse the selected run", "fuse its adapter into the base, behind the safety gate (F8)",
                            self.action_fuse)

    def selected_run(self) -> Optional[Path]:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return Path(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_fuse(self) -> None:
        """`derta-mlx fuse` on the selected run, in its own process; the gate's table shows when it ends."""
        run_dir = self.selected_run()
        if run_dir is None:
            self.notify("No run selected.", severity="warning")
        elif self.fusing is not None and self.fuse_state == "running":
            self.notify(f"Already fusing {self.fusing.run_dir.name}.", severity="warning")
        elif not (run_dir / "adapters.safetensors").is_file():
            self.notify("This run has no adapter yet.", severity="warning")
        elif run_info(run_dir).status == "running":
            self.notify("This run is still training; fuse it once it has finished.", severity="warning")
        elif fused_out(run_dir).exists():
            self.notify(f"{fused_out(run_dir)} exists; fuse never overwrites it.", severity="warning")
        else:
            self.fusing = launch_fuse(run_dir)
            self.notify(f"Fusing {run_dir.name} into {fused_out(run_dir).name} (log: {self.fusing.log})")
            self.show_fuse()

    def show_fuse(self) -> None:
        if self.fusing is None:
            return
        status = fuse_status(self.fusing)
        self.fuse_state = status.state
        box = self.query_one("#runs-fuse-box")
        box.display = True
        box.styles.border = ("round", FUSE_STYLE[status.state].split()[-1])
        box.border_title = f"Fuse {self.fusing.run_dir.name}: {status.state}"
        self.query_one("#runs-fuse", Static).update(status.text)

    def action_refresh(self) -> None:
        if self.fuse_state == "running":
            self.show_fuse()
        table = self.query_one(DataTable)
        runs = list_runs(self.app.runs_root)
        self.query_one("#runs-where", Static).update(
            f"{len(runs)} run(s) in {self.app.runs_root}/  (Enter: open; F8: fuse; F2: Train to start one)")
        rows = [(str(run.path), run.name, f"[{STATUS_STYLE[run.status]}]{run.status}[/]", run.method,
                 _model_name(run.model), f"{run.step}/{run.iters}", _num(run.loss), _num(run.mle),
                 _num(run.rto), _num(run.val_loss)) for run in runs]
        if rows == self.shown:
            return
        self.shown = rows
        keep = table.cursor_row
        table.clear()
        for key, *cells in rows:
            table.add_row(*cells, key=key)
        if runs:
            table.move_cursor(row=min(keep, len(runs) - 1))

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            self.app.push_screen(RunDetailScreen(Path(key)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(RunDetailScreen(Path(event.row_key.value)))


def probe_table(run_dir: Path):
    """Rows of the run's before/after probes (probe_before.json, probe_after.json), if any."""
    found = {}
    for label in ("before", "after"):
        path = run_dir / f"probe_{label}.json"
        if path.is_file():
            found[label] = {row["position"]: row for row in json.loads(path.read_text())["rows"]}
    positions = sorted({k for rows in found.values() for k in rows})
    out = []
    for k in positions:
        cells = [str(k)]
        for label in ("before", "after"):
            row = found.get(label, {}).get(k)
            coherent = f"{row['coherent']:.0%}" if row and "coherent" in row else "-"
            cells += [f"{row['refusal_rate']:.0%}", coherent, f"{row['mean_p_refusal']:.4f}"] if row else ["-"] * 3
        out.append(cells)
    return out


def helpfulness_summary(run_dir: Path) -> str:
    """Ordinary and borderline answers before -> after, from the probe files ("" without both)."""
    sides = {}
    for label in ("before", "after"):
        path = run_dir / f"probe_{label}.json"
        try:
            sides[label] = json.loads(path.read_text()) if path.is_file() else None
        except (OSError, ValueError):
            sides[label] = None
    before, after = sides["before"], sides["after"]
    if not (before and after and "helpfulness" in before and "helpfulness" in after):
        return ""
    hb, ha = before["helpfulness"], after["helpfulness"]
    lines = [f"ordinary questions ({hb['n']}): answered correctly {hb['answered']:.0%} -> {ha['answered']:.0%}, "
             f"refused {hb['refused']:.0%} -> {ha['refused']:.0%}"]
    if before.get("borderline") and after.get("borderline"):
        b, a = before["borderline"]["overall"], after["borderline"]["overall"]
        lines.append(f"borderline ({b['safe']['n']} safe, {b['unsafe']['n']} unsafe): safe over-refused "
                     f"{b['over_refusal'] or 0:.0f}% -> {a['over_refusal'] or 0:.0f}%, unsafe refused "
                     f"{b['unsafe_refused'] or 0:.0f}% -> {a['unsafe_refused'] or 0:.0f}%")
    return "\n".join(lines)


class RunDetailScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("f", "follow", "Follow in Train"),
        Binding("p", "probe", "Probe adapter"),
        Binding("s", "stop", "Stop"),
        Binding("u", "resume", "Resume"),
    ]

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="detail-summary")
        with TabbedContent(id="detail-tabs"):
            with TabPane("Curves", id="detail-curves"):
                yield LossChart(id="detail-chart")
            with TabPane("Probe results", id="detail-probe"):
                with Vertical():
                    yield DataTable(id="detail-probe-table", cursor_type="row")
                    yield Static("", id="detail-helpfulness")
            with TabPane("Config", id="detail-config"):
                with VerticalScroll():
                    yield Static("", id="detail-config-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#detail-probe-table", DataTable)
        table.add_columns("k", "refuses before", "coherent before", "P before", "refuses after", "coherent after",
                          "P after")
        for cells in probe_table(self.run_dir):
            table.add_row(*cells)
        self.query_one("#detail-helpfulness", Static).update(helpfulness_summary(self.run_dir))
        config = self.run_dir / "config.yaml"
        self.query_one("#detail-config-text", Static).update(config.read_text() if config.is_file() else "")
        self.refresh_run()
        self.set_interval(1.0, self.refresh_run)

    def refresh_run(self) -> None:
        info = run_info(self.run_dir)
        text = (f"[b]{info.name}[/b]  [{STATUS_STYLE[info.status]}]{info.status}[/]  step {info.step}/{info.iters}  "
                f"{info.method}  {_model_name(info.model)}\nloss {_num(info.loss)}  MLE {_num(info.mle)}  "
                f"RTO {_num(info.rto)}  val {_num(info.val_loss)}")
        if info.error:
            text += f"\n[red]{info.error}[/red]"
        self.query_one("#detail-summary", Static).update(text)
        self.query_one("#detail-chart", LossChart).show_rows(read_metrics(self.run_dir))

    def action_follow(self) -> None:
        self.app.pop_screen()
        self.app.follow_run(self.run_dir)

    def action_probe(self) -> None:
        if not (self.run_dir / "adapters.safetensors").is_file():
            self.notify("This run has no adapter yet.", severity="warning")
            return
        self.app.pop_screen()
        self.app.probe_run(self.run_dir)

    def action_stop(self) -> None:
        if stop_training(self.run_dir):
            self.notify("Stopping after the current step; a checkpoint will be written.")
        else:
            self.notify("This run is not running.", severity="warning")

    def action_resume(self) -> None:
        if not run_info(self.run_dir).resumable:
            self.notify("Nothing to resume (finished, running, or no checkpoint).", severity="warning")
            return
        self.app.pop_screen()
        self.app.follow_run(self.run_dir, resume_training(self.run_dir))
