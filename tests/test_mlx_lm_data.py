"""mlx-lm's data habits: its folder of train/valid/test.jsonl, its completions format, preference
rows, --mask-prompt, and an error that lists every accepted row."""

import json

import pytest

from derta_mlx.common.errors import UserError
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


def fill_dataset_cache(hf_home, repo, files: dict):
    """datasets--ORG--NAME/{blobs,refs/main,snapshots/COMMIT/} as huggingface_hub writes it."""
    import os

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo_dir = hf_home / "hub" / ("datasets--" + repo.replace("/", "--"))
    snapshot, blobs = repo_dir / "snapshots" / commit, repo_dir / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, (name, rows) in enumerate(files.items()):
        blob = write_jsonl(blobs / f"{i:040x}", rows)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def test_a_hub_dataset_id_in_data_and_in_hf_dataset_reads_its_splits_offline(tmp_path, monkeypatch):
    from derta_mlx.train.config import config_from_dict

    repo = "derta-test/chats"
    fill_dataset_cache(tmp_path / "hf", repo, {"train.jsonl": chats(6), "valid.jsonl": chats(2, start=100),
                                                 "test.jsonl": chats(2, start=200)})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    train, val, _ = train_and_val_rows(TrainConfig(data=[repo]), lambda note: None)
    assert len(train) == 6 and len(val) == 2 and train[0].where.path.endswith("train.jsonl")
    cfg = config_from_dict({"hf_dataset": {"path": repo}}, "c.yaml")
    assert cfg.data == [repo]
    with pytest.raises(UserError, match="hf_dataset: prompt_feature, train_split not supported"):
        config_from_dict({"hf_dataset": {"path": repo, "train_split": "train[:10]", "prompt_feature": "q"}}, "c.yaml")
    with pytest.raises(UserError, match="not in the hub cache"):
        train_and_val_rows(TrainConfig(data=["derta-test/absent"]), lambda note: None)


def test_test_split_resume_adapter_file_and_full_fine_tuning(tiny_dir, tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "dd"
    folder.mkdir()
    triples = [{"question": f"How do I sneak snack {i}?", "safe_response": "Sorry, I can't help with that.",
                "harmful_response": f"Sure! Step 1: wait. Step 2: take snack {i}."} for i in range(12)]
    write_jsonl(folder / "train.jsonl", triples[:8])
    write_jsonl(folder / "valid.jsonl", triples[8:10])
    write_jsonl(folder / "test.jsonl", triples[10:])
    model = str(tiny_dir("llama3"))

    def train(*args):
        return subprocess.run([sys.executable, "-m", "derta_mlx", "train", "--model", model, "--data", str(folder),
                               "--iters", "2", "--batch-size", "2", "--no-probe-after", *args],
                              capture_output=True, text=True, timeout=600)

    first = train("--test", "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    assert "Test loss" in first.stdout
    report = json.loads((tmp_path / "a" / "test.json").read_text())
    assert report["instances"] > 0 and report["test_loss"] > 0
    second = train("--resume-adapter-file", str(tmp_path / "a" / "adapters.safetensors"), "--iters", "1",
                   "--learning-rate", "1e-12", "--out", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    import mlx.core as mx

    a, b = mx.load(str(tmp_path / "a" / "adapters.safetensors")), mx.load(str(tmp_path / "b" / "adapters.safetensors"))
    assert all(mx.allclose(a[k], b[k], atol=1e-6).item() for k in a)  # started from a's weights
    missing = train("--resume-adapter-file", str(tmp_path / "nope.safetensors"))
    assert missing.returncode == 2 and "no such .safetensors file" in missing.stderr
    full = train("--fine-tune-type", "full", "--out", str(tmp_path / "c"))
    assert full.returncode == 2 and "GB" in full.stderr and "Traceback" not in full.stderr
    assert not (tmp_path / "c").exists()
    no_test = train("--test", "--data", str(folder / "train.jsonl"), "--out", str(tmp_path / "d"))
    assert no_test.returncode == 2 and "test.jsonl" in no_test.stderr


def test_dry_run_reads_the_data_lengths(tmp_path):
    import subprocess
    import sys

    data = write_jsonl(tmp_path / "short.jsonl", [{"question": f"How do I hide snack {i}?", "safe_response": "No.",
                                                    "harmful_response": f"Put snack {i} in a box."} for i in range(8)])
    out = subprocess.run([sys.executable, "-m", "derta_mlx", "train", "--dry-run", "--model", "tiny-llama3",
                          "--data", str(data), "--max-seq-length", "2048"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "the largest of the run's 60 batches of the data" in out.stdout and "max_seq_length is 2048" in out.stdout


def test_chat_rows_with_tools(tmp_path, tokenizer_of):
    from derta_mlx.data.instances import InstanceConfig, build_instances
    from derta_mlx.data.templates import get_template

    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}]
    row = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                        {"role": "assistant", "content": None,
                         "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                                          "arguments": {"city": "Paris"}}}]},
                        {"role": "tool", "content": "18 C, sunny"},
                        {"role": "assistant", "content": "It is 18 C and sunny in Paris."}], "tools": tools}
    (parsed,) = read_rows([write_jsonl(tmp_path / "tools.jsonl", [row])])
    assert parsed.tools == tools and parsed.messages[1]["content"] == ""
    tokenizer = tokenizer_of("llama3", instruct=True)
    config = InstanceConfig(template=get_template("chat", tokenizer), refusal_id=1, eos_id=tokenizer.eos_token_id)
    (instance,), _ = build_instances([parsed], tokenizer, config)
    assert (instance.terms != 0).sum() > 0
    with pytest.raises(DataError, match="'tools' must be a list of objects"):
        read_rows([write_jsonl(tmp_path / "bad.jsonl", [{**row, "tools": "get_weather"}])])
