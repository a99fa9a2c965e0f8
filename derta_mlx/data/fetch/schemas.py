"""How each public dataset's records become our rows (derta_mlx.data.formats).

A schema reads (FILE:LINE, record) pairs and yields an Outcome per record: the row it makes, or
why it makes none. A malformed record (a field missing or of the wrong type) is `bad` and is
reported as FILE:LINE; a well-formed record that a rule leaves out (both answers safe) is only
counted. Every row made is checked with our own reader, so what fetch writes, train reads.

  saferlhf        PKU-SafeRLHF: prompt, response_0/1, is_response_0/1_safe -> a triple when exactly
                  one answer is safe
  beavertails     BeaverTails: prompt, response, is_safe, one answer per record -> per question, its
                  first unsafe answer and its first safe answer that refuses (else its first safe
                  answer) make a triple; the question's other answers are counted, not used
  alpaca          instruction (+ input), output -> a helpfulness row (Alpaca, WizardLM 70K)
  derta-official  the official DeRTa files, by their keys: instruction + output (harmful) +
                  safe_response -> a triple; instruction + output -> helpfulness; prefix + text +
                  safe -> a DeRTa row as it is
"""

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

from derta_mlx.data.fetch.records import Unreadable
from derta_mlx.data.fetch.refusing import refusal_place
from derta_mlx.data.formats import DataError, Row, Where, parse_row

Records = Iterable[Tuple[Where, object]]


@dataclass(frozen=True)
class Outcome:
    where: Where
    row: Optional[dict]
    reason: str = ""  # why no row: a malformed record's problem (bad) or a rule's name
    bad: bool = False
    parsed: Optional[Row] = None  # the row as our reader reads it (what duplicates are judged by)


class BadRecord(Exception):
    pass


def _field(record, key: str, kind):
    if isinstance(record, Unreadable):
        raise BadRecord(record.reason)
    if not isinstance(record, dict):
        raise BadRecord(f"expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise BadRecord(f"missing field {key!r}")
    value = record[key]
    if kind is str and value is None:
        value = ""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRecord(f"field {key!r} must be {'true or false' if kind is bool else kind.__name__}, "
                        f"got {type(value).__name__}")
    return value


def _checked(where: Where, row: dict) -> Outcome:
    """The row if our reader accepts it (empty text, say, it would refuse), else a bad outcome."""
    try:
        parsed = parse_row(row, where)
    except DataError as exc:
        return Outcome(where, None, str(exc).removeprefix(f"{where}: "), bad=True)
    return Outcome(where, row, parsed=parsed)


def _row_id(where: Where, tag: str) -> str:
    return f"{tag}:{where.line}"


def _triple(where: Where, tag: str, question: str, safe: str, harmful: str) -> Outcome:
    return _checked(where, {"id": _row_id(where, tag), "question": question.strip(),
                            "safe_response": safe.strip(), "harmful_response": harmful.strip()})


def _guard(convert: Callable[[Where, object], Outcome]) -> Callable[[Records, str], Iterator[Outcome]]:
    def schema(records: Records, tag: str) -> Iterator[Outcome]:
        for where, record in records:
            try:
                yield convert(where, record, tag)
            except BadRecord as exc:
                yield Outcome(where, None, str(exc), bad=True)
    return schema


@_guard
def saferlhf(where: Where, record, tag: str) -> Outcome:
    prompt = _field(record, "prompt", str)
    answers = [_field(record, f"response_{i}", str) for i in (0, 1)]
    safe = [_field(record, f"is_response_{i}_safe", bool) for i in (0, 1)]
    if safe[0] == safe[1]:
        return Outcome(where, None, "both answers safe" if safe[0] else "both answers unsafe")
    i = safe.index(True)
    return _triple(where, tag, prompt, answers[i], answers[1 - i])


def beavertails(records: Records, tag: str) -> Iterator[Outcome]:
    """Pairs need every answer to a question, so the file is read whole before any triple is made.
    Every record gets an outcome: two make a triple, the others are counted with their reason."""
    questions: Dict[str, list] = {}
    for where, record in records:
        try:
            prompt, answer = _field(record, "prompt", str), _field(record, "response", str)
            is_safe = _field(record, "is_safe", bool)
        except BadRecord as exc:
            yield Outcome(where, None, str(exc), bad=True)
            continue
        questions.setdefault(prompt.strip(), []).append((where, answer, is_safe))
    for prompt, answers in questions.items():
        safe = [a for a in answers if a[2]]
        unsafe = [a for a in answers if not a[2]]
        if not safe or not unsafe:
            reason = "answers to a question with no safe answer" if not safe else \
                "answers to a question with no unsafe answer"
            yield from (Outcome(where, None, reason) for where, _, _ in answers)
            continue
        chosen = (next((a for a in safe if refusal_place(a[1]) == "refuses"), safe[0]), unsafe[0])
        yield from (Outcome(a[0], None, "other answers to an already paired question")
                    for a in answers if a not in chosen)
        yield _triple(answers[0][0], tag, prompt, chosen[0][1], chosen[1][1])


def _instruction_row(where: Where, record, tag: str) -> Outcome:
    instruction, output = _field(record, "instruction", str), _field(record, "output", str)
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise BadRecord(f"field 'input' must be str, got {type(extra).__name__}")
    prompt = instruction.strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")
    return _checked(where, {"id": _row_id(where, tag), "instruction": prompt, "output": output.strip()})


alpaca = _guard(_instruction_row)


@_guard
def derta_official(where: Where, record, tag: str) -> Outcome:
    keys = set(record) if isinstance(record, dict) else set()
    if {"prefix", "text", "safe"} <= keys:
        return _checked(where, {k: record[k] for k in ("prefix", "text", "safe")})
    if "safe_response" in keys:
        question = _field(record, "instruction", str)
        return _triple(where, tag, question, _field(record, "safe_response", str), _field(record, "output", str))
    return _instruction_row(where, record, tag)


SCHEMAS: Dict[str, Callable[[Records, str], Iterator[Outcome]]] = {
    "saferlhf": saferlhf,
    "beavertails": beavertails,
    "alpaca": alpaca,
    "derta-official": derta_official,
}
