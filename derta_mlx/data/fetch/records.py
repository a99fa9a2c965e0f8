"""Records of a downloaded data file, each with its FILE:LINE, whatever the file's packaging.

JSON Lines, one JSON array (line numbers found while decoding element by element), either
compressed with gzip or xz (the standard library reads both), and Parquet through pyarrow when
it is installed (`pip install 'derta-mlx[parquet]'`; Parquet has rows, not lines, so its rows are
numbered from 1 in the place of line numbers).

In JSON Lines every line stands alone, so a line that is not JSON becomes an `Unreadable` record
(reported and counted like any bad record); in a JSON array nothing after a broken element can
be trusted, so that is an error for the whole file.
"""

import gzip
import json
import lzma
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Tuple

from derta_mlx.data.formats import (
    DataError,
    Where,
    check_unicode,
    parse_json_line,
    refuse_constant,
)

_WHITESPACE = " \t\r\n"
_BOM = b"\xef\xbb\xbf"
_LFS_POINTER = b"version https://git-lfs"


@dataclass(frozen=True)
class Unreadable:
    """A JSON Lines line that is not a JSON value: why, without its text."""

    reason: str


def _open(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".xz"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def _head(path: Path) -> bytes:
    """The file's first bytes that are not a byte-order mark or whitespace."""
    with _open(path) as handle:
        return handle.read(4096).removeprefix(_BOM).lstrip()


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


def _element(decoder, text: str, position: int, where: Where):
    try:
        value, end = decoder.raw_decode(text, position)
    except json.JSONDecodeError as exc:
        raise DataError(f"{Where(where.path, exc.lineno)}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:  # NaN, Infinity
        raise DataError(f"{where}: invalid JSON: {exc}") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to be a record") from None
    check_unicode(value, where)
    return value, end


def _json_array(text: str, path: Path) -> Iterator[Tuple[Where, object]]:
    decoder, lines = json.JSONDecoder(parse_constant=refuse_constant), _Lines(text)
    position = _skip_space(text, text.index("[") + 1)
    if position < len(text) and text[position] == "]":
        position += 1
    else:
        while True:
            if position >= len(text):
                raise DataError(f"{Where(str(path), lines.at(position))}: the JSON array is not closed "
                                "(a truncated download?)")
            where = Where(str(path), lines.at(position))
            value, end = _element(decoder, text, position, where)
            yield where, value
            position = _skip_space(text, end)
            if position < len(text) and text[position] == "]":
                position += 1
                break
            if position < len(text) and text[position] != ",":
                raise DataError(f"{Where(str(path), lines.at(position))}: invalid JSON: expected ',' or ']' "
                                "between array elements")
            position = _skip_space(text, position + 1)
            if position < len(text) and text[position] == "]":
                raise DataError(f"{Where(str(path), lines.at(position))}: invalid JSON: a comma before ']'")
    if _skip_space(text, position) < len(text):
        raise DataError(f"{Where(str(path), lines.at(_skip_space(text, position)))}: invalid JSON: "
                        "more after the array's closing ']'")


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
    head = _head(path)
    if head.startswith(_LFS_POINTER):
        raise DataError(f"{path}: a Git LFS pointer, not the data: run `git lfs pull` in the clone")
    if head[:1] == b"[":  # one JSON array: read whole, decoded element by element
        with _open(path) as handle:
            data = handle.read().removeprefix(_BOM)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not valid UTF-8; save the file as UTF-8") from None
        yield from _json_array(text, path)
        return
    with _open(path) as handle:  # JSON Lines: streamed, so a 330K-row file never sits in memory whole
        for number, raw in enumerate(handle, start=1):
            raw = raw.removeprefix(_BOM) if number == 1 else raw
            if raw.strip():
                where = Where(str(path), number)
                try:
                    record = parse_json_line(raw.rstrip(b"\r\n"), where)
                except DataError as exc:
                    record = Unreadable(str(exc).removeprefix(f"{where}: "))
                yield where, record


def iter_records(path) -> Iterator[Tuple[Where, object]]:
    """(FILE:LINE, JSON value or Unreadable) for each record of a data file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.name.endswith(".parquet"):
        yield from _parquet(path)
        return
    try:
        yield from _records(path)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:  # a damaged gzip or xz stream
        raise DataError(f"{path}: cannot read it: {exc}") from None
