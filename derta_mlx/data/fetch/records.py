"""Records of a downloaded data file, each with its FILE:LINE, whatever the file's packaging.

JSON Lines, one JSON array (line numbers found while decoding element by element), either
compressed with gzip or xz (the standard library reads both), and Parquet through pyarrow when
it is installed (`pip install 'derta-mlx[parquet]'`; Parquet has rows, not lines: ROW n).
"""

import gzip
import json
import lzma
from pathlib import Path
from typing import Iterator, Tuple

from derta_mlx.data.formats import DataError, Where, parse_json_line

_WHITESPACE = " \t\r\n"


def _open_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        if path.name.endswith(".xz"):
            with lzma.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot read it: {exc}") from None


class _Lines:
    """Line numbers of positions in a text read forwards, counted once."""

    def __init__(self, text: str):
        self.text, self.position, self.line = text, 0, 1

    def at(self, position: int) -> int:
        self.line += self.text.count("\n", self.position, position)
        self.position = position
        return self.line


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in _WHITESPACE:
        position += 1
    return position


def _json_array(text: str, path: Path) -> Iterator[Tuple[Where, object]]:
    decoder, lines = json.JSONDecoder(), _Lines(text)
    position = _skip_space(text, text.index("[") + 1)
    while True:
        if position >= len(text):
            raise DataError(f"{Where(str(path), lines.at(position))}: the JSON array is not closed "
                            "(a truncated download?)")
        if text[position] == "]":
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise DataError(f"{Where(str(path), exc.lineno)}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        yield Where(str(path), lines.at(position)), value
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position = _skip_space(text, position + 1)
        elif position < len(text) and text[position] != "]":
            raise DataError(f"{Where(str(path), lines.at(position))}: invalid JSON: expected ',' or ']' "
                            "between array elements")


def _parquet(path: Path) -> Iterator[Tuple[Where, object]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: a Parquet file; reading it needs pyarrow: pip install 'derta-mlx[parquet]'") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own error types for damaged files
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    for number, record in enumerate(table.to_pylist(), start=1):
        yield Where(str(path), number), record


def iter_records(path) -> Iterator[Tuple[Where, object]]:
    """(FILE:LINE, JSON value) for each record of a data file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.name.endswith(".parquet"):
        yield from _parquet(path)
        return
    data = _open_bytes(path).removeprefix(b"\xef\xbb\xbf")
    head = data.lstrip()[:1]
    if head == b"[":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not valid UTF-8; save the file as UTF-8") from None
        yield from _json_array(text, path)
        return
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            where = Where(str(path), number)
            yield where, parse_json_line(raw, where)
