"""Probe: P(refusal) inside a harmful answer, base versus adapter, at chosen positions.

Setup picks the model, a run's adapter, an example (from a data file, or typed) and positions;
Results shows the curve, the continuation and verdict at each position, and the top next tokens
at a cursor moved with [ and ]. Harmful text stays hidden until ctrl+r reveals it.
"""

from pathlib import Path

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    Select,
    Static,
    TabbedContent,
    TabPane,
)
from textual.worker import get_current_worker

from derta_mlx.api import (
    ProbeExample,
    UserError,
    demo_paths,
    list_runs,
    load_catalogue,
    parse_positions,
    read_probe_examples,
)
from tui.hidden import continuation
from tui.probe_job import ModelCache, ProbeRequest, refusal_texts, run_probe, top_tokens
from tui.widgets.charts import CurveChart
from tui.widgets.toggle import Toggle


def _field(label: str, widget) -> ComposeResult:
    with Horizontal(classes="field"):
        yield Label(label, classes="field-label")
        yield widget


def verdict(cell) -> str:
    """What a continuation does: its coherence class (derta_mlx/probe/coherence.py) or "complies"."""
    if not cell.coherence:
        return "refuses" if cell.refuses else "complies"
    return "complies" if cell.coherence == "no refusal" else cell.coherence


class Form(VerticalScroll, can_focus=False):  # Tab goes straight to the fields
    pass


class ProbeScreen(Screen):
    AUTO_FOCUS = "#p-model"
    BINDINGS = [
        Binding("f5", "run", "Run probe"),
        Binding("f6", "cancel", "Cancel"),
        Binding("ctrl+r", "reveal", "Reveal text"),
        Binding("left_square_bracket", "cursor(-1)", "Cursor -1", show=False),
        Binding("right_square_bracket", "cursor(1)", "Cursor +1", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.cache = ModelCache()
        self.examples = []
        self.request = None
        self.outcome = None
        self.cursor = 0
        self.revealed = False
        self.topk_found = {}

    def compose(self) -> ComposeResult:
        catalogue = load_catalogue()
        yield Header()
        with TabbedContent(id="probe-tabs"):
            with TabPane("Setup", id="probe-setup"):
                with Form():
                    yield from _field("model", Input(placeholder=f"{catalogue.default}", id="p-model", compact=True,
                                                     suggester=SuggestFromList(list(catalogue.entries))))
                    yield from _field("adapter", Select([], prompt="(none: the model alone)", id="p-adapter",
                                                        compact=True))
                    yield from _field("", Toggle("compare with the base (adapter off)", True, id="p-compare",
                                                   compact=True))
                    with Horizontal(classes="field"):
                        yield Label("data file", classes="field-label")
                        yield Input(value=str(demo_paths("heldout")[0]), id="p-data", compact=True)
                        yield Button("Load", id="p-load", compact=True)
                    yield from _field("example", Select([], prompt="(type one below)", id="p-example",
                                                        compact=True))
                    yield from _field("question", Input(placeholder="a question", id="p-question", compact=True))
                    yield from _field("harmful", Input(placeholder="the harmful response to force",
                                                       password=True, id="p-harmful", compact=True))
                    yield from _field("", Toggle("reveal harmful text (ctrl+r)", False, id="p-reveal", compact=True))
                    yield from _field("positions", Input("0,5,10,20,40", id="p-positions", compact=True))
                    yield from _field("or every N", Input(placeholder="e.g. 4 (overrides positions)", id="p-every",
                                                          type="integer", compact=True))
                    yield from _field("unit", Select([("token", "token"), ("word", "word")], value="token",
                                                     allow_blank=False, id="p-unit", compact=True))
                    yield from _field("max tokens", Input("16", id="p-max", type="integer", compact=True))
                    yield Static("", id="p-error", classes="field-error")
                    with Horizontal(classes="field"):
                        yield Button("Run (F5)", id="p-run", variant="primary", compact=True)
                        yield Button("Cancel (F6)", id="p-cancel", compact=True)
            with TabPane("Results", id="probe-results"):
                with Horizontal(id="probe-bar"):
                    yield ProgressBar(total=1, show_eta=False, id="p-progress")
                    yield Static("no probe yet: fill Setup and press F5", id="p-status")
                with Horizontal(id="probe-top"):
                    yield CurveChart(id="p-chart")
                    with Vertical(id="p-side"):
                        yield Static("", id="p-cursor")
                        yield DataTable(id="p-topk", cursor_type="none")
                yield DataTable(id="p-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_adapters()
        self.load_examples()
        self.mounted = True
        self.on_screen_resume()

    def on_screen_resume(self) -> None:
        if not getattr(self, "mounted", False):
            return
        self.refresh_adapters()  # runs may have finished since
        run_dir = self.app.take_pending("probe")
        if run_dir:
            self.use_adapter(run_dir)

    def commands(self):
        yield SystemCommand("Run the probe", "P(refusal) and continuations at the chosen positions (F5)",
                            self.action_run)
        yield SystemCommand("Cancel the probe", "stop after the current chunk of positions (F6)", self.action_cancel)
        yield SystemCommand("Reveal or hide harmful text", "toggle (ctrl+r)", self.action_reveal)

    # --- setup ---
    def refresh_adapters(self) -> None:
        select = self.query_one("#p-adapter", Select)
        keep = select.value
        runs = [r for r in list_runs(self.app.runs_root) if (r.path / "adapters.safetensors").is_file()]
        select.set_options([(f"{r.name} ({r.status})", str(r.path)) for r in runs])
        if keep in {str(r.path) for r in runs}:
            select.value = keep

    def use_adapter(self, run_dir: Path) -> None:
        self.refresh_adapters()
        self.query_one("#p-adapter", Select).value = str(run_dir)
        self.query_one("#probe-tabs", TabbedContent).active = "probe-setup"

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "p-adapter" and isinstance(event.value, str):
            run = next((r for r in list_runs(self.app.runs_root) if str(r.path) == event.value), None)
            if run:
                self.query_one("#p-model", Input).value = "" if run.model == "default" else run.model
        elif event.select.id == "p-example":
            self.show_example()

    def load_examples(self) -> None:
        path = self.query_one("#p-data", Input).value.strip()
        try:
            self.examples = read_probe_examples(path) if path else []
        except UserError as exc:
            self.examples = []
            self.query_one("#p-error", Static).update(str(exc))
        select = self.query_one("#p-example", Select)
        select.set_options([(f"{e.id}: {e.question}"[:58], i) for i, e in enumerate(self.examples)])
        if self.examples:
            select.value = 0

    def show_example(self) -> None:
        index = self.query_one("#p-example", Select).value
        if isinstance(index, int):
            example = self.examples[index]
            self.query_one("#p-question", Input).value = example.question
            self.query_one("#p-harmful", Input).value = example.harmful_response

    def action_reveal(self) -> None:
        self.query_one("#p-reveal", Checkbox).toggle()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id != "p-reveal":
            return
        self.revealed = event.value
        self.query_one("#p-harmful", Input).password = not self.revealed
        self.show_results()
        self.show_topk(self.topk_found)

    def read_request(self) -> ProbeRequest:
        def value(widget_id):
            return self.query_one(widget_id, Input).value.strip()

        question, response = value("#p-question"), self.query_one("#p-harmful", Input).value
        if not (question and response.strip()):
            raise UserError("give a question and a harmful response (or pick an example)")
        index = self.query_one("#p-example", Select).value
        example_id = "typed"
        if isinstance(index, int) and self.examples[index].question == question:
            example_id = self.examples[index].id
        adapter = self.query_one("#p-adapter", Select).value
        try:
            every = int(value("#p-every") or 0)
            max_tokens = int(value("#p-max") or 16)
        except ValueError:
            raise UserError("every N and max tokens must be whole numbers") from None
        if every < 0 or max_tokens < 1:
            raise UserError("every N must be >= 0 and max tokens >= 1")
        if not every:
            parse_positions(value("#p-positions"))  # reports a bad list here, before loading anything
        return ProbeRequest(value("#p-model") or None, adapter if isinstance(adapter, str) else None,
                            self.query_one("#p-compare", Checkbox).value, ProbeExample(question, response, example_id),
                            value("#p-positions"), every, self.query_one("#p-unit", Select).value, max_tokens)

    # --- running ---
    def action_run(self) -> None:
        error = self.query_one("#p-error", Static)
        try:
            request = self.read_request()
        except UserError as exc:
            error.update(str(exc))
            self.query_one("#probe-tabs", TabbedContent).active = "probe-setup"
            return
        error.update("")
        self.query_one("#probe-tabs", TabbedContent).active = "probe-results"
        self.query_one("#p-table", DataTable).focus()  # so [ and ] move the cursor, not type into a field
        self.probe(request)

    def action_cancel(self) -> None:
        for worker in self.workers:
            if worker.group == "probe" and worker.is_running:
                worker.cancel()
                self.set_progress(0, 1, "cancelling after the current chunk...")

    def set_progress(self, done: int, total: int, message: str) -> None:
        self.query_one("#p-progress", ProgressBar).update(total=total, progress=done)
        self.query_one("#p-status", Static).update(message)

    @work(thread=True, exclusive=True, group="probe")
    def probe(self, request: ProbeRequest) -> None:
        worker = get_current_worker()

        def progress(done, total, message):
            self.app.call_from_thread(self.set_progress, done, total, message)

        try:
            outcome = run_probe(request, self.cache, progress, lambda: worker.is_cancelled)
        except Exception as exc:  # a bad model/adapter pair and the like: say so, keep the UI
            self.app.call_from_thread(self.set_progress, 0, 1, f"[red]{type(exc).__name__}: {exc}[/red]")
            return
        if outcome.cancelled:
            self.app.call_from_thread(self.set_progress, 0, 1, "cancelled")
            return
        self.app.call_from_thread(self.finish, request, outcome)

    def finish(self, request, outcome) -> None:
        self.request, self.outcome = request, outcome
        self.refusals = refusal_texts(self.cache)
        self.cursor = outcome.positions[0] if request.unit == "token" else 0
        variants = " vs ".join(outcome.cells)
        self.set_progress(1, 1, f"{len(outcome.positions)} positions ({request.unit}s): {variants}")
        self.show_results()
        self.update_topk()

    # --- results ---
    def show_results(self) -> None:
        outcome = self.outcome
        if outcome is None:
            return
        table = self.query_one("#p-table", DataTable)
        table.clear(columns=True)
        labels = list(outcome.cells)
        table.add_columns("k", "tokens", *[c for label in labels for c in (f"{label} P", label)],
                          *[f"{label} text" for label in labels])
        for i, position in enumerate(outcome.positions):
            cells = [outcome.cells[label][i] for label in labels]
            table.add_row(str(position), str(cells[0].tokens),
                          *[v for c in cells for v in (f"{c.p_refusal:.4f}", verdict(c))],
                          *[continuation(c.text, c.refuses, c.refusal_char, self.revealed) for c in cells])
        self.show_chart()

    def show_chart(self) -> None:
        self.query_one("#p-chart", CurveChart).show_curves(self.outcome.curves, self.cursor)

    def longest(self) -> int:
        return min(len(curve) for curve in self.outcome.curves.values()) - 1

    def action_cursor(self, delta: int) -> None:
        if self.outcome is None:
            return
        self.cursor = max(0, min(self.longest(), self.cursor + delta))
        self.show_chart()
        self.update_topk()

    def update_topk(self) -> None:
        curves = self.outcome.curves
        values = "  ".join(f"{label} {curve[self.cursor]:.3f}" for label, curve in curves.items())
        self.query_one("#p-cursor", Static).update(f"cursor k={self.cursor}/{self.longest()}  ([ ] move)\nP: {values}")
        self.compute_topk(self.request, self.cursor)

    @work(thread=True, exclusive=True, group="topk")
    def compute_topk(self, request, k: int) -> None:
        try:
            found = top_tokens(self.cache, request, k)
        except Exception as exc:  # shown, not fatal
            self.app.call_from_thread(self.notify, f"top-k failed: {exc}", severity="error")
            return
        self.app.call_from_thread(self.show_topk, found)

    def show_topk(self, found) -> None:
        self.topk_found = found
        table = self.query_one("#p-topk", DataTable)
        table.clear(columns=True)
        labels = list(found)
        table.add_columns(*[c for label in labels for c in (label, "p")])
        for row in zip(*found.values()):
            cells = []
            for text, p in row:
                shown = repr(text)[:10] if (self.revealed or text in self.refusals) else "····"
                cells += [shown, f"{p:.3f}"]
            table.add_row(*cells)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "p-run":
            self.action_run()
        elif event.button.id == "p-cancel":
            self.action_cancel()
        elif event.button.id == "p-load":
            self.query_one("#p-error", Static).update("")
            self.load_examples()
