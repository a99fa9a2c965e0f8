"""The refusal detector against a labelled set written for this project (mild examples)."""

import json
from pathlib import Path

from derta_mlx.data.detector import detect_refusal

LABELS = Path(__file__).parent / "data" / "refusal_labels.jsonl"


def scores():
    tp = fp = fn = 0
    wrong_start = []
    for line in LABELS.read_text().splitlines():
        row = json.loads(line)
        verdict = detect_refusal(row["text"])
        if verdict.refuses and row["refuses"]:
            tp += 1
            if verdict.start != row["start"]:
                wrong_start.append(row["id"])
        elif verdict.refuses:
            fp += 1
        elif row["refuses"]:
            fn += 1
    return tp / (tp + fp), tp / (tp + fn), wrong_start


def test_precision_recall_and_start_positions():
    precision, recall, wrong_start = scores()
    # measured: precision 0.88 (23/26), recall 1.00 (23/23) on 50 rows
    assert precision >= 0.85 and recall >= 0.95
    assert wrong_start == []


def test_glued_sorry_and_other_senses():
    assert detect_refusal("Step 1:Sorry, but no.").start == 7
    assert detect_refusal("Craft a message that conSorry, I can't.").refuses
    assert not detect_refusal("I feel sorry for them, so here is a plan.").refuses
    assert not detect_refusal("A sorry-looking cake.").refuses
    assert not detect_refusal("Sure! Step 1: open the jar.").refuses
