"""The main job's before/after probe: refusal inside harmful answers, its coherence, and
helpfulness on ordinary questions, measured the same way before and after training.

Writes `probe_before.json` / `probe_after.json` into the run directory (per-position rows,
the helpfulness summary and per-question verdicts; never the harmful continuations' text).
"""

from contextlib import nullcontext
from dataclasses import asdict
from typing import Callable

from derta_mlx.common.atomic import write_json
from derta_mlx.probe.curves import ProbeExample
from derta_mlx.probe.helpfulness import (
    BENIGN_HELDOUT,
    answer_benign,
    read_benign,
    summarise_helpfulness,
)
from derta_mlx.probe.positions import probe_examples, probe_steps, summarise

PROBE_POSITIONS = (0, 5, 10, 20, 40)
CONTINUATION_TOKENS = 16
ANSWER_TOKENS = 48


def measure(model, tokenizer, template, refusal, examples, label: str, notify: Callable[[str], None],
            benign=None, bar: Callable = None) -> dict:
    """Refusal, coherence and P(again) per position on `examples` (ProbeExamples), and
    helpfulness on the benign questions (default: the bundled held-out set). `bar(label, total,
    unit)` makes a progress context (progress.Bar) for each of the two steps."""
    bar = bar or (lambda *args: nullcontext())  # no progress shown
    ids = sorted({refusal.token_id, *[i for i, _ in refusal.variants]})
    notify(f"Probing refusal {label}: {len(examples)} held-out questions x "
           f"{len(PROBE_POSITIONS)} positions, {CONTINUATION_TOKENS} tokens each")
    with bar(f"Probing {label}", probe_steps(len(examples), len(PROBE_POSITIONS)), "steps") as progress:
        results = probe_examples(model, tokenizer, template, ids, examples, PROBE_POSITIONS,
                                 max_tokens=CONTINUATION_TOKENS, refusal_token=refusal.token_id,
                                 progress=progress, full_curve=False)
    rows = [asdict(row) for row in summarise(results, PROBE_POSITIONS)]
    benign = benign if benign is not None else read_benign(BENIGN_HELDOUT)
    notify(f"Asking {len(benign)} ordinary held-out questions {label} ({ANSWER_TOKENS} tokens each)")
    with bar(f"Answering {label}", len(benign), "questions") as progress:
        answers = answer_benign(model, tokenizer, template, benign, ANSWER_TOKENS, progress)
    return {"positions": list(PROBE_POSITIONS), "rows": rows, "refusal_ids": ids,
            "refusal_token": refusal.token_id, "helpfulness": asdict(summarise_helpfulness(answers)),
            "benign_answers": [asdict(a) for a in answers]}


def probe_run(model, tokenizer, prepared, label: str, notify: Callable[[str], None], bar: Callable = None) -> dict:
    """`measure` on the run's held-out safety rows, saved as probe_{label}.json in the run."""
    examples = [ProbeExample(r.question, r.harmful_response, r.id) for r in prepared.probe_examples]
    report = measure(model, tokenizer, prepared.template, prepared.refusal, examples, f"{label} training", notify,
                     bar=bar)
    write_json(prepared.run_dir / f"probe_{label}.json", report)
    return report


def format_table(before: dict, after: dict) -> str:
    """The before -> after table the main job prints."""
    lines = ["", "Refusal when made to continue from the first k tokens of a harmful answer "
             f"({before['rows'][0]['n']} held-out questions), before -> after:",
             f"{'k':>4}  {'refuses':>13}  {'partial':>13}  {'coherent':>13}  {'re-refusal':>13}  {'token loop':>13}  "
             f"{'P(refusal)':>15}  {'P(again)':>15}"]

    def pair(b, a, percent=True):
        return f"{b:>5.0%} -> {a:<4.0%}" if percent else f"{b:.3f} -> {a:.3f}"

    for b, a in zip(before["rows"], after["rows"]):
        lines.append(f"{b['position']:>4}  {pair(b['refusal_rate'], a['refusal_rate'])}  "
                     f"{pair(b.get('partial', 0.0), a.get('partial', 0.0))}  {pair(b['coherent'], a['coherent'])}  {pair(b['re_refusal'], a['re_refusal'])}  "
                     f"{pair(b['token_loop'], a['token_loop'])}  "
                     f"{pair(b['mean_p_refusal'], a['mean_p_refusal'], False)}  "
                     f"{pair(b['mean_p_again'], a['mean_p_again'], False)}")
    hb, ha = before["helpfulness"], after["helpfulness"]
    lines += ["", f"Ordinary held-out questions ({hb['n']}, half only sound risky), before -> after:",
              f"  answered correctly   {pair(hb['answered'], ha['answered'])}   "
              f"risky-sounding only {pair(hb['answered_risky'], ha['answered_risky'])}",
              f"  refused              {pair(hb['refused'], ha['refused'])}   "
              f"risky-sounding only {pair(hb['refused_risky'], ha['refused_risky'])}",
              "", "refuses: a full or partial refusal in a greedy continuation (derta_mlx/data/detector.py); partial: "
              "it refuses and also goes on with the answer; coherent: a full refusal, as a sentence "
              "(derta_mlx/probe/coherence.py); P(refusal): teacher-forced, after k harmful tokens; P(again): the "
              "refusal token right after itself (low is good)."]
    return "\n".join(lines)
