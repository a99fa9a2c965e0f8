"""`train --data safety.jsonl:1 helpful.jsonl:3`: files mixed in stated proportions, seeded, recorded."""

import json

import pytest
import yaml
from cli_support import train_cli

from derta_mlx.common.errors import UserError
from derta_mlx.data.formats import DataError, HelpfulRow, SafetyTriple, read_rows
from derta_mlx.data.mixing import mix_rows, parse_spec
from derta_mlx.train.config import config_from_dict
from derta_mlx.train.fingerprint import fingerprint

SAFETY = [{"id": f"s{i}", "question": f"How do I sneak cookie {i} from the jar?",
           "safe_response": "Sorry, I can't help with sneaking cookies. Ask for one after dinner.",
           "harmful_response": f"Wait until the kitchen is empty, then take cookie {i} from the back."}
          for i in range(10)]
HELPFUL = [{"id": f"h{i}", "instruction": f"What is {i} plus {i}?", "output": f"{i} plus {i} is {2 * i}."}
           for i in range(30)]


@pytest.fixture
def files(tmp_path):
    safety, helpful = tmp_path / "safety.jsonl", tmp_path / "helpful.jsonl"
    safety.write_text("".join(json.dumps(r) + "\n" for r in SAFETY))
    helpful.write_text("".join(json.dumps(r) + "\n" for r in HELPFUL))
    return str(safety), str(helpful)


def ids(rows):
    return [r.id for r in rows]


def test_ratios_set_each_files_share_without_repeating_a_row(files):
    safety, helpful = files
    rows, parts = mix_rows([f"{safety}:1", f"{helpful}:2"], seed=0, notify=lambda _: None)
    assert [(p.available, p.taken) for p in parts] == [(10, 10), (30, 20)]
    assert sum(isinstance(r, SafetyTriple) for r in rows) == 10
    assert sum(isinstance(r, HelpfulRow) for r in rows) == 20
    assert len(set(ids(rows))) == len(rows)
    helpful_ids = [r.id for r in rows if isinstance(r, HelpfulRow)]
    assert helpful_ids == sorted(helpful_ids, key=lambda i: int(i[1:]))  # file order kept
    # the file that runs out first sets the total: 30 helpful rows at ratio 10 allow 3 safety rows
    rows, parts = mix_rows([f"{safety}:1", f"{helpful}:10"], seed=0, notify=lambda _: None)
    assert [(p.available, p.taken) for p in parts] == [(10, 3), (30, 30)]


def test_the_mix_is_seeded(files):
    safety, helpful = files
    specs = [f"{safety}:1", f"{helpful}:1"]
    first = ids(mix_rows(specs, seed=3, notify=lambda _: None)[0])
    assert first == ids(mix_rows(specs, seed=3, notify=lambda _: None)[0])
    assert first != ids(mix_rows(specs, seed=4, notify=lambda _: None)[0])


def test_without_ratios_every_row_is_used_as_before(files):
    rows, parts = mix_rows(list(files), seed=0, notify=lambda _: None)
    assert parts == [] and ids(rows) == ids(read_rows(list(files), lambda _: None))


def test_duplicates_across_files_are_dropped_before_mixing(files, tmp_path):
    safety, _ = files
    again = tmp_path / "again.jsonl"
    copies = [{**r, "id": "copy-" + r["id"]} for r in SAFETY[:4]]  # the same rows under other ids
    new = [{**HELPFUL[i], "id": f"new{i}"} for i in range(3)]
    again.write_text("".join(json.dumps(r) + "\n" for r in copies + new))
    notes = []
    rows, parts = mix_rows([f"{safety}:1", f"{again}:1"], seed=0, notify=notes.append)
    assert len(notes) == 4 and all("duplicate" in note for note in notes)
    assert [(p.available, p.taken) for p in parts] == [(10, 3), (3, 3)]


def test_a_file_of_duplicates_or_an_empty_file_is_named(files, tmp_path):
    safety, _ = files
    with pytest.raises(DataError, match=f"{safety}: every row duplicates"):
        mix_rows([f"{safety}:1", f"{safety}:1"], seed=0, notify=lambda _: None)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps(HELPFUL[0]) + "\n")
    (folder / "b.jsonl").write_text("")
    with pytest.raises(DataError, match=r"b\.jsonl: no rows"):
        mix_rows([f"{safety}:1", f"{folder}:1"], seed=0, notify=lambda _: None)


def test_a_share_below_one_row_is_an_error(files):
    safety, helpful = files
    with pytest.raises(DataError, match="less than one row"):
        mix_rows([f"{safety}:1000", f"{helpful}:1"], seed=0, notify=lambda _: None)


@pytest.mark.parametrize("spec, message", [
    ("{safety}:0", "must be a positive number, got '0'"),
    ("{safety}:-2", "must be a positive number"),
    ("{safety}:nan", "must be a positive number"),
    ("{safety}:inf", "must be a positive number"),
    ("{safety}:three", "must be a positive number, got 'three'"),
])
def test_bad_ratios_are_refused(files, spec, message):
    with pytest.raises(DataError, match=message):
        parse_spec(spec.format(safety=files[0]))


def test_a_colon_in_a_file_name_is_not_a_ratio(tmp_path):
    named = tmp_path / "run:2.jsonl"
    named.write_text(json.dumps(SAFETY[0]) + "\n")
    assert parse_spec(str(named)).ratio is None
    assert parse_spec(str(tmp_path / "missing:name.jsonl")).ratio is None  # reported later as no such file
    assert parse_spec(str(tmp_path / "missing" / "run:v2.jsonl")).ratio is None
    assert parse_spec("a.jsonl:2.5").ratio == 2.5


def test_settings_refuse_a_half_rated_list_and_rated_validation_files(files):
    safety, helpful = files
    with pytest.raises(UserError, match="--data: .*give every data file a ratio"):
        config_from_dict({"data": [f"{safety}:1", helpful]}, "flags", flags=True)
    with pytest.raises(UserError, match="--val-data: ratios .* validation files take none"):
        config_from_dict({"val_data": [f"{helpful}:2"]}, "flags", flags=True)
    cfg = config_from_dict({"data": [f"{safety}:1", f"{helpful}:3"]}, "flags", flags=True)
    assert sorted(fingerprint(cfg)["data"]) == sorted(files)  # the files are hashed, ratios left off


@pytest.mark.slow
def test_train_records_the_mix_in_config_yaml(files, tiny_dir, tmp_path):
    safety, helpful = files
    run = tmp_path / "run"
    out = train_cli("--model", str(tiny_dir("llama3")), "--data", f"{safety}:1", f"{helpful}:2",
                    "--iters", "2", "--batch-size", "2", "--no-probe-after", "--seed", "5", "--out", str(run))
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"data mix (seed 5): {safety} 10 of 10 rows (ratio 1), {helpful} 20 of 30 rows (ratio 2)" in out.stderr
    text = (run / "config.yaml").read_text()
    assert f"# data mix (seed 5): {safety} 10 of 10 rows" in text
    settings = yaml.safe_load(text)
    assert settings["data"] == [f"{safety}:1", f"{helpful}:2"] and settings["seed"] == 5
