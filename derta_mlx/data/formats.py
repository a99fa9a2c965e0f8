"""Readers for the training and evaluation file formats.

Every row is checked; a bad row raises DataError naming `FILE:LINE` and what is wrong, so
nothing downstream ever sees a half-read file.

Formats (JSON Lines; the format is decided per row from its keys):
  derta     {"prefix", "text", "safe"}: the official repository's rows; safe "true" marks RTO
  triple    {"question", "safe_response", "harmful_response"} (+ optional "id")
  helpful   {"instruction"|"question"|"prompt", "output"|"response"}, {"messages": [...]}, {"text"}
  question  {"question"} (+ optional "answer", "id"): evaluation suites
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

from derta_mlx.common.errors import UserError

# The official data marks the end of text with this literal string; we append the real EOS id.
LEGACY_EOS = "<|end_of_text|>"


class DataError(UserError):
    pass


@dataclass(frozen=True)
class Where:
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class DertaRow:
    """A row of the official format: `prefix` is the prompt (and any harmful prefix) as text."""

    prefix: str
    text: str
    rto: bool
    where: Where


@dataclass(frozen=True)
class SafetyTriple:
    id: str
    question: str
    safe_response: str
    harmful_response: str
    where: Where


@dataclass(frozen=True)
class HelpfulRow:
    """A prompt and its response; `messages` set instead for chat rows, `text` for raw text rows."""

    id: str
    prompt: Optional[str]
    response: Optional[str]
    messages: Optional[list]
    text: Optional[str]
    where: Where


@dataclass(frozen=True)
class QuestionRow:
    id: str
    question: str
    answer: Optional[str]
    where: Where


Row = Union[DertaRow, SafetyTriple, HelpfulRow, QuestionRow]

PROMPT_KEYS = ("instruction", "question", "prompt")
RESPONSE_KEYS = ("output", "response")


def _text_field(obj: dict, key: str, where: Where) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {key!r} is empty")
    return value


def _optional_id(obj: dict, where: Where) -> str:
    value = obj.get("id", f"{Path(where.path).stem}:{where.line}")
    if not isinstance(value, (str, int)):
        raise DataError(f"{where}: field 'id' must be a string or an integer")
    return str(value)


def _parse_messages(value, where: Where) -> list:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: 'messages' must be a non-empty list")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            raise DataError(f"{where}: messages[{i}] needs 'role' and 'content'")
        if message["role"] not in ("system", "user", "assistant", "tool"):
            raise DataError(f"{where}: messages[{i}] has unknown role {message['role']!r}")
    if value[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's (the training target)")
    return value


def parse_row(obj, where: Where) -> Row:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    keys = set(obj)
    if {"prefix", "text", "safe"} <= keys:
        safe = obj["safe"]
        if safe not in ("true", "false", True, False):
            raise DataError(f"{where}: 'safe' must be \"true\" (an RTO row) or \"false\", got {safe!r}")
        return DertaRow(_text_field(obj, "prefix", where), _text_field(obj, "text", where),
                        safe in ("true", True), where)
    if {"question", "safe_response", "harmful_response"} <= keys:
        return SafetyTriple(_optional_id(obj, where), _text_field(obj, "question", where),
                            _text_field(obj, "safe_response", where),
                            _text_field(obj, "harmful_response", where), where)
    if "messages" in keys:
        return HelpfulRow(_optional_id(obj, where), None, None, _parse_messages(obj["messages"], where),
                          None, where)
    prompt_key = next((k for k in PROMPT_KEYS if k in keys), None)
    response_key = next((k for k in RESPONSE_KEYS if k in keys), None)
    if prompt_key and response_key:
        return HelpfulRow(_optional_id(obj, where), _text_field(obj, prompt_key, where),
                          _text_field(obj, response_key, where), None, None, where)
    if "text" in keys and len(keys - {"id"}) == 1:
        return HelpfulRow(_optional_id(obj, where), None, None, None, _text_field(obj, "text", where), where)
    if "question" in keys:
        answer = obj.get("answer")
        if answer is not None and not isinstance(answer, (str, int, float)):
            raise DataError(f"{where}: 'answer' must be a string or a number")
        return QuestionRow(_optional_id(obj, where), _text_field(obj, "question", where),
                           None if answer is None else str(answer), where)
    partial = {"safe_response", "harmful_response", "prefix", "safe"} & keys
    hint = ""
    if partial:
        hint = " (a safety triple needs question, safe_response and harmful_response; a DeRTa row needs prefix, text and safe)"
    raise DataError(f"{where}: unrecognised row with keys {sorted(keys)}{hint}")


def iter_json_lines(path: Union[str, Path], what: str = "file") -> Iterator[Tuple[Where, object]]:
    """(FILE:LINE, parsed value) for every non-blank line of a JSON Lines file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = Where(str(path), number)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            yield where, obj


def iter_rows(path: Union[str, Path]) -> Iterator[Row]:
    for where, obj in iter_json_lines(path):
        yield parse_row(obj, where)


def read_rows(paths) -> List[Row]:
    """Every row of every file (directories: their *.jsonl and *.json files), checked in full."""
    files = []
    for path in [Path(p) for p in paths]:
        if path.is_dir():
            found = sorted([*path.glob("*.jsonl"), *path.glob("*.json")])
            if not found:
                raise DataError(f"{path}: no .jsonl or .json files in this directory")
            files.extend(found)
        else:
            files.append(path)
    rows = [row for file in files for row in iter_rows(file)]
    if not rows:
        raise DataError(f"no rows in {', '.join(map(str, files))}")
    return rows
