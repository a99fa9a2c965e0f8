"""Records of a downloaded data file, each with its FILE:LINE, whatever the file's packaging.

JSON Lines, one JSON array (line numbers found while decoding element by element), either
compressed with gzip or xz (the standard library reads both), and Parquet through pyarrow when
it is installed (`pip install 'derta-mlx[parquet]'`; Parquet has rows, not lines: ROW n).
"""

import gzip
import json
import lzma
from pathlib import Path
from typing import BinaryIO, Iterator, Tuple

from derta_mlx.data.formats import DataError, Where, parse_json_line

_WHITESPACE = " \t\r\n"


def _open(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".xz"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def _first_byte(path: Path) -> bytes:
    with _open(path) as handle:
        while chunk := handle.read(4096):
            if chunk.strip():
                return chunk.lstrip().removeprefix(b"\xef\xbb\xbf")[:1]
    return b""


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


def _records(path: Path) -> Iterator[Tuple[Where, object]]:
    if _first_byte(path) == b"[":  # one JSON array: read whole, decoded element by element
        with _open(path) as handle:
            data = handle.read().removeprefix(b"\xef\xbb\xbf")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not valid UTF-8; save the file as UTF-8") from None
        yield from _json_array(text, path)
        return
    with _open(path) as handle:  # JSON Lines: streamed, so a 330K-row file never sits in memory whole
        for number, raw in enumerate(handle, start=1):
            raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
            if raw.strip():
                where = Where(str(path), number)
                yield where, parse_json_line(raw.rstrip(b"\r\n"), where)


def iter_records(path) -> Iterator[Tuple[Where, object]]:
    """(FILE:LINE, JSON value) for each record of a data file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.name.endswith(".parquet"):
        yield from _parquet(path)
        return
    try:
        yield from _records(path)
    except (OSError, EOFError, lzma.LZMAError) as exc:  # a damaged gzip or xz stream, or an unreadable file
        raise DataError(f"{path}: cannot read it: {exc}") from None
