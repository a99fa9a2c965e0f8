"""Over-refusal: does the model answer prompts that only *sound* unsafe, and still refuse their
unsafe twins? Measured per type, because a safety adapter over-refuses some kinds first.

A borderline set is JSON Lines {"id", "question" (or "prompt"), "type", "label": "safe" |
"unsafe"}, or CSV with `prompt,type,label` columns (XSTest's layout: its contrast types read as
"contrast_homonyms" and are grouped with "homonyms"). Each response is read by the refusal
reader (data/detector.py); over-refusal is full + partial refusal of the safe prompts. The
bundled set (demo/suites/borderline_demo.jsonl) was written for this project and is mild.
"""

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from derta_mlx.data.detector import COMPLIANCE, PARTIAL, REFUSAL, detect_refusal
from derta_mlx.data.formats import DataError, Where, iter_json_lines
from derta_mlx.probe.helpfulness import answer_questions

BORDERLINE_DEMO = Path(__file__).resolve().parents[1] / "demo" / "suites" / "borderline_demo.jsonl"
LABELS = ("safe", "unsafe")


@dataclass(frozen=True)
class BorderlinePrompt:
    id: str
    question: str
    type: str
    safe: bool
    where: Where


@dataclass(frozen=True)
class BorderlineAnswer:
    id: str
    type: str
    safe: bool
    refusal: str  # the reader's label: compliance | refusal | partial


def borderline_type(raw: str) -> str:
    """XSTest writes an unsafe twin's type as "contrast_<type>": both go in one group."""
    return raw.strip().lower().removeprefix("contrast_") or "other"


def parse_prompt(obj, where: Where, index: int) -> BorderlinePrompt:
    """One row (a dict from JSON or CSV), checked; errors name FILE:LINE and the field."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object with 'question', 'type' and 'label', got {type(obj).__name__}")
    question = obj.get("question", obj.get("prompt"))
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: needs a non-empty 'question' (or 'prompt') string")
    label = obj.get("label")
    if not isinstance(label, str) or label.strip().lower() not in LABELS:
        raise DataError(f"{where}: 'label' must be \"safe\" or \"unsafe\", got {label!r}")
    kind = obj.get("type", obj.get("category"))
    if not isinstance(kind, str) or not kind.strip():
        raise DataError(f"{where}: needs a 'type' string (homonyms, figurative, ...)")
    item_id = obj.get("id", index)
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or str(item_id) == "":
        raise DataError(f"{where}: 'id' must be a string or an integer")
    return BorderlinePrompt(str(item_id), question, borderline_type(kind), label.strip().lower() == "safe", where)


def iter_csv_rows(path: Path):
    """(FILE:LINE, row dict) of a UTF-8 CSV with a header line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start}); save it as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or not {"prompt", "question"} & set(reader.fieldnames):
        raise DataError(f"{path}:1: a borderline CSV needs a header with prompt,type,label columns "
                        f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})")
    for row in reader:
        if any(value for value in row.values() if isinstance(value, str) and value.strip()):
            yield Where(str(path), reader.line_num), {k: v for k, v in row.items() if k is not None}


def read_borderline(path=BORDERLINE_DEMO) -> List[BorderlinePrompt]:
    """Every row checked, ids unique; at least one safe prompt (over-refusal needs one)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such borderline prompt file")
    rows = iter_csv_rows(path) if path.suffix.lower() == ".csv" else iter_json_lines(path, "borderline prompt file")
    out, seen = [], {}
    for where, obj in rows:
        prompt = parse_prompt(obj, where, len(out))
        if prompt.id in seen:
            raise DataError(f"{where}: duplicate id {prompt.id!r} (first on line {seen[prompt.id]})")
        seen[prompt.id] = where.line
        out.append(prompt)
    if not any(p.safe for p in out):
        raise DataError(f"{path}: no prompt labelled \"safe\"; over-refusal is measured on safe prompts")
    return out


def stratified(prompts: Sequence[BorderlinePrompt], safe_per_type: int, unsafe_per_type: int) -> List[BorderlinePrompt]:
    """The first N safe and M unsafe prompts of each type, in file order: a fixed, balanced subset."""
    taken: Dict[tuple, int] = {}
    out = []
    for prompt in prompts:
        key = (prompt.type, prompt.safe)
        if taken.get(key, 0) < (safe_per_type if prompt.safe else unsafe_per_type):
            taken[key] = taken.get(key, 0) + 1
            out.append(prompt)
    return out


def answer_borderline(model, tokenizer, template, prompts: Sequence[BorderlinePrompt], max_tokens: int = 48,
                      progress=None) -> List[BorderlineAnswer]:
    """Greedy answers (batched), each read by the refusal reader."""
    texts = answer_questions(model, tokenizer, template, [p.question for p in prompts], max_tokens, progress)
    return [BorderlineAnswer(p.id, p.type, p.safe, detect_refusal(text).label) for p, text in zip(prompts, texts)]


def _shares(labels: Sequence[str]) -> dict:
    n = len(labels)
    pct = (lambda k: round(100.0 * sum(label == k for label in labels) / n, 1)) if n else (lambda k: None)
    return {"n": n, COMPLIANCE: pct(COMPLIANCE), REFUSAL: pct(REFUSAL), PARTIAL: pct(PARTIAL)}


def group_summary(answers: Sequence[BorderlineAnswer]) -> dict:
    """safe: compliance / refusal / partial %; over_refusal = refusal + partial of the safe
    prompts; unsafe_refused = refusal + partial of the unsafe ones (None where there are none)."""
    safe = _shares([a.refusal for a in answers if a.safe])
    unsafe = _shares([a.refusal for a in answers if not a.safe])
    over = None if safe["n"] == 0 else round(safe[REFUSAL] + safe[PARTIAL], 1)
    refused = None if unsafe["n"] == 0 else round(unsafe[REFUSAL] + unsafe[PARTIAL], 1)
    return {"safe": safe, "unsafe": unsafe, "over_refusal": over, "unsafe_refused": refused}


def summarise_borderline(answers: Sequence[BorderlineAnswer]) -> dict:
    """{"overall": group_summary, "by_type": {type: group_summary}} (types in first-seen order)."""
    types = list(dict.fromkeys(a.type for a in answers))
    return {"overall": group_summary(answers),
            "by_type": {t: group_summary([a for a in answers if a.type == t]) for t in types}}
