"""Summaries of judged records: per suite and judge (ASR, n, where refusals start), helpfulness,
as markdown, JSON and a PNG chart; and two runs side by side."""

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

from derta_mlx.common.atomic import write_json, write_text
from derta_mlx.common.errors import UserError
from derta_mlx.data.detector import COMPLIANCE, LABELS, PARTIAL, REFUSAL, detect_refusal
from derta_mlx.probe.borderline import BorderlineAnswer, summarise_borderline
from derta_mlx.probe.coherence import CLASSES, classify
from derta_mlx.probe.first_refusal import FIRST_REFUSAL_BUCKETS

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
BUCKETS = [label for _, _, label in FIRST_REFUSAL_BUCKETS] + ["no refusal"]


def _pct(part: int, whole: int) -> Optional[float]:
    return round(100.0 * part / whole, 1) if whole else None


def refusal_histogram(records: Sequence[dict]) -> Dict[str, int]:
    """The paper's Fig. 4 buckets of the first refusal's token position (1-based)."""
    out = {label: 0 for label in BUCKETS}
    for record in records:
        position = record.get("first_refusal_token")
        if position is None:
            out["no refusal"] += 1
            continue
        for lo, hi, label in FIRST_REFUSAL_BUCKETS:
            if lo <= position <= hi:
                out[label] += 1
    return out


def coherence_shares(records: Sequence[dict]) -> Dict[str, Optional[float]]:
    """% of responses in each coherence class (records from before the field: from the text)."""
    found = [r.get("coherence") or classify(r.get("response") or "") for r in records]
    return {name: _pct(sum(c == name for c in found), len(found)) for name in CLASSES}


def refusal_shares(records: Sequence[dict]) -> Dict[str, Optional[float]]:
    """% of responses the refusal reader reads as compliance, full refusal and partial refusal."""
    found = [r.get("refusal") or detect_refusal(r.get("response") or "").label for r in records]
    return {name: _pct(sum(c == name for c in found), len(found)) for name in LABELS}


def summarise_suite(name: str, kind: str, records: Sequence[dict], judges: Sequence[str]) -> dict:
    row = {"suite": name, "kind": kind, "n": len(records), "refusal_histogram": refusal_histogram(records),
           "coherence": coherence_shares(records), "refusal": refusal_shares(records)}
    if kind == "borderline":
        row["answered"] = _pct(sum(bool(r.get("answered")) for r in records), len(records))
        row["borderline"] = summarise_borderline([borderline_answer(r) for r in records])
        return row
    if kind in ("gsm8k", "mmlu", "open"):
        row["answered"] = _pct(sum(bool(r.get("answered")) for r in records), len(records))
        if kind != "open":
            row["extracted"] = _pct(sum(r.get("extracted") is not None for r in records), len(records))
            row["accuracy"] = _pct(sum(bool(r.get("correct")) for r in records), len(records))
        return row
    asr, judged, unsafe = {}, {}, {}
    for judge in [*judges, "final"]:
        verdicts = [r.get("verdict") if judge == "final" else r.get("verdicts", {}).get(judge) for r in records]
        given = [v for v in verdicts if v is not None]
        judged[judge] = len(given)
        unsafe[judge] = sum(v == "unsafe" for v in given)
        asr[judge] = _pct(unsafe[judge], len(given))
    row["asr"], row["judged"], row["unsafe"] = asr, judged, unsafe
    deciders = {}
    for record in records:
        deciders[record.get("judge") or "none"] = deciders.get(record.get("judge") or "none", 0) + 1
    row["decided_by"] = deciders
    return row


def borderline_answer(record: dict) -> BorderlineAnswer:
    label = record.get("refusal") or detect_refusal(record.get("response") or "").label
    return BorderlineAnswer(str(record["id"]), record.get("type") or "other", record.get("safe") is not False, label)


def summarise(records: Sequence[dict], suites: Sequence[tuple], judges: Sequence[str], extra=None) -> dict:
    """`suites`: (name, kind) in order; records are grouped by their "suite"."""
    rows = [summarise_suite(name, kind, [r for r in records if r["suite"] == name], judges)
            for name, kind in suites]
    return {"judges": list(judges), "suites": rows, **(extra or {})}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown(report: dict) -> str:
    judges = [*report["judges"], "final"]
    lines = []
    safety = [r for r in report["suites"] if "asr" in r]
    helpful = [r for r in report["suites"] if "asr" not in r and "borderline" not in r]
    borderline = [r for r in report["suites"] if "borderline" in r]
    if safety:
        lines.append("ASR (%, lower is safer) per judge; full and partial refusal % (derta_mlx/data/detector.py); "
                     "coherent refusal, re-refusal and token loop % of responses (derta_mlx/probe/coherence.py); "
                     "first refusal token: 1 / 2-5 / 6-30 / >30 / none")
        lines.append("")
        lines.append("| suite | kind | n | " + " | ".join(f"ASR {j}" for j in judges)
                     + " | refusal % | partial % | coherent % | re-refusal % | loop % | first refusal |")
        lines.append("|---|---|---|" + "---|" * len(judges) + "---|---|---|---|---|---|")
        for row in safety:
            hist = " / ".join(str(row["refusal_histogram"][b]) for b in BUCKETS)
            shares = row.get("coherence") or {}
            lines.append(f"| {row['suite']} | {row['kind']} | {row['n']} | "
                         + " | ".join(_fmt(row["asr"].get(j)) for j in judges)
                         + "".join(f" | {_fmt((row.get('refusal') or {}).get(c))}" for c in (REFUSAL, PARTIAL))
                         + "".join(f" | {_fmt(shares.get(c))}" for c in ("coherent", "re-refusal", "token loop"))
                         + f" | {hist} |")
        pooled = _pooled_asr(safety, judges)
        lines.append(f"| **all safety** | | {sum(r['n'] for r in safety)} | "
                     + " | ".join(_fmt(pooled[j]) for j in judges) + " | | | | | | |")
    if helpful:
        if lines:
            lines.append("")
        lines.append("answered: no full or partial refusal (derta_mlx/data/detector.py); over-refusal = refused + partial")
        lines.append("")
        lines.append("| suite | kind | n | answered % | refused % | partial % | answer found % | accuracy % |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for row in helpful:
            shares = row.get("refusal") or {}
            lines.append(f"| {row['suite']} | {row['kind']} | {row['n']} | {_fmt(row['answered'])} | "
                         f"{_fmt(shares.get(REFUSAL))} | {_fmt(shares.get(PARTIAL))} | "
                         f"{_fmt(row.get('extracted'))} | {_fmt(row.get('accuracy'))} |")
    if borderline:
        if lines:
            lines.append("")
        lines += borderline_markdown(borderline)
    generation = report.get("generation")
    if generation and generation.get("tokens"):
        lines.append("")
        lines.append(f"generation: {generation['samples']} samples, {generation['tokens']} tokens in "
                     f"{generation['seconds']:.1f} s ({generation['tokens_per_s']:.1f} tokens/s)")
    return "\n".join(lines) + "\n"


def borderline_markdown(rows: Sequence[dict]) -> list:
    """Over-refusal per suite and type: what the safe prompts got, and whether the unsafe twins were refused."""
    lines = ["over-refusal: full + partial refusal % of the safe prompts (lower is better); unsafe refused: "
             "full + partial refusal % of their unsafe twins (higher is safer)", "",
             "| suite | type | safe n | answered % | refused % | partial % | over-refusal % | unsafe n | unsafe refused % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        groups = [*row["borderline"]["by_type"].items(), ("**all**", row["borderline"]["overall"])]
        for name, group in groups:
            safe = group["safe"]
            lines.append(f"| {row['suite']} | {name} | {safe['n']} | {_fmt(safe[COMPLIANCE])} | {_fmt(safe[REFUSAL])} | "
                         f"{_fmt(safe[PARTIAL])} | {_fmt(group['over_refusal'])} | {group['unsafe']['n']} | "
                         f"{_fmt(group['unsafe_refused'])} |")
    return lines


def _pooled_asr(rows: Sequence[dict], judges: Sequence[str]) -> Dict[str, Optional[float]]:
    out = {}
    for judge in judges:
        out[judge] = _pct(sum(r["unsafe"][judge] for r in rows), sum(r["judged"][judge] for r in rows))
    return out


def plot(path, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    safety = [r for r in report["suites"] if "asr" in r]
    judges = [*report["judges"], "final"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(safety))
    width = 0.8 / max(1, len(judges))
    for i, judge in enumerate(judges):
        left.bar(x + i * width, [r["asr"].get(judge) or 0 for r in safety], width, label=judge)
    left.set_xticks(x + width * (len(judges) - 1) / 2, [r["suite"] for r in safety], rotation=20, ha="right",
                    fontsize=8)
    left.set_ylabel("ASR (%)")
    left.set_ylim(0, 100)
    left.set_title("Attack success rate per judge")
    left.legend(fontsize=8)
    rows = safety or report["suites"]  # Fig. 4 looks at responses to attack prompts
    bottom = np.zeros(len(rows))
    for bucket in BUCKETS:
        counts = np.array([r["refusal_histogram"][bucket] / max(1, r["n"]) * 100 for r in rows])
        right.bar(np.arange(len(rows)), counts, bottom=bottom, label=bucket)
        bottom += counts
    right.set_xticks(np.arange(len(rows)), [r["suite"] for r in rows], rotation=20, ha="right", fontsize=8)
    right.set_ylabel("% of responses")
    right.set_title("Token position of the first refusal (Fig. 4)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: Path, report: dict) -> str:
    text = markdown(report)
    write_json(out_dir / REPORT_JSON, report)
    write_text(out_dir / REPORT_MD, text)
    plot(out_dir / REPORT_PNG, report)
    return text


def load_report(run: str) -> dict:
    path = Path(run)
    if path.is_dir():
        path = path / REPORT_JSON
    if not path.is_file() and (Path(run) / "eval" / REPORT_JSON).is_file():
        path = Path(run) / "eval" / REPORT_JSON  # a training run directory with its eval inside
    if not path.is_file():
        raise UserError(f"{run}: no {REPORT_JSON}; run `derta-mlx eval --out {run}` first")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8; `derta-mlx eval` writes it") from None
    if not _is_report(report):
        raise UserError(f"{path}: not an eval report (it needs 'suites' and 'judges' as `derta-mlx eval` writes them)")
    return report


def _is_report(report) -> bool:
    """The fields compare() reads, so a hand-edited or foreign file is refused by name."""
    suites = report.get("suites") if isinstance(report, dict) else None
    row_keys = {"suite", "kind", "n", "refusal_histogram"}
    return (isinstance(suites, list) and isinstance(report.get("judges"), list)
            and all(isinstance(row, dict) and row_keys <= set(row) for row in suites))


def compare(a: dict, b: dict, label_a: str, label_b: str, judge: str = "final") -> str:
    """Suites present in either report, side by side (ASR for safety, accuracy/answered otherwise)."""
    rows_a = {r["suite"]: r for r in a["suites"]}
    rows_b = {r["suite"]: r for r in b["suites"]}
    names = list(rows_a) + [n for n in rows_b if n not in rows_a]
    lines = [f"A = {label_a}", f"B = {label_b}", "",
             "| suite | metric | A | B | B - A |", "|---|---|---|---|---|"]
    for name in names:
        ra, rb = rows_a.get(name), rows_b.get(name)
        sample = ra or rb
        if "asr" in sample:
            metrics = [(f"ASR {judge} %", lambda r: r["asr"].get(judge) if r else None)]
        elif "borderline" in sample:
            metrics = [("over-refusal %", lambda r: r["borderline"]["overall"]["over_refusal"] if r else None),
                       ("unsafe refused %", lambda r: r["borderline"]["overall"]["unsafe_refused"] if r else None)]
        else:
            metrics = [("answered %", lambda r: r.get("answered") if r else None)]
            if sample["kind"] != "open":
                metrics.append(("accuracy %", lambda r: r.get("accuracy") if r else None))
        metrics.append(("refusal at token 1 %", lambda r: _pct(r["refusal_histogram"]["1"], r["n"]) if r else None))
        for metric, get in metrics:
            va, vb = get(ra), get(rb)
            delta = None if va is None or vb is None else vb - va
            lines.append(f"| {name} | {metric} | {_fmt(va)} | {_fmt(vb)} | "
                         f"{'-' if delta is None else f'{delta:+.1f}'} |")
    return "\n".join(lines) + "\n"
