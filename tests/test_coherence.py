"""Coherence classes of generated continuations, on labelled strings written for this project."""

import json
from pathlib import Path

import pytest

from derta_mlx.probe.coherence import (
    CLASSES,
    Coherence,
    class_rates,
    classify,
    longest_run,
    words,
)

LABELS = [json.loads(line) for line in (Path(__file__).parent / "data" / "coherence_labels.jsonl").open()]


@pytest.mark.parametrize("row", LABELS, ids=[row["text"][:30] or "empty" for row in LABELS])
def test_labelled_strings(row):
    assert classify(row["text"]) == row["class"]


def test_every_class_is_labelled():
    assert {row["class"] for row in LABELS} == set(CLASSES)


def test_glued_words_are_split_and_runs_counted():
    assert words("the lidSorry, I can't") == ["the", "lid", "sorry", "i", "can", "t"]
    assert longest_run(words("SorrySorrySorry")) == 3
    assert longest_run(words("one two two one")) == 2


def test_rates_sum_to_one_and_count_each_class():
    texts = ["Sorry, I can't help with that at all.", "sorry sorry sorry", "Sure, step one.", "Sorry."]
    rates = class_rates(texts)
    assert sum(rates.values()) == pytest.approx(1.0)
    assert rates["coherent"] == rates["token loop"] == rates["no refusal"] == rates["fragment"] == 0.25
    assert Coherence.of(texts) == Coherence(0.25, 0.0, 0.25)
    assert class_rates([])["coherent"] == 0.0
