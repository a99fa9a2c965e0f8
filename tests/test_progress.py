"""Progress of long work: a line every ~10% off a terminal, rich's bar on one."""

import io

import pytest

from derta_mlx.common import progress
from derta_mlx.common.progress import Bar


@pytest.fixture(autouse=True)
def every_tenth(monkeypatch):
    monkeypatch.setattr(progress, "MIN_SECONDS_BETWEEN_LINES", 0.0)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_a_line_at_the_start_and_each_tenth():
    out = io.StringIO()
    with Bar("Probing", 200, "steps", stream=out) as bar:
        for done in range(1, 201):
            bar(done)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Probing: 0/200 steps..."
    assert len(lines) == 11  # the start, then 10%, 20%, ..., 100%
    assert lines[1].startswith("Probing: 20/200 steps (10%), ") and "/s" in lines[1] and "ETA" in lines[1]
    assert lines[-1].startswith("Probing: 200/200 steps (100%)") and "ETA" not in lines[-1]


def test_big_jumps_print_one_line_and_totals_can_change():
    out = io.StringIO()
    with Bar("Answering", 30, stream=out) as bar:
        bar(10)
        bar(30, 40)  # the total grew
        bar(40)
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines[1:]] == ["Answering: 10/30", "Answering: 30/40", "Answering: 40/40"]


def test_work_that_ends_early_says_where_it_stopped():
    out = io.StringIO()
    with Bar("Generating", 100, stream=out) as bar:
        bar(3)
    assert out.getvalue().splitlines()[-1].startswith("Generating: 3/100 (3%)")


def test_on_a_terminal_rich_draws_the_bar_with_count_rate_and_eta():
    out = FakeTerminal()
    with Bar("Probing before training", 4, "steps", stream=out) as bar:
        for _ in range(4):
            bar.advance()
    text = out.getvalue()
    assert "Probing before training" in text and "4/4" in text and "steps/s" in text and "ETA" in text


def test_short_work_prints_its_start_and_end_only(monkeypatch):
    monkeypatch.setattr(progress, "MIN_SECONDS_BETWEEN_LINES", 60.0)
    out = io.StringIO()
    with Bar("Writing", 50, stream=out) as bar:
        for done in range(1, 51):
            bar(done)
    assert [line.split(":")[0] for line in out.getvalue().splitlines()] == ["Writing", "Writing"]
    assert out.getvalue().splitlines()[-1].startswith("Writing: 50/50 (100%)")
