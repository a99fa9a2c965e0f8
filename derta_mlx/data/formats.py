"""Readers for the training and evaluation file formats.

Every row is checked; a bad row raises DataError naming `FILE:LINE` and what is wrong, so
nothing downstream ever sees a half-read file.

Formats (JSON Lines; the format is decided per row from its keys):
  derta     {"prefix", "text", "safe"}: the official repository's rows; safe "true" marks RTO
  triple    {"question", "safe_response", "harmful_response"} (+ optional "id")
  helpful   {"instruction"|"question"|"prompt", "output"|"response"|"completion"}, {"messages": [...]},
            {"text"}: mlx-lm's chat, completions and text formats
  preference {"prompt", "chosen", "rejected"}: a safety triple when the row marks the prompt harmful
            ("harmful"/"is_harmful"/"unsafe": true, or "safe": false), else a helpful row from "chosen"
  question  {"question"} (+ optional "answer", "id"): evaluation suites
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

from derta_mlx.common.errors import UserError
from derta_mlx.common.progress import notify_stderr

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
    tools: Optional[list] = None  # mlx-lm's chat rows may carry the tools the chat template shows

    @property
    def question(self) -> Optional[str]:
        """The user's question (prompt/completion or the last user turn of a chat), else None (plain text)."""
        if self.prompt:
            return self.prompt
        users = [m.get("content") for m in self.messages or [] if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users and isinstance(users[-1], str) else None

    @property
    def borderline(self) -> bool:
        """A safe question that only sounds unsafe, answered (the over-refusal antidote): a row of a
        file whose name holds "borderline", such as the demo's borderline.jsonl."""
        return self.where is not None and "borderline" in Path(self.where.path).name.lower()


@dataclass(frozen=True)
class QuestionRow:
    id: str
    question: str
    answer: Optional[str]
    where: Where


Row = Union[DertaRow, SafetyTriple, HelpfulRow, QuestionRow]

PROMPT_KEYS = ("instruction", "question", "prompt")
RESPONSE_KEYS = ("output", "response", "completion")
HARMFUL_MARKS = ("harmful", "is_harmful", "unsafe", "is_unsafe")
# every accepted row, as the error for an unrecognised one lists them
ACCEPTED_ROWS = (
    'safety triple  {"question": "...", "safe_response": "I can\'t help with that...", "harmful_response": "..."}',
    'DeRTa official {"prefix": "<prompt text>", "text": "<target>", "safe": "true"}',
    'preference     {"prompt": "...", "chosen": "...", "rejected": "...", "harmful": true}',
    'chat           {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}',
    'completions    {"prompt": "...", "completion": "..."}  (also instruction/question with output/response)',
    'text           {"text": "..."}',
    'question       {"question": "...", "answer": "..."}  (evaluation suites)',
)


def _text_field(obj: dict, key: str, where: Where) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {key!r} is empty")
    return value


def _optional_id(obj: dict, where: Where) -> str:
    value = obj.get("id", f"{Path(where.path).stem}:{where.line}")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise DataError(f"{where}: field 'id' must be a string or an integer")
    return str(value)


def _parse_messages(value, where: Where) -> list:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: 'messages' must be a non-empty list")
    for i, message in enumerate(value):
        if isinstance(message, dict) and "tool_calls" in message and message.get("content") is None:
            message = {**message, "content": ""}  # an assistant turn that only calls tools (mlx-lm's chat data)
            value[i] = message
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            raise DataError(f"{where}: messages[{i}] needs 'role' and 'content'")
        if message["role"] not in ("system", "user", "assistant", "tool"):
            raise DataError(f"{where}: messages[{i}] has unknown role {message['role']!r}")
        if not isinstance(message["content"], str):
            raise DataError(f"{where}: messages[{i}]['content'] must be a string, "
                            f"got {type(message['content']).__name__}")
    if value[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's (the training target)")
    return value


def _brief(value) -> str:
    """A short value as written, a long one by its size only: a field may hold harmful text."""
    text = repr(value)
    return text if len(text) <= 12 else f"a {type(value).__name__} of {len(str(value))} characters"


def parse_row(obj, where: Where) -> Row:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    keys = set(obj)
    if {"prefix", "text", "safe"} <= keys:
        safe = obj["safe"]
        if safe not in ("true", "false", True, False):
            raise DataError(f"{where}: 'safe' must be \"true\" (an RTO row) or \"false\", got {_brief(safe)}")
        return DertaRow(_text_field(obj, "prefix", where), _text_field(obj, "text", where),
                        safe in ("true", True), where)
    triple_keys = {"question", "safe_response", "harmful_response"}
    if keys & (triple_keys - {"question"}) and not triple_keys <= keys:  # half a triple is no question row
        missing = ", ".join(repr(k) for k in sorted(triple_keys - keys))
        raise DataError(f"{where}: a safety triple needs question, safe_response and harmful_response; "
                        f"missing {missing}")
    if triple_keys <= keys:
        return SafetyTriple(_optional_id(obj, where), _text_field(obj, "question", where),
                            _text_field(obj, "safe_response", where),
                            _text_field(obj, "harmful_response", where), where)
    if {"prompt", "chosen", "rejected"} <= keys:
        return _preference(obj, where)
    if "messages" in keys:
        tools = obj.get("tools")
        if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
            raise DataError(f"{where}: 'tools' must be a list of objects (function schemas), as in mlx-lm's chat data")
        return HelpfulRow(_optional_id(obj, where), None, None, _parse_messages(obj["messages"], where),
                          None, where, tools)
    prompt_key = next((k for k in PROMPT_KEYS if k in keys), None)
    response_key = next((k for k in RESPONSE_KEYS if k in keys), None)
    if prompt_key and response_key:
        return HelpfulRow(_optional_id(obj, where), _text_field(obj, prompt_key, where),
                          _text_field(obj, response_key, where), None, None, where)
    if "text" in keys and len(keys - {"id"}) == 1:
        return HelpfulRow(_optional_id(obj, where), None, None, None, _text_field(obj, "text", where), where)
    if "question" in keys:
        answer = obj.get("answer")
        if answer is not None and (not isinstance(answer, (str, int, float)) or isinstance(answer, bool)):
            raise DataError(f"{where}: 'answer' must be a string or a number")
        return QuestionRow(_optional_id(obj, where), _text_field(obj, "question", where),
                           None if answer is None else str(answer), where)
    hint = " (a DeRTa row needs prefix, text and safe)" if {"prefix", "safe"} & keys else ""
    raise DataError(f"{where}: unrecognised row with keys {sorted(keys)[:8]}{hint}; accepted rows: "
                    + "; ".join(" ".join(line.split()) for line in ACCEPTED_ROWS))


def _preference(obj: dict, where: Where) -> Row:
    """A DPO-style row: for a prompt it marks harmful, `chosen` is the safe answer and `rejected` the
    harmful one, which is a safety triple; otherwise `chosen` is a helpful answer."""
    marks = [k for k in HARMFUL_MARKS if k in obj]
    for key in marks + (["safe"] if "safe" in obj else []):
        if not isinstance(obj[key], bool):
            raise DataError(f"{where}: {key!r} must be true or false, got {_brief(obj[key])}")
    harmful = any(obj[k] for k in marks) or obj.get("safe") is False
    if harmful:
        return SafetyTriple(_optional_id(obj, where), _text_field(obj, "prompt", where),
                            _text_field(obj, "chosen", where), _text_field(obj, "rejected", where), where)
    return HelpfulRow(_optional_id(obj, where), _text_field(obj, "prompt", where), _text_field(obj, "chosen", where),
                      None, None, where)


# Byte-order marks of encodings other than UTF-8: such a file is refused with the encoding named.
OTHER_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
              (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (write a number or a string)")


def _decode_line(raw: bytes, where: Where) -> str:
    if b"\x00" in raw:  # UTF-16 without a byte-order mark reads as text with NUL bytes
        raise DataError(f"{where}: NUL bytes: the file looks UTF-16 or binary; save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                        "save the file as UTF-8") from None


def check_unicode(obj, where: Where) -> None:
    """JSON may spell half a UTF-16 pair ("\\ud800"); such text breaks tokenizers and UTF-8 later."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        fields = [k for k, v in obj.items() if _has_surrogate(k) or _has_surrogate(v)] if isinstance(obj, dict) else []
        field = f"field {fields[0]!r}" if fields else "a string"
        raise DataError(f"{where}: {field} holds a lone surrogate (an unpaired \\ud800-\\udfff escape), "
                        "which is not valid Unicode") from None


def _has_surrogate(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def parse_json_line(raw: bytes, where: Where):
    """One line's JSON value; every way a line can be bad is a DataError naming FILE:LINE."""
    line = _decode_line(raw, where)
    try:
        obj = json.loads(line, parse_constant=refuse_constant)
        check_unicode(obj, where)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:
        raise DataError(f"{where}: invalid JSON: {exc}") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to be a row") from None
    return obj


def iter_json_lines(path: Union[str, Path], what: str = "file") -> Iterator[Tuple[Where, object]]:
    """(FILE:LINE, parsed value) for every non-blank line of a UTF-8 JSON Lines file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    for bom, encoding in OTHER_BOMS:
        if data.startswith(bom):
            raise DataError(f"{path}:1: the {what} is {encoding} (byte-order mark); save it as UTF-8")
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is harmless
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            where = Where(str(path), number)
            yield where, parse_json_line(raw, where)


def iter_rows(path: Union[str, Path]) -> Iterator[Row]:
    for where, obj in iter_json_lines(path):
        yield parse_row(obj, where)


def content_key(row: Row) -> tuple:
    """What makes two rows the same example: every field but the id and the place."""
    fields = {k: v for k, v in vars(row).items() if k not in ("id", "where")}
    return type(row).__name__, json.dumps(fields, sort_keys=True, ensure_ascii=False)


def drop_duplicates(rows: List[Row], notify: Callable[[str], None] = notify_stderr) -> List[Row]:
    """The first of each set of identical rows: a duplicate would leak across the train/validation split."""
    first, kept = {}, []
    for row in rows:
        key = content_key(row)
        if key in first:
            notify(f"note: {row.where}: duplicate of {first[key].where}; dropped")
            continue
        first[key] = row
        kept.append(row)
    return kept


SPLITS = ("train", "valid", "test")


def split_files(path) -> dict:
    """mlx-lm's data folder: {"train": FILE, "valid": FILE?, "test": FILE?} when `path` is a directory
    holding train.jsonl, else {}."""
    path = Path(path)
    if not (path.is_dir() and (path / "train.jsonl").is_file()):
        return {}
    return {name: path / f"{name}.jsonl" for name in SPLITS if (path / f"{name}.jsonl").is_file()}


def data_files(paths) -> List[Path]:
    """The files a list of data paths names: directories stand for their *.jsonl and *.json files,
    or, laid out as mlx-lm's (train.jsonl beside valid.jsonl and test.jsonl), for train.jsonl only."""
    files = []
    for path in [Path(p) for p in paths]:
        if split_files(path):
            files.append(split_files(path)["train"])
        elif path.is_dir():
            found = sorted([*path.glob("*.jsonl"), *path.glob("*.json")])
            if not found:
                raise DataError(f"{path}: no .jsonl or .json files in this directory")
            files.extend(found)
        else:
            files.append(path)
    return files


def read_files(paths) -> List[Row]:
    """Every row of every file (directories: their *.jsonl and *.json files), checked in full;
    each file must hold rows. Duplicates are kept: see read_rows."""
    rows = []
    for file in data_files(paths):
        found = list(iter_rows(file))
        if not found:
            raise DataError(f"{file}: no rows (the file is empty)")
        rows.extend(found)
    return rows


def read_rows(paths, notify: Callable[[str], None] = notify_stderr) -> List[Row]:
    """read_files, then a row identical to an earlier one is dropped with a note."""
    rows = read_files(paths)
    if not rows:
        raise DataError("no data files given")
    return drop_duplicates(rows, notify)
