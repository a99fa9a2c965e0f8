"""A checkbox whose state reads in plain text too (X or blank), not only by colour."""

from textual.widgets import Checkbox


class Toggle(Checkbox):
    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 (Textual's name)
        return "X" if self.value else " "
