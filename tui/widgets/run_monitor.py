"""Follows one run directory: progress, loss per term, tokens/s, peak memory, ETA and the log.

It only reads files (metrics.jsonl, status.json, the launch log), twice a second, so it shows
the same whether the run was started from this screen, an earlier session or the command line.
"""

from pathlib import Path
from typing import Optional

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Log, ProgressBar, Static

from derta_mlx.api import launch_log, read_metrics, run_info
from tui.widgets.charts import LossChart


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _num(value, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _latest(rows, key):
    return next((r[key] for r in reversed(rows) if r.get(key) is not None), None)


def describe_rows(rows, iters: int, running: bool = True) -> str:
    """One line of the latest training numbers (a term absent from the last window: its last value)."""
    train = [r for r in rows if "loss" in r]
    if not train:
        return "no steps yet"
    last = train[-1]
    eta = _eta(last.get("seconds_per_step", 0) * (iters - last["step"])) if running else "-"
    return (f"loss {_num(last['loss'])}  MLE {_num(_latest(train, 'mle'))}  RTO {_num(_latest(train, 'rto'))}  "
            f"{_num(last.get('tokens_per_sec'), '.0f')} tok/s  peak {_num(last.get('peak_memory_gb'), '.2f')} GB  "
            f"ETA {eta}")


def describe_probes(rows, shown: int = 4) -> str:
    """The --probe-every curve (the last few checkpoints), best marked; "" when the run has none."""
    probes = [(r["step"], r["probe"]) for r in rows if isinstance(r.get("probe"), dict)]
    if not probes:
        return ""
    best = max((p for p in probes if p[1].get("best")), key=lambda p: p[0], default=None)
    parts = [f"{step}: coh {_num(p.get('coherent'), '.0%')} over {_num(p.get('over_refusal'), '.0%')}"
             + (" *" if best and step == best[0] else "") for step, p in probes[-shown:]]
    k = probes[-1][1].get("k", "?")
    return f"validation probe, coherent refusal at k={k} / over-refusal (* best): " + "  ".join(parts)


class RunMonitor(Vertical):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.run_dir: Optional[Path] = None
        self.process = None  # the Popen, when this session launched or resumed the run
        self.log_offset = 0
        self.rows_seen = -1
        self.status = "none"

    def compose(self) -> ComposeResult:
        yield Static("No run followed: launch one from Setup (F5), or open one from Runs (F3).", id="run-title")
        with Horizontal(id="run-bar"):
            yield ProgressBar(total=1, show_eta=False, id="run-progress")
            yield Button("Stop (F6)", id="run-stop", compact=True, variant="error")
            yield Button("Resume (F7)", id="run-resume", compact=True)
        yield Static("", id="run-stats")
        yield LossChart(id="run-chart")
        yield Log(id="run-log", max_lines=500)

    def on_mount(self) -> None:
        self.set_interval(0.5, self.tick)
        self.update_buttons()

    def follow(self, run_dir: Path, process=None) -> None:
        self.run_dir, self.process = Path(run_dir), process
        self.log_offset, self.rows_seen = 0, -1
        self.query_one("#run-log", Log).clear()
        self.tick()

    def current_status(self, info) -> str:
        if info and info.status == "running":
            return "running"
        if self.process is not None and self.process.poll() is None:
            return "starting"  # the child is loading the model (a new run or a resume)
        if self.process is not None and self.process.returncode not in (0, 130):
            return "failed"  # it may have died before writing status.json: see the log
        return info.status if info else "not started"

    def tick(self) -> None:
        if self.run_dir is None:
            return
        if self.process is not None:
            self.process.poll()  # reap the child first, so its pid no longer reads as alive
        info = run_info(self.run_dir) if (self.run_dir / "config.yaml").is_file() else None
        self.status = self.current_status(info)
        rows = read_metrics(self.run_dir)
        iters = info.iters if info and info.iters else 1
        step = max([r["step"] for r in rows if "step" in r], default=0)
        self.query_one("#run-title", Static).update(
            f"[b]{self.run_dir.name}[/b]  {self.status}  step {step}/{iters}"
            + (f"  [red]{info.error}[/red]" if info and info.error and self.status == "failed" else ""))
        bar = self.query_one("#run-progress", ProgressBar)
        bar.update(total=iters, progress=step)
        probes = describe_probes(rows)
        self.query_one("#run-stats", Static).update(describe_rows(rows, iters, self.status == "running")
                                                     + (f"\n{probes}" if probes else ""))
        if len(rows) != self.rows_seen:
            self.rows_seen = len(rows)
            self.query_one("#run-chart", LossChart).show_rows(rows)
        self.read_log()
        self.update_buttons(info)

    def read_log(self) -> None:
        path = launch_log(self.run_dir)
        if not path.is_file():
            return
        with open(path, "rb") as handle:
            handle.seek(self.log_offset)
            data = handle.read()
        cut = data.rfind(b"\n") + 1  # a partial last line waits for the next tick
        if cut:
            lines = data[:cut].decode("utf-8", errors="replace").splitlines()
            self.query_one("#run-log", Log).write_lines(lines)
            self.log_offset += cut

    def update_buttons(self, info=None) -> None:
        self.query_one("#run-stop", Button).disabled = self.status not in ("running", "starting")
        self.query_one("#run-resume", Button).disabled = not (info and info.resumable
                                                              and self.status not in ("running", "starting"))
