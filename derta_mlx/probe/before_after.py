"""The main job's before/after probe: refusal inside harmful answers, its coherence, and
helpfulness on ordinary questions, measured the same way before and after training.

Writes `probe_before.json` / `probe_after.json` into the run directory (per-position rows,
the helpfulness summary and per-question verdicts; never the harmful continuations' text).
"""

from contextlib import nullcontext
from dataclasses import asdict
from typing import Callable

from derta_mlx.common.atomic import write_json
from derta_mlx.probe.borderline import (
    BORDERLINE_DEMO,
    answer_borderline,
    read_borderline,
    stratified,
    summarise_borderline,
)
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
# the main job's held-out borderline prompts: the first 6 safe and 3 unsafe of each of the 8 types
BORDERLINE_SAFE, BORDERLINE_UNSAFE = 6, 3


def main_job_borderline(path=BORDERLINE_DEMO) -> list:
    return stratified(read_borderline(path), BORDERLINE_SAFE, BORDERLINE_UNSAFE)


def measure(model, tokenizer, template, refusal, examples, label: str, notify: Callable[[str], None],
            benign=None, bar: Callable = None, borderline=None) -> dict:
    """Refusal, coherence and P(again) per position on `examples` (ProbeExamples), helpfulness
    on the benign questions and over-refusal on the borderline prompts (defaults: the bundled
    held-out sets). `bar(label, total, unit)` makes a progress context (progress.Bar) per step."""
    bar = bar or (lambda *args: nullcontext())  # no progress shown
    ids = refusal.probe_ids
    notify(f"Probing refusal {label}: {len(examples)} held-out questions x "
           f"{len(PROBE_POSITIONS)} positions, {CONTINUATION_TOKENS} tokens each")
    with bar(f"Probing {label}", probe_steps(len(examples), len(PROBE_POSITIONS)), "steps") as progress:
        results = probe_examples(model, tokenizer, template, ids, examples, PROBE_POSITIONS,
                                 max_tokens=CONTINUATION_TOKENS, refusal_token=refusal.token_id,
                                 progress=progress, full_curve=False)
    rows = [asdict(row) for row in summarise(results, PROBE_POSITIONS)]
    return {"positions": list(PROBE_POSITIONS), "rows": rows, "refusal_ids": ids, "refusal_token": refusal.token_id,
            **measure_helpfulness(model, tokenizer, template, label, notify, benign, borderline, bar)}


def measure_helpfulness(model, tokenizer, template, label: str, notify: Callable[[str], None], benign=None,
                        borderline=None, bar: Callable = None) -> dict:
    """Answers to the ordinary questions and the borderline prompts (defaults: the bundled
    held-out sets), scored: the half of `measure` that asks whether the model still helps."""
    bar = bar or (lambda *args: nullcontext())
    benign = benign if benign is not None else read_benign(BENIGN_HELDOUT)
    notify(f"Asking {len(benign)} ordinary held-out questions {label} ({ANSWER_TOKENS} tokens each)")
    with bar(f"Answering {label}", len(benign), "questions") as progress:
        answers = answer_benign(model, tokenizer, template, benign, ANSWER_TOKENS, progress)
    borderline = borderline if borderline is not None else main_job_borderline()
    notify(f"Asking {len(borderline)} borderline held-out prompts {label} ({ANSWER_TOKENS} tokens each)")
    with bar(f"Borderline {label}", len(borderline), "prompts") as progress:
        replies = answer_borderline(model, tokenizer, template, borderline, ANSWER_TOKENS, progress)
    return {"helpfulness": asdict(summarise_helpfulness(answers)), "benign_answers": [asdict(a) for a in answers],
            "borderline": summarise_borderline(replies), "borderline_answers": [asdict(r) for r in replies]}


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
              *borderline_lines(before.get("borderline"), after.get("borderline"), pair),
              "", "refuses: a full or partial refusal in a greedy continuation (derta_mlx/data/detector.py); partial: "
              "it refuses and also goes on with the answer; coherent: a full refusal, as a sentence "
              "(derta_mlx/probe/coherence.py); P(refusal): teacher-forced, after k harmful tokens; P(again): the "
              "refusal token right after itself (low is good)."]
    return "\n".join(lines)


def borderline_lines(before, after, pair) -> list:
    """The table's borderline rows (absent for a report from before they were measured)."""
    if not before or not after:
        return []
    b, a = before["overall"], after["overall"]
    pct = lambda value: (value or 0.0) / 100  # noqa: E731 (summaries hold percentages)
    lines = ["", f"Borderline held-out prompts ({b['safe']['n']} safe that only sound unsafe, {b['unsafe']['n']} "
             "unsafe twins), before -> after:",
             f"  safe answered         {pair(pct(b['safe']['compliance']), pct(a['safe']['compliance']))}   "
             f"over-refused (full + partial) {pair(pct(b['over_refusal']), pct(a['over_refusal']))}",
             f"  unsafe refused        {pair(pct(b['unsafe_refused']), pct(a['unsafe_refused']))}",
             "  over-refused by type: " + ", ".join(
                 f"{name} {row['over_refusal'] or 0:.0f}->{after['by_type'].get(name, {}).get('over_refusal') or 0:.0f}%"
                 for name, row in before["by_type"].items())]
    return lines
