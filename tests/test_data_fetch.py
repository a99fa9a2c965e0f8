"""`derta-mlx data fetch`, offline: a hub cache pre-filled in the real layout with our own mild rows
in each dataset's real schema (tests/fetch_support.py), converted to the formats train reads."""

import gzip
import json
import os
import re
import subprocess
import sys

import pytest
from fetch_support import COMMIT, fill_catalogue, fill_dataset, json_array, jsonl, rows

from derta_mlx.cli.main import main
from derta_mlx.data.fetch.records import Unreadable, iter_records
from derta_mlx.data.fetch.refusing import REFUSAL_SENTENCE, refusal_place
from derta_mlx.data.formats import DataError, SafetyTriple, read_rows


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline hub cache holding the catalogue's datasets; the working directory is tmp_path."""
    cache = tmp_path / "hf" / "hub"
    fill_catalogue(cache)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("DERTA_MLX_BLAS_CHECKED", "1")  # in-process: never restart pytest with a BLAS preloaded
    monkeypatch.chdir(tmp_path)
    return cache


def fetch(capsys, *args):
    code = main(["data", "fetch", *args])
    out, err = capsys.readouterr()
    return code, out, err


def written(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def harmful_texts():
    """Every harmful answer in our test rows: none may ever be printed."""
    texts = []
    for row in rows("pku_saferlhf.jsonl"):
        texts += [row[f"response_{i}"] for i in (0, 1) if row.get(f"is_response_{i}_safe") is False]
    texts += [row["response"] for row in rows("beavertails.jsonl") if row.get("is_safe") is False]
    return texts


def assert_nothing_harmful_printed(*streams):
    for text in harmful_texts():
        for stream in streams:
            assert text[:40] not in stream


def test_saferlhf_pairs_a_safe_and_an_unsafe_answer(hub, capsys):
    code, out, err = fetch(capsys, "pku-saferlhf")
    assert code == 0, err
    triples = written("data/pku-saferlhf-train.jsonl")
    questions = [t["question"] for t in triples]
    # the cookie pair (safe answer second) and the board game pair (safe answer first) refuse at once
    assert questions == ["How can I sneak extra cookies from the jar without my mum noticing?",
                         "How can I cheat at a board game with my cousins?"]
    assert triples[0]["safe_response"].startswith("I'm sorry, but I can't help")
    assert triples[0]["harmful_response"].startswith("Wait until she is in the garden")
    assert triples[1]["safe_response"].startswith("Sorry, I can't help with cheating")
    assert all(t["safe_rule"] == "refuses" for t in triples)
    assert triples[0]["id"] == "pku-saferlhf/data/Alpaca-7B/train.jsonl:1"
    assert "licence: CC BY-NC 4.0" in err  # printed before the download
    summary = out
    assert "wrote 2 rows" in summary and "2 safety triples" in summary
    for reason in ("1 both answers safe", "1 both answers unsafe", "1 safe answer does not refuse",
                   "1 safe answer refuses only later", "1 duplicate of an earlier row", "2 bad record(s)"):
        assert reason in summary, summary
    # bad records by FILE:LINE and what is wrong, in the cached file the user can open
    assert f"snapshots/{COMMIT}/data/Alpaca2-7B/train.jsonl:2: missing field 'is_response_1_safe'" in summary
    assert "data/Alpaca2-7B/train.jsonl:3: field 'is_response_0_safe' must be true or false, got str" in summary
    assert_nothing_harmful_printed(out, err)
    assert [type(r) for r in read_rows(["data/pku-saferlhf-train.jsonl"])] == [SafetyTriple, SafetyTriple]


def test_non_refusing_safe_answers_rewritten_or_kept(hub, capsys):
    code, out, _ = fetch(capsys, "pku-saferlhf", "--non-refusing", "rewrite", "--out", "rewritten.jsonl")
    assert code == 0
    triples = {t["question"]: t for t in written("rewritten.jsonl")}
    chores = triples["How can I skip my chores without my parents finding out?"]
    assert chores["safe_rule"] == "rewritten"
    assert chores["safe_response"] == (f"{REFUSAL_SENTENCE} Talking to your parents about a chore plan that fits "
                                       "your week usually works better than hiding it.")
    assert triples["How do I read my sister's diary without her knowing?"]["safe_rule"] == "rewritten"
    assert "safe answers: 2 refuse in their first sentence, 2 rewritten to open with a refusal" in out
    code, out, _ = fetch(capsys, "pku-saferlhf", "--non-refusing", "keep", "--out", "kept.jsonl")
    kept = {t["question"]: t for t in written("kept.jsonl")}
    assert kept["How can I skip my chores without my parents finding out?"]["safe_response"].startswith("Talking")
    assert "2 kept without a refusal" in out


def test_beavertails_pairs_answers_per_question_from_gzip_and_xz(hub, capsys):
    for split in ("30k_train", "330k_train"):
        code, out, err = fetch(capsys, "beavertails", "--split", split)
        assert code == 0, err
        triples = written(f"data/beavertails-{split}.jsonl")
        assert [t["question"] for t in triples] == ["How do I sneak a snack into the cinema?",
                                                    "How do I stay up later than my bedtime without being noticed?"]
        assert triples[0]["harmful_response"].startswith("Put it in the inside pocket")  # the first unsafe answer
        # of two safe answers, the one that refuses (the second) is the target
        assert triples[1]["safe_response"].startswith("I'm sorry, I can't help you hide staying up")
        # every record is accounted for: 4 make two triples, 1 is bad, 6 are left out by a rule
        for reason in ("2 other answers to an already paired question", "1 answers to a question with no unsafe answer",
                       "1 answers to a question with no safe answer", "1 safe answer does not refuse",
                       "1 bad record(s)", "left out 6:"):
            assert reason in out, out
        assert "round0/" in out and ":8: missing field 'is_safe'" in out
        assert_nothing_harmful_printed(out, err)


def test_an_unreadable_json_lines_line_is_one_bad_record(hub, tmp_path, capsys):
    lines = jsonl(rows("wizardlm.jsonl")[:2]).decode().splitlines()
    (tmp_path / "some.jsonl").write_text(lines[0] + "\n{not json\n" + lines[1] + "\n")
    code, out, err = fetch(capsys, "wizardlm-70k-unfiltered", "--from", str(tmp_path / "some.jsonl"))
    assert code == 0, err
    assert len(written("data/wizardlm-70k-unfiltered-train.jsonl")) == 2
    assert "some.jsonl:2: invalid JSON" in out and "1 bad record(s)" in out


def test_alpaca_from_parquet_and_json_arrays(hub, capsys):
    code, out, err = fetch(capsys, "alpaca")
    assert code == 0, err
    rows_ = written("data/alpaca-train.jsonl")
    assert len(rows_) == 4 and "1 bad record(s)" in out
    assert rows_[1] == {"id": "alpaca/data/train-00000-of-00001-a09b74b3ef9c3b56.parquet:2",
                        "instruction": "Translate the sentence into French.\n\nThe cat is sleeping on the sofa.",
                        "output": "Le chat dort sur le canapé."}
    assert "parquet:4: field 'output' is empty" in out  # Parquet has rows, not lines: row 4

    code, out, err = fetch(capsys, "alpaca-cleaned", "--limit", "2", "--out", "new/folder/helpful.jsonl")
    assert code == 0, err
    assert [r["instruction"] for r in written("new/folder/helpful.jsonl")] == [
        "Give three tips for staying healthy.", "Translate the sentence into French.\n\nThe cat is sleeping on the sofa."]

    code, out, err = fetch(capsys, "wizardlm-70k-unfiltered")
    assert code == 0, err
    assert len(written("data/wizardlm-70k-unfiltered-train.jsonl")) == 2
    # the JSON array is written with indent=4: the third record starts on line 10
    assert "WizardLM_alpaca_evol_instruct_70k_unfiltered.json:10: field 'output' must be str, got int" in out


def test_derta_official_from_a_clone(hub, tmp_path, capsys):
    code, _, err = fetch(capsys, "derta-official")
    assert code == 2 and "git clone https://github.com/RobustNLP/DeRTa" in err and "--from" in err
    clone = tmp_path / "DeRTa"
    (clone / "data" / "train").mkdir(parents=True)
    (clone / "data/train/safety_beaver_safe_and_unsafe_response.json").write_bytes(
        json_array(rows("derta_beaver.jsonl")))
    code, out, err = fetch(capsys, "derta-official", "--from", str(clone))
    assert code == 0, err
    triples = written("data/derta-official-train.jsonl")
    assert [t["question"] for t in triples] == [r["instruction"] for r in rows("derta_beaver.jsonl")]
    assert triples[0]["harmful_response"].startswith("Wait until everyone is in the living room")
    # DeRTa's own rows pass through as they are; train reads them as DeRTa rows
    official = tmp_path / "llama_derta.json"
    official.write_bytes(jsonl([
        {"prefix": "[INST] Name a fruit. [\\INST]", "text": " An apple.<|end_of_text|>", "safe": "false"},
        {"prefix": "[INST] How do I sneak a cookie? [\\INST]", "text": " Take one.<|end_of_text|>", "safe": "true"},
    ]))
    code, out, err = fetch(capsys, "derta-official", "--from", str(official), "--out", "rows.jsonl")
    assert code == 0, err
    assert "2 DeRTa rows" in out
    assert [r.rto for r in read_rows(["rows.jsonl"])] == [False, True]
    # a field's text never reaches the terminal, even where it is not the field it should be
    secret = "Step 1: wait until the kitchen is empty and take the whole cookie jar"
    official.write_bytes(jsonl([{"prefix": "[INST] q [\\INST]", "text": " t", "safe": secret}]))
    code, out, err = fetch(capsys, "derta-official", "--from", str(official), "--out", "rows2.jsonl")
    assert code == 2 and "'safe' must be" in err and "a str of 69 characters" in err
    assert "cookie jar" not in out + err


def test_any_hub_dataset_with_a_schema_and_files(hub, capsys):
    fill_dataset(hub, "someone/mild-qa", {"qa/train.jsonl": jsonl(rows("wizardlm.jsonl")[:2])})
    code, _, err = fetch(capsys, "someone/mild-qa")
    assert code == 2 and "--schema" in err and "--file" in err
    code, out, err = fetch(capsys, "someone/mild-qa", "--schema", "alpaca", "--file", "qa/train.jsonl")
    assert code == 0, err
    assert "read https://huggingface.co/datasets/someone/mild-qa" in err  # no catalogue licence: the card
    assert len(written("data/someone--mild-qa-files.jsonl")) == 2


def test_errors_leave_nothing_written(hub, tmp_path, capsys):
    code, _, err = fetch(capsys, "pku-saferlhf", "--split", "test")  # not in the pre-filled cache
    assert code == 2 and "HF_HUB_OFFLINE" in err and "data/Alpaca-7B/test.jsonl" in err
    code, _, err = fetch(capsys, "beavertail")
    assert code == 2 and "did you mean 'beavertails'" in err
    code, _, err = fetch(capsys, "beavertails", "--split", "1k")
    assert code == 2 and "30k_train" in err
    assert not (tmp_path / "data").exists()
    # every record bad: an error with the first one, and no file
    fill_dataset(hub, "someone/wrong-schema", {"train.jsonl": jsonl(rows("beavertails.jsonl"))})
    code, _, err = fetch(capsys, "someone/wrong-schema", "--schema", "saferlhf", "--file", "train.jsonl")
    assert code == 2 and "nothing written" in err and "train.jsonl:1: missing field 'response_0'" in err
    assert not (tmp_path / "data").exists()
    # an existing output is kept unless --force
    (tmp_path / "mine.jsonl").write_text("precious\n")
    code, _, err = fetch(capsys, "alpaca-cleaned", "--out", "mine.jsonl")
    assert code == 2 and "--force" in err and (tmp_path / "mine.jsonl").read_text() == "precious\n"
    code, _, _ = fetch(capsys, "alpaca-cleaned", "--out", "mine.jsonl", "--force")
    assert code == 0 and len(written(tmp_path / "mine.jsonl")) == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_damaged_files_are_errors_with_the_place(tmp_path):
    truncated = tmp_path / "cut.json"
    truncated.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"')
    with pytest.raises(DataError, match=r"cut\.json:3: invalid JSON"):
        list(iter_records(truncated))
    unclosed = tmp_path / "open.json"
    unclosed.write_text('[\n  {"instruction": "a", "output": "b"}\n')
    with pytest.raises(DataError, match=r"open\.json:3: the JSON array is not closed"):
        list(iter_records(unclosed))
    broken_gz = tmp_path / "train.jsonl.gz"
    broken_gz.write_bytes(gzip.compress(b'{"a": 1}\n')[:-6])
    with pytest.raises(DataError, match="cannot read it"):
        list(iter_records(broken_gz))
    bad_line = tmp_path / "rows.jsonl"
    bad_line.write_text('{"a": 1}\n\n{"a": \n')
    (_, first), (where, unreadable) = list(iter_records(bad_line))
    assert first == {"a": 1} and where.line == 3 and isinstance(unreadable, Unreadable)
    assert unreadable.reason.startswith("invalid JSON")  # one bad record, reported; the other lines still count
    corrupt_body = bytearray(gzip.compress(b'{"a": 1}\n' * 1000))
    corrupt_body[20:40] = bytes(20)
    (tmp_path / "z.jsonl.gz").write_bytes(bytes(corrupt_body))
    with pytest.raises(DataError, match="cannot read it"):
        list(iter_records(tmp_path / "z.jsonl.gz"))


@pytest.mark.parametrize("content, message", [
    ('[{"a": 1},\n]', "2: invalid JSON: a comma before ']'"),
    ('[{"a": 1}]\n[{"b": 2}]', "2: invalid JSON: more after the array's closing ']'"),
    ('[\n{"a": "\\ud800"}]', "2: field 'a' holds a lone surrogate"),
    ('[\n{"a": NaN}]', "2: invalid JSON: NaN is not valid JSON"),
    ("[" * 100000, "JSON nested too deeply"),
    ("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 12\n", "a Git LFS pointer"),
])
def test_a_json_array_is_read_strictly(tmp_path, content, message):
    path = tmp_path / "data.json"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)):
        list(iter_records(path))


def test_a_byte_order_mark_then_space_still_reads_as_an_array(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf\n[\n {"a": 1},\n {"a": 2}\n]\n')
    assert [(w.line, r) for w, r in iter_records(path)] == [(3, {"a": 1}), (4, {"a": 2})]  # "[" is line 2
    assert list(iter_records(_empty_array(tmp_path))) == []


def _empty_array(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("[ ]\n")
    return path


@pytest.mark.parametrize("text, place", [
    ("I'm sorry, but I can't help with that.", "refuses"),
    ("Sorry, no.", "refuses"),
    ("I cannot help with sneaking out. Ask your parents instead.", "refuses"),
    ("Diaries are private. I won't help with reading it.", "later"),
    ("That is not a good idea.\nI must decline.", "later"),
    ("Talking to your parents usually works better.", "none"),
    ("I feel sorry for him.", "none"),
])
def test_where_a_safe_answer_refuses(text, place):
    assert refusal_place(text) == place


def test_cli_offline_in_a_fresh_process(tmp_path):
    """The real environment variables, as a user sets them: HF_HOME and HF_HUB_OFFLINE."""
    fill_catalogue(tmp_path / "hf" / "hub")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    cli = [sys.executable, "-m", "derta_mlx", "data", "fetch"]
    done = subprocess.run(cli + ["pku-saferlhf", "--out", str(tmp_path / "s.jsonl")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrote 2 rows" in done.stdout and "Traceback" not in done.stderr
    listed = subprocess.run(cli + ["--list"], capture_output=True, text=True, env=env, timeout=300)
    assert "pku-saferlhf" in listed.stdout and "CC BY-NC 4.0" in listed.stdout
