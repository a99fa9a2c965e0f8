"""Models: the catalogue, which entries are on this machine, download/build, and GGUF import."""

from functools import partial
from pathlib import Path

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    ProgressBar,
    Static,
)

from derta_mlx.api import (
    cached_bytes,
    convert_gguf,
    ensure_local,
    find_model,
    load_catalogue,
    local_path,
    models_dir,
    train_memory_label,
)
from tui.mlx_thread import streams_cleared

COLUMNS = ("name", "local", "family", "from", "template", "disk", "train mem (default / ckpt)")


class ModelsScreen(Screen):
    BINDINGS = [
        Binding("d", "download", "Download/prepare"),
        Binding("g", "gguf", "GGUF import"),
        Binding("r", "refresh", "Refresh"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="model-detail")
        with Horizontal(id="model-work"):
            yield ProgressBar(total=None, show_eta=False, id="model-progress")
            yield Static("", id="model-status")
        with Horizontal(id="gguf-row"):
            yield Input(placeholder="GGUF file to import", id="gguf-path", compact=True)
            yield Input(placeholder="out dir (default: the models dir/NAME)", id="gguf-out", compact=True)
            yield Button("Convert", id="gguf-convert", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.catalogue = load_catalogue()
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.query_one("#model-work").display = False
        self.action_refresh()

    def commands(self):
        yield SystemCommand("Download or prepare the selected model", "fetch, convert or build it (d)",
                            self.action_download)
        yield SystemCommand("Import a GGUF file", "convert a llama.cpp GGUF into an mlx-lm directory (g)",
                            self.action_gguf)

    def action_refresh(self) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for entry in self.catalogue.entries.values():
            present = local_path(find_model(entry.name)) is not None
            name = entry.name + (" *" if entry.name == self.catalogue.default else "")
            table.add_row(name, "[green]yes[/]" if present else "no", entry.family, entry.source, entry.template,
                          f"{entry.disk_gb:g} GB", train_memory_label(entry.name), key=entry.name)
        table.move_cursor(row=keep)
        self.show_detail()

    def selected(self) -> str:
        table = self.query_one(DataTable)
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def show_detail(self) -> None:
        entry = self.catalogue.entries[self.selected()]
        path = local_path(find_model(entry.name))
        where = str(path) if path else "not on this machine (d: download or prepare)"
        self.query_one("#model-detail", Static).update(
            f"[b]{entry.name}[/b]{' (default)' if entry.name == self.catalogue.default else ''}: {entry.description}\n"
            + (f"hub: {entry.repo}\n" if entry.repo else "")
            + f"licence: {entry.licence}   refusal rule: {entry.refusal}   local: {where}")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def set_busy(self, message: str) -> None:
        self.query_one("#model-work").display = bool(message)
        self.query_one("#model-status", Static).update(message)
        if not message:
            self.query_one("#model-progress", ProgressBar).update(total=None, progress=0)

    def show_download(self, repo: str, expected: float) -> None:
        """The hub cache's bytes for repo against the catalogue's size (huggingface_hub resumes)."""
        self.query_one("#model-progress", ProgressBar).update(total=expected, progress=min(cached_bytes(repo), expected))

    def action_download(self) -> None:
        self.prepare(self.selected())

    def action_gguf(self) -> None:
        self.query_one("#gguf-path", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "gguf-convert":
            path = self.query_one("#gguf-path", Input).value.strip()
            out = self.query_one("#gguf-out", Input).value.strip()
            if not path:
                self.notify("Give the path of a .gguf file.", severity="error")
                return
            self.convert(path, out or str(models_dir() / Path(path).stem.lower()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("gguf-path", "gguf-out"):
            self.query_one("#gguf-convert", Button).press()

    @work(thread=True, exclusive=True, group="models")
    def prepare(self, name: str) -> None:
        """Download (hub), convert (embedded) or build (tiny) one entry; huggingface_hub resumes."""
        self.app.call_from_thread(self.set_busy, f"preparing {name}...")
        entry = self.catalogue.entries[name]
        timer = None
        if entry.source == "hub" and local_path(find_model(name)) is None:
            poll = partial(self.show_download, entry.repo, entry.disk_gb * 1e9)
            timer = self.app.call_from_thread(self.set_interval, 0.5, poll)
        try:
            with streams_cleared():
                path = ensure_local(find_model(name), lambda m: self.app.call_from_thread(self.set_busy, m))
        except Exception as exc:  # UserError, or a network/disk failure: shown, never fatal
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
        else:
            self.app.call_from_thread(self.notify, f"{name}: ready at {path}")
        finally:
            if timer is not None:
                self.app.call_from_thread(timer.stop)
            self.app.call_from_thread(self.set_busy, "")
            self.app.call_from_thread(self.action_refresh)

    @work(thread=True, exclusive=True, group="models")
    def convert(self, gguf: str, out: str) -> None:
        self.app.call_from_thread(self.set_busy, f"converting {gguf} -> {out}...")
        try:
            with streams_cleared():
                path = convert_gguf(gguf, out)
        except Exception as exc:  # GGUFError, UserError, OSError...: shown, never fatal
            self.app.call_from_thread(self.notify, f"GGUF import failed: {exc}", severity="error", timeout=10)
        else:
            self.app.call_from_thread(self.notify, f"wrote {path}; use it as the model: {path}", timeout=10)
        finally:
            self.app.call_from_thread(self.set_busy, "")
