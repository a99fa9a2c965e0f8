"""Progress of long work: a live bar on a terminal, a line every ~10% anywhere else.

Library functions take an optional `progress(done, total)` callback and never print; the CLI
passes a `Bar`. On a terminal the bar is rich's (which Textual already brings): label, bar,
count, rate and time left. In a log or a pipe, where a redrawn line would be noise, it writes one
line when the work starts and one each time another tenth is done (at most one a second), with
the same numbers.
"""

import sys
import time
from typing import Optional, TextIO

MIN_SECONDS_BETWEEN_LINES = 1.0


def notify_stderr(message: str) -> None:
    """The CLI's `notify` callback: one line of news on stderr, flushed so logs keep the order."""
    print(message, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class Bar:
    """`with Bar("Probing", total=150, unit="continuations") as bar: work(progress=bar)`.

    Call it as `bar(done)` or `bar(done, total)` (absolute counts, the callback form) or
    `bar.advance(n)`. `stream` defaults to stderr; `live` overrides the terminal check."""

    def __init__(self, label: str, total: int, unit: str = "", stream: Optional[TextIO] = None,
                 live: Optional[bool] = None):
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.done = 0
        self._start = self._last_line = time.perf_counter()
        self._next_tenth = 1
        self._rich = None

    def __enter__(self) -> "Bar":
        self._start = time.perf_counter()
        if self.live:
            self._rich = _rich_progress(self.stream)
            self._rich.start()
            self._task = self._rich.add_task(self.label, total=self.total or None, rate="")
        else:
            self._line(f"{self.label}: 0/{self.total} {self.unit}".rstrip() + "...")
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif kind is None and self.done < self.total:
            self._line(self._status())  # ended early (nothing left to do): say where

    def __call__(self, done: int, total: Optional[int] = None) -> None:
        if total is not None and total != self.total:
            self.total = int(total)
            if self._rich is not None:
                self._rich.update(self._task, total=self.total)
        self.advance(int(done) - self.done)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done, rate=self._rate_text())
            return
        if self.total and self.done * 10 >= self._next_tenth * self.total:
            self._next_tenth = self.done * 10 // self.total + 1
            now = time.perf_counter()
            # Short work gets its start and end lines only, not ten lines in a second.
            if self.done >= self.total or now - self._last_line >= MIN_SECONDS_BETWEEN_LINES:
                self._line(self._status())

    def rate(self) -> float:
        elapsed = time.perf_counter() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def _rate_text(self) -> str:
        return f"{self.rate():.2f} {self.unit}/s" if self.unit else f"{self.rate():.2f}/s"

    def _status(self) -> str:
        rate = self.rate()
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.label}: {self.done}/{self.total}{unit} ({self.done / max(self.total, 1):.0%}), {self._rate_text()}"
        if self.done < self.total and rate > 0:
            text += f", ETA {_clock((self.total - self.done) / rate)}"
        return text + f", {_clock(time.perf_counter() - self._start)} elapsed"

    def _line(self, text: str) -> None:
        self._last_line = time.perf_counter()
        self.stream.write(text + "\n")
        self.stream.flush()


def _rich_progress(stream: TextIO):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(file=stream))
