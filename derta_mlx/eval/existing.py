"""Generations other tools wrote, in the official results' formats, as records to judge.

  jsonl objects   {"question"|"instruction", "response"} (+ "answer" for GSM8K/MMLU); our own
                  records.jsonl reads the same way and keeps its ids
  jsonl strings   one JSON string per line holding prompt + continuation, as the official
                  CompletionAttack outputs (the harness decoded the whole sequence); with a
                  prompts suite the prompt is stripped by prefix match

The official files are shuffled against the test files, so with a prompts suite rows are
joined to it by question text; a question seen again gets the id "ID#2".

The attack format (the suite kind the rows are judged as) is `--kind` when given, else the
prompts suite's kind, else detected per file (attacks/detect.py: name, folders, content).
"""

from pathlib import Path
from typing import List, Optional, Tuple

from derta_mlx.data.formats import DataError, iter_json_lines
from derta_mlx.eval.attacks.detect import detect_kind
from derta_mlx.eval.suites import Suite, attack_from_name, check_kind, kind_from_name


def _match_prefix(text: str, suite: Suite):
    """The longest suite question that `text` starts with (exactly, else ignoring outer whitespace)."""
    best = None
    for item in suite.items:
        for question, start in ((item.question, text), (item.question.strip(), text.lstrip())):
            if question and start.startswith(question) and (best is None or len(question) > len(best[1])):
                best = (item, question, len(text) - len(start) + len(question))
    return best


def _check_fields(obj: dict, where) -> None:
    """The optional fields of an object row, typed as our own records write them."""
    item_id, answer = obj.get("id"), obj.get("answer")
    if item_id is not None and (not isinstance(item_id, (str, int)) or isinstance(item_id, bool)):
        raise DataError(f"{where}: 'id' must be a string or an integer")
    if answer is not None and (not isinstance(answer, (str, int, float)) or isinstance(answer, bool)):
        raise DataError(f"{where}: 'answer' must be a string or a number")
    for key in ("suite", "prompt"):
        if key in obj and not isinstance(obj[key], str):
            raise DataError(f"{where}: {key!r} must be a string")
    if "kind" in obj:
        check_kind(obj["kind"], where)


def read_generations(path, prompts: Optional[Suite] = None, kind: str = "auto") -> Tuple[List[dict], dict]:
    """(records without verdicts, facts such as how many prompts were matched and the kind read)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    name = prompts.name if prompts else path.stem
    given = kind != "auto"
    kind, kind_from = ((kind, "--kind") if given else (prompts.kind, f"the kind of {prompts.name}") if prompts
                       else (kind_from_name(path), "file name"))
    by_question = {item.question.strip(): item for item in prompts.items} if prompts else {}
    records, seen = [], {}
    facts = {"strings": 0, "objects": 0, "prompt_matched": 0, "prompt_unmatched": 0}
    for where, obj in iter_json_lines(path):
        item_id, answer = None, None
        if isinstance(obj, str):
            facts["strings"] += 1
            question, response, prompt = "", obj, ""
            match = _match_prefix(obj, prompts) if prompts else None
            if match:
                item, prompt, cut = match
                question, response, item_id, answer = item.question, obj[cut:], item.id, item.answer
                facts["prompt_matched"] += 1
            elif prompts:
                facts["prompt_unmatched"] += 1
        elif isinstance(obj, dict):
            facts["objects"] += 1
            key = "question" if "question" in obj else "instruction" if "instruction" in obj else None
            if key is None or "response" not in obj:
                raise DataError(f"{where}: expected {{\"question\"|\"instruction\", \"response\"}} or a JSON string, "
                                f"got keys {sorted(obj)}")
            question, response = obj[key], obj["response"]
            if not isinstance(question, str) or not isinstance(response, str):
                raise DataError(f"{where}: {key!r} and 'response' must be strings")
            _check_fields(obj, where)
            prompt = obj.get("prompt", question)
            answer = obj.get("answer")
            item_id = obj.get("id")
            item = by_question.get(question.strip())
            if item is not None:
                item_id, answer = item.id, item.answer if item.answer is not None else answer
                facts["prompt_matched"] += 1
            elif prompts:
                facts["prompt_unmatched"] += 1
        else:
            raise DataError(f"{where}: expected a JSON object or a JSON string, got {type(obj).__name__}")
        item_id = str(item_id) if item_id is not None else f"line{where.line}"
        seen[item_id] = seen.get(item_id, 0) + 1
        if seen[item_id] > 1:
            item_id = f"{item_id}#{seen[item_id]}"
        # other fields of an object row (our own records: attack, template, tokens) are kept
        extra = obj if isinstance(obj, dict) else {}
        records.append({"attack": None, "template": None, **extra, "id": item_id,
                        "suite": extra.get("suite", name), "kind": extra.get("kind"),
                        "question": question, "answer": None if answer is None else str(answer),
                        "prompt": prompt, "response": response, "line": where.line})
    if not records:
        raise DataError(f"{path}: no rows")
    if not given and not prompts and kind == "safety":
        detected, kind_from = detect_kind(path, records, facts["strings"])
        kind = detected or kind
    for record in records:
        own = record["kind"]
        if given or not own:
            record["kind"] = kind
        elif own == "safety":  # records written before attack kinds: the suite's name may say which
            record["kind"] = attack_from_name(str(record["suite"])) or own
    facts.update({"kind": kind, "kind_from": kind_from})
    return records, facts
