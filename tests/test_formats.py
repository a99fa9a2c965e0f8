import json

import pytest

from derta_mlx.data.formats import (
    DataError,
    DertaRow,
    HelpfulRow,
    QuestionRow,
    SafetyTriple,
    read_rows,
)

REFERENCE = "../shared/data/derta-reference/example_data_to_read.json"


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_reads_the_official_example_rows():
    import pathlib

    path = pathlib.Path(__file__).parents[1] / REFERENCE
    if not path.exists():
        pytest.skip("shared/ reference data not beside this checkout")
    rows = read_rows([path])
    assert [type(r) for r in rows] == [DertaRow] * 4
    assert [r.rto for r in rows] == [False, False, False, True]
    # row 3 is MLE with a harmful prefix: row 2's prompt plus the start of a harmful answer
    assert rows[2].prefix.startswith(rows[1].prefix) and len(rows[2].prefix) > len(rows[1].prefix)
    assert rows[0].where.line == 1 and rows[3].where.line == 4


def test_every_row_kind(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [
        {"question": "q", "safe_response": "s", "harmful_response": "h", "id": 7},
        {"instruction": "i", "output": "o"},
        {"prompt": "p", "response": "r"},
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
        {"text": "plain text"},
        {"question": "what is 2+2?", "answer": 4},
        "",
    ])
    rows = read_rows([path])
    assert [type(r) for r in rows] == [SafetyTriple, HelpfulRow, HelpfulRow, HelpfulRow, HelpfulRow, QuestionRow]
    assert rows[0].id == "7" and rows[1].prompt == "i" and rows[2].response == "r"
    assert rows[3].messages[-1]["content"] == "a" and rows[4].text == "plain text"
    assert rows[5].answer == "4"


@pytest.mark.parametrize("line, message", [
    ('{"question": "q", "safe_response": "s"', "invalid JSON"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ('{"question": "q", "safe_response": "", "harmful_response": "h"}', "'safe_response' is empty"),
    ('{"question": 3, "safe_response": "s", "harmful_response": "h"}', "'question' must be a string"),
    ('{"prefix": "p", "text": "t", "safe": "maybe"}', "'safe' must be"),
    ('{"safe_response": "s", "harmful_response": "h"}', "a safety triple needs question"),
    ('{"messages": [{"role": "user", "content": "u"}]}', "last message must be the assistant"),
    ('{"foo": 1}', "unrecognised row"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [{"text": "fine"}, line])
    with pytest.raises(DataError) as error:
        read_rows([path])
    assert f"{path}:2:" in str(error.value)
    assert message in str(error.value)


def test_missing_file_and_empty_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_rows([tmp_path / "absent.jsonl"])
    with pytest.raises(DataError, match="no .jsonl"):
        read_rows([tmp_path])


def test_duplicate_rows_are_dropped_with_a_note(tmp_path):
    """A repeated example would sit on both sides of the train/validation split: the first stays."""
    triple = {"question": "How do I hide a cookie?", "safe_response": "Sorry, no.", "harmful_response": "Sure! Wait."}
    first = write_lines(tmp_path / "a.jsonl", [triple, {"text": "fine"}, {**triple, "id": "other id"}])
    second = write_lines(tmp_path / "b.jsonl", [{"text": "fine"}, {**triple, "question": "How do I hide a pencil?"}])
    notes = []
    rows = read_rows([first, second], notes.append)
    assert [(r.where.path, r.where.line) for r in rows] == [(str(first), 1), (str(first), 2), (str(second), 2)]
    assert notes == [f"note: {first}:3: duplicate of {first}:1; dropped",
                     f"note: {second}:1: duplicate of {first}:2; dropped"]


def test_duplicates_note_on_stderr_by_default(tmp_path, capsys):
    path = write_lines(tmp_path / "a.jsonl", [{"text": "fine"}, {"text": "fine"}])
    assert len(read_rows([path])) == 1
    assert f"{path}:2: duplicate of {path}:1" in capsys.readouterr().err


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "fine"}).encode() + b"\r\n")
    assert read_rows([path])[0].text == "fine"
