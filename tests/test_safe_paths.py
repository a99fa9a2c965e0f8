"""Nothing is written, deleted or run outside what the user named (issue 31): the remote-code
guard, --overwrite, outputs equal to inputs, and symlinks planted in the tool's own folders."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from derta_mlx.common.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "derta_mlx", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def one_line_error(out) -> str:
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("derta-mlx: error")]
    assert len(lines) == 1, out.stderr
    return lines[0]


# --- remote code ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, key", [
    ('{"tokenizer_class": "X", "auto\\u005fmap": {"AutoTokenizer": ["t.X", null]}}', "auto_map"),  # escaped
    ('{"a": {"b": [{"auto_map": {"AutoTokenizer": "t.X"}}]}}', "auto_map"),  # nested
    ('{"auto_map": 1, "auto_map": null}', "auto_map"),  # duplicated; the parsed dict keeps only the last
    ('{"custom_pipelines": {"x": {"impl": "p.P"}}}', "custom_pipelines"),
    ('{"\\u0061uto_map": {}}', "auto_map"),
])
def test_remote_code_keys_are_found_after_parsing(tmp_path, text, key):
    from derta_mlx.common.remote_code import check_no_remote_code

    (tmp_path / "tokenizer_config.json").write_text(text)
    with pytest.raises(UserError, match=f"tokenizer_config.json: key '{key}' asks to run the folder's own"):
        check_no_remote_code(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "PreTrainedTokenizerFast", "note": "auto_map"}')
    check_no_remote_code(tmp_path)  # the words in a value are not a key


def test_a_model_with_an_escaped_auto_map_is_refused_before_loading(tiny_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_dir("llama3"), model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    text = json.dumps({**config, "auto_map": {"AutoTokenizer": ["evil.Tok", None]}}).replace("auto_map", "auto\\u005fmap")
    (model / "tokenizer_config.json").write_text(text)
    (model / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n")
    out = cli("probe", "--model", str(model), "--question", "How do I hide my snacks?", "--harmful-response",
              "Sure. Step 1: find a box.", "--positions", "0", "--max-tokens", "2")
    assert "tokenizer_config.json: key 'auto_map'" in one_line_error(out)
    assert not (tmp_path / "ran").exists()


def _loader_calls(tree: ast.AST):
    """Calls of mlx-lm's and transformers' loaders, by the names they were imported as."""
    loaders = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("mlx_lm", "transformers"):
            for alias in node.names:
                if alias.name in ("load", "load_tokenizer", "load_model"):
                    loaders[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in loaders:
            yield loaders[node.func.id], node
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            yield "from_pretrained", node


def _forbids_remote_code(kind: str, call: ast.Call) -> bool:
    def false_in(value) -> bool:
        return isinstance(value, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value == "trust_remote_code" and isinstance(v, ast.Constant)
            and v.value is False for k, v in zip(value.keys, value.values))

    keywords = {k.arg: k.value for k in call.keywords}
    flag = keywords.get("trust_remote_code")
    direct = isinstance(flag, ast.Constant) and flag.value is False
    if kind == "load":  # mlx_lm.load: the model and, separately, the tokenizer's config
        return direct and false_in(keywords.get("tokenizer_config"))
    if kind == "load_tokenizer":
        return false_in(keywords.get("tokenizer_config_extra"))
    return direct


def test_every_loader_call_forbids_remote_code():
    files = [p for folder in ("derta_mlx", "tui", "bench") for p in (ROOT / folder).rglob("*.py")]
    calls, bad = 0, []
    for path in files:
        for kind, call in _loader_calls(ast.parse(path.read_text(encoding="utf-8"))):
            calls += 1
            if not _forbids_remote_code(kind, call):
                bad.append(f"{path.relative_to(ROOT)}:{call.lineno}: {kind}(...) without trust_remote_code=False")
    assert calls >= 6, "the scan found too few loader calls; is it still looking at the right names?"
    assert not bad, "\n".join(bad)


def test_the_scan_catches_a_loader_without_the_flag():
    tree = ast.parse("from mlx_lm import load as l\nfrom mlx_lm.utils import load_tokenizer\n"
                     "l('p', trust_remote_code=False)\nload_tokenizer('p')\n")
    assert [_forbids_remote_code(kind, call) for kind, call in _loader_calls(tree)] == [False, False]


# --- --overwrite and outputs that are inputs ----------------------------------------------------


def test_overwrite_replaces_only_a_model_folder(tmp_path, monkeypatch):
    from gguf_support import tiny_llama

    from derta_mlx.common.safe_paths import MARKER
    from derta_mlx.models.gguf.convert import convert_gguf
    from derta_mlx.models.gguf.header import GGUFError

    gguf = tmp_path / "tiny.gguf"
    tiny_llama(gguf)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    (victim / "code").mkdir()
    (victim / "code" / "main.py").write_text("print(1)")
    with pytest.raises(GGUFError, match="holds code, notes.txt; --overwrite only replaces a model folder"):
        convert_gguf(gguf, victim, overwrite=True)
    assert (victim / "notes.txt").read_text() == "mine" and (victim / "code" / "main.py").is_file()
    monkeypatch.chdir(victim / "code")
    for out in (".", ".."):  # the current directory and its ancestors, whatever they hold
        with pytest.raises(GGUFError, match="current directory or one above it"):
            convert_gguf(gguf, out, overwrite=True)
    assert (victim / "code" / "main.py").is_file()
    monkeypatch.chdir(tmp_path)
    converted = convert_gguf(gguf, tmp_path / "model")
    assert (converted / MARKER).is_file()
    assert convert_gguf(gguf, tmp_path / "model", overwrite=True) == tmp_path / "model"  # ours: replaced
    (converted / MARKER).unlink()
    convert_gguf(gguf, tmp_path / "model", overwrite=True)  # a plain model layout is replaceable too


def test_models_convert_overwrite_of_the_current_directory_is_one_line(tmp_path):
    from gguf_support import tiny_llama

    tiny_llama(tmp_path / "tiny.gguf")
    (tmp_path / "notes.txt").write_text("mine")
    out = cli("models", "convert", "--gguf", "tiny.gguf", "--out", ".", "--overwrite", cwd=tmp_path)
    assert "current directory" in one_line_error(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "tiny.gguf"]


def test_data_build_never_writes_over_its_input(tmp_path):
    data = tmp_path / "mine.jsonl"
    shutil.copy(ROOT / "derta_mlx" / "demo" / "helpful.jsonl", data)
    before = data.read_bytes()
    (tmp_path / "hard.jsonl").hardlink_to(data)
    for out in (data, tmp_path / "." / "mine.jsonl", tmp_path / "hard.jsonl"):
        assert "writing there would destroy it" in one_line_error(cli("data", "build", str(data), "--out", str(out)))
    assert data.read_bytes() == before
    error = one_line_error(cli("data", "build", f"{data}:0.5", "--out", str(data)))
    assert "is the input" in error and data.read_bytes() == before


def test_check_not_input_also_guards_folders(tmp_path):
    from derta_mlx.common.safe_paths import check_not_input

    (tmp_path / "in.jsonl").write_text("{}\n")
    with pytest.raises(UserError, match="holds the input"):
        check_not_input(tmp_path, [tmp_path / "in.jsonl"])
    check_not_input(tmp_path / "out.jsonl", [tmp_path / "in.jsonl"])


# --- symlinks in the tool's own folders ---------------------------------------------------------


@pytest.fixture
def target(tmp_path):
    """A file of the user's that a planted link points at; it must never change."""
    path = tmp_path / "precious.txt"
    path.write_text("precious\n")
    return path


def assert_intact(target):
    assert target.read_text() == "precious\n"


def test_run_lock_symlink_is_refused(tmp_path, target):
    from derta_mlx.train.claim import claim_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    with pytest.raises(UserError, match=r"\.lock is a symbolic link"):
        claim_run_dir(run, new=False)
    assert_intact(target)


def test_lock_beside_a_model_symlink_is_refused(tmp_path, target):
    from derta_mlx.common.locks import exclusive

    (tmp_path / ".model.lock").symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        with exclusive(tmp_path / ".model.lock"):
            pass
    assert_intact(target)


@pytest.mark.parametrize("name", ["status.json", "report.json", "judge_cache.json"])
def test_atomic_writes_refuse_a_symlinked_target_and_temporary(tmp_path, target, name):
    from derta_mlx.common.atomic import write_json

    (tmp_path / name).symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        write_json(tmp_path / name, {"a": 1})
    assert_intact(target)
    (tmp_path / name).unlink()
    (tmp_path / f".{name}.tmp").symlink_to(target)  # a planted temporary is removed, not followed
    write_json(tmp_path / name, {"a": 1})
    assert json.loads((tmp_path / name).read_text()) == {"a": 1}
    assert_intact(target)
    assert not (tmp_path / f".{name}.tmp").exists()


def test_records_symlink_is_refused_for_repair_and_append(tmp_path, target):
    from derta_mlx.eval.generate import append_records, pending_jobs

    records = tmp_path / "records.jsonl"
    target.write_text("precious\nno newline at the end")  # repair_tail would cut this line
    records.symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        pending_jobs([], records)
    with pytest.raises(UserError, match="symbolic link"):
        append_records(records, [{"suite": "s", "id": "1", "prompt": "p"}])
    assert target.read_text() == "precious\nno newline at the end"


def test_metrics_and_log_appends_refuse_symlinks(tmp_path, target):
    from derta_mlx.common.safe_paths import open_own

    (tmp_path / "metrics.jsonl").symlink_to(target)
    for mode in ("a", "a+", "w", "x"):
        with pytest.raises(UserError, match="symbolic link"):
            open_own(tmp_path / "metrics.jsonl", mode)
    assert_intact(target)
    with open_own(tmp_path / "own.jsonl", "a") as handle:
        handle.write("row\n")
    assert (tmp_path / "own.jsonl").read_text() == "row\n"


def test_checkpoint_folder_symlink_is_refused(tmp_path):
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    from derta_mlx.train.checkpoint import save_checkpoint

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(elsewhere)
    model, optimizer = nn.Linear(2, 2), optim.SGD(learning_rate=0.1)
    mx.eval(model.parameters())
    with pytest.raises(UserError, match="checkpoints is a symbolic link"):
        save_checkpoint(run, 1, 1, 10, model, optimizer, {})
    assert list(elsewhere.iterdir()) == []
    (run / "checkpoints").unlink()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step-0000001").symlink_to(elsewhere)
    with pytest.raises(UserError, match="symbolic link"):
        save_checkpoint(run, 1, 1, 10, model, optimizer, {})
    assert list(elsewhere.iterdir()) == []
