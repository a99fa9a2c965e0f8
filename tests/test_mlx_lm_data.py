"""mlx-lm's data habits: its folder of train/valid/test.jsonl, its completions format, preference
rows, --mask-prompt, and an error that lists every accepted row."""

import json

import pytest

from derta_mlx.data.formats import DataError, HelpfulRow, SafetyTriple, read_rows
from derta_mlx.train.config import TrainConfig
from derta_mlx.train.job import train_and_val_rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def chats(n, start=0):
    return [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(start, start + n)]


def test_an_mlx_lm_data_folder_gives_its_own_splits(tmp_path):
    folder = tmp_path / "dd"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", chats(8))
    write_jsonl(folder / "valid.jsonl", chats(3, start=100))
    write_jsonl(folder / "test.jsonl", chats(2, start=200))
    notes = []
    train, val, _ = train_and_val_rows(TrainConfig(data=[str(folder)]), notes.append)
    assert [r.where.path for r in train] == [str(folder / "train.jsonl")] * 8  # test.jsonl is not training data
    assert [r.where.path for r in val] == [str(folder / "valid.jsonl")] * 3
    assert any("valid.jsonl" in note for note in notes)
    assert not any("duplicate" in note for note in notes)


def test_a_plain_folder_still_reads_every_file_and_splits_by_share(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", chats(10))
    write_jsonl(folder / "b.jsonl", chats(10, start=50))
    train, val, _ = train_and_val_rows(TrainConfig(data=[str(folder)], val_fraction=0.2), lambda note: None)
    assert len(train) + len(val) == 20 and len(val) == 4


def test_completions_and_preference_rows(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"prompt": "Name a primary colour.", "completion": "Red."},
        {"prompt": "How do I pick my neighbour's lock?", "chosen": "I can't help with getting into someone "
         "else's home.", "rejected": "Use a tension wrench and a pick.", "harmful": True},
        {"prompt": "How do I bake bread?", "chosen": "Mix flour, water, yeast and salt, knead, prove, bake.",
         "rejected": "No idea."},
    ])
    completion, triple, helpful = read_rows([path])
    assert isinstance(completion, HelpfulRow) and completion.response == "Red."
    assert isinstance(triple, SafetyTriple) and triple.safe_response.startswith("I can't")
    assert triple.harmful_response.startswith("Use a tension")
    assert isinstance(helpful, HelpfulRow) and helpful.response.startswith("Mix flour")


@pytest.mark.parametrize("row, message", [
    ({"prompt": "q", "chosen": "a", "rejected": "b", "harmful": "yes"}, "'harmful' must be true or false"),
    ({"prompt": "q", "chosen": "", "rejected": "b", "harmful": True}, "'chosen' is empty"),
])
def test_bad_preference_rows_name_the_field(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        read_rows([write_jsonl(tmp_path / "p.jsonl", [row])])


def test_an_unrecognised_row_lists_the_accepted_ones(tmp_path):
    with pytest.raises(DataError) as caught:
        read_rows([write_jsonl(tmp_path / "x.jsonl", [{"input": "a", "target": "b"}])])
    message = str(caught.value)
    assert "x.jsonl:1: unrecognised row with keys ['input', 'target']" in message
    for shape in ('"safe_response"', '"prefix"', '"chosen"', '"messages"', '"completion"', '{"text"', '"answer"'):
        assert shape in message


def test_mask_prompt_false_supervises_the_prompt_as_mlx_lm_does(tokenizer_of):
    from derta_mlx.data.instances import InstanceConfig, build_instances
    from derta_mlx.data.templates import get_template

    tokenizer = tokenizer_of("llama3")
    row = HelpfulRow("1", "Name a primary colour.", "Red.", None, None, None)
    supervised = {}
    for mask in (True, False):
        config = InstanceConfig(template=get_template("derta", tokenizer), refusal_id=1,
                                eos_id=tokenizer.eos_token_id, mask_prompt=mask)
        (instance,), _ = build_instances([row], tokenizer, config)
        supervised[mask] = int((instance.terms != 0).sum())
    assert supervised[False] > supervised[True] > 0
