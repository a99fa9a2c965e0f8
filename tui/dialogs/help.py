"""F1 / ?: every key of the app and of the screen underneath, with what it does."""

from typing import Iterable, Tuple

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEY_NAMES = {"question_mark": "?", "left_square_bracket": "[", "right_square_bracket": "]", "escape": "Esc"}


def key_label(key: str) -> str:
    return ", ".join(KEY_NAMES.get(k, k.replace("ctrl+", "^").upper() if len(k) > 1 else k) for k in key.split(","))


class HelpScreen(ModalScreen):
    """A list of keys over the current screen; Esc, F1 or ? closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 74; height: auto; max-height: 90%; border: round $accent;
                                  background: $panel; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,f1,question_mark,q", "app.pop_screen", "Close", show=False)]

    def __init__(self, sections: Iterable[Tuple[str, list]]):
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        lines = []
        for title, bindings in self.sections:
            lines.append(f"[b]{title}[/b]")
            lines += [f"  {key_label(b.key):<14} {b.description or b.action}" for b in bindings]
            lines.append("")
        lines.append("Esc closes this. Number keys and ? work when no text field has the cursor.")
        with VerticalScroll():
            yield Static("\n".join(lines), id="help-text")
