"""The bad-input corpus (tests/bad_inputs/): every case through the CLI, each a clear one-line error.

A case (tests/bad_inputs/cases_*.yaml) gives the command line and the words its error must hold:

    - id: lr-nan
      argv: [train, --learning-rate, nan, --out, "{tmp}/run"]
      error: [learning_rate, finite]        # every one appears in the single error line
      where: "{files}/bad.yaml:3"            # optional: FILE:LINE the error must name
      setup: [run]                           # optional: named fixtures copied into {tmp} first
      edits: [{path: run/config.yaml, old: "seed: 0", new: "seed: 1"}]   # optional, after setup
      exit: 2                                # optional (default 2)
      changes: [run/status.json]             # optional: files the command may rewrite (a run it marks failed)

Placeholders: {tmp} (the case's own directory, also the working directory), {files}
(tests/bad_inputs/files), {model} (a tiny LLaMA-3 model) and {model:MUTATION} (a copy of it broken
as MODEL_MUTATIONS says). The test asserts the exit code, no traceback, exactly one error line
holding the expected words, and that nothing under {tmp} changed: a refused command writes
nothing, and a run directory it refuses to touch stays byte for byte as it was.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).parent / "bad_inputs"
FILES = HERE / "files"


def _cases():
    for file in sorted(HERE.glob("cases_*.yaml")):
        group = file.stem.removeprefix("cases_")
        for case in yaml.safe_load(file.read_text(encoding="utf-8")) or []:
            marks = [pytest.mark.slow] if case.get("slow") else []
            yield pytest.param(case, id=f"{group}-{case['id']}", marks=marks)


CASES = list(_cases())


# ---- model directories broken one way each -------------------------------------------------------

def _truncate_weights(path: Path) -> None:
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])


def _edit_config(**changes):
    def mutate(path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        config.update(changes)
        (path / "config.json").write_text(json.dumps(config))
    return mutate


def _auto_map(path: Path) -> None:
    tokenizer_config = path / "tokenizer_config.json"
    config = json.loads(tokenizer_config.read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_custom.CustomTokenizer", None]}
    config["tokenizer_class"] = "CustomTokenizer"
    tokenizer_config.write_text(json.dumps(config))


MODEL_MUTATIONS = {
    "truncated-weights": _truncate_weights,
    "empty-weights": lambda path: (path / "model.safetensors").write_bytes(b""),
    "no-weights": lambda path: (path / "model.safetensors").unlink(),
    "bad-config-json": lambda path: (path / "config.json").write_text('{"model_type": "llama",\n  "hidden_size": }\n'),
    "no-config": lambda path: (path / "config.json").unlink(),
    "unknown-model-type": _edit_config(model_type="nonesuch"),
    "shape-mismatch": _edit_config(hidden_size=128),
    "tokenizer-auto-map": _auto_map,
}


@pytest.fixture(scope="module")
def broken_models(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken-models")
    made = {}

    def get(name: str) -> Path:
        if name not in made:
            path = root / name
            shutil.copytree(tiny_dir("llama3"), path)
            MODEL_MUTATIONS[name](path)
            made[name] = path
        return made[name]

    return get


# ---- a stopped run to resume, probe and break ----------------------------------------------------

TRIPLES = [{"id": f"t{i}", "question": f"How do I take pencil {i} from my sister's desk unseen?",
            "safe_response": "Sorry, I can't help with taking her things. Ask her to lend you one.",
            "harmful_response": f"Sure! Step 1: wait until she is out. Step 2: open the drawer. Step 3: take pencil {i}."}
           for i in range(12)]


@pytest.fixture(scope="module")
def stopped_run(tiny_dir, tmp_path_factory):
    """A run stopped at step 2 of 6 (checkpoints at 2), with its data file beside it: both named
    relative to the working directory, so that a copy of the two is a run of its own."""
    from derta_mlx.train.config import TrainConfig
    from derta_mlx.train.job import run_training

    root = tmp_path_factory.mktemp("stopped")
    (root / "triples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TRIPLES))
    cfg = TrainConfig(model=str(tiny_dir("llama3")), data=["triples.jsonl"], iters=6, batch_size=2, save_every=2,
                      steps_per_report=1, probe_after=False, adapter_path="run")
    seen = []
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run_training(cfg, None, lambda message: None, lambda report: seen.append(report.step),
                     stop=lambda: bool(seen) and seen[-1] >= 2)
    finally:
        os.chdir(cwd)
    return root


SETUPS = {"run": lambda root, tmp: [shutil.copytree(root / "run", tmp / "run"),
                                    shutil.copy(root / "triples.jsonl", tmp / "triples.jsonl")]}


def _fill(value, tmp: Path, models) -> str:
    text = str(value).replace("{tmp}", str(tmp)).replace("{files}", str(FILES))
    while "{model:" in text:
        start = text.index("{model:")
        end = text.index("}", start)
        text = text[:start] + str(models(text[start + 7 : end])) + text[end + 1 :]
    return text


def _apply_edit(tmp: Path, edit: dict) -> None:
    path = tmp / edit["path"]
    if "old" in edit:
        text = path.read_text(encoding="utf-8")
        assert edit["old"] in text, f"edit: {edit['old']!r} not in {path}"
        path.write_text(text.replace(edit["old"], edit["new"]), encoding="utf-8")
    elif "write" in edit:
        path.write_text(edit["write"], encoding="utf-8")
    elif edit.get("mkdir"):
        path.mkdir(parents=True)
    elif edit.get("delete"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    else:
        raise AssertionError(f"edit {edit}: needs old/new, write or delete")


def snapshot(root: Path, changes=()) -> dict:
    """Every file under root with a hash of its bytes (directories as entries too). A run's .lock
    (the pid of its last claimant) and the case's allowed `changes` count only as present."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir() or path.name == ".lock" or rel in changes:
            found[rel] = "present"
        else:
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_clear_error_and_writes_nothing(case, tmp_path, monkeypatch, capsys, tiny_dir, request):
    from derta_mlx.cli.main import main

    tmp = tmp_path / "case"
    tmp.mkdir()
    models = lambda name: tiny_dir("llama3") if not name else request.getfixturevalue("broken_models")(name)  # noqa: E731
    for name in case.get("setup", []):
        SETUPS[name](request.getfixturevalue("stopped_run"), tmp)
    for edit in case.get("edits", []):
        _apply_edit(tmp, edit)
    argv = [_fill(arg.replace("{model}", "{model:}"), tmp, models) for arg in case["argv"]]
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DERTA_MLX_BLAS_CHECKED", "1")  # in-process: never restart pytest with a BLAS preloaded
    changes = case.get("changes", [])
    before = snapshot(tmp, changes)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == case.get("exit", 2), f"exit {code}\nstdout: {out}\nstderr: {err}"
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    for word in case["error"]:
        assert _fill(word, tmp, models) in errors[0], errors[0]
    if "where" in case:
        assert _fill(case["where"], tmp, models) + ":" in errors[0], errors[0]
    after = snapshot(tmp, changes)
    assert after == before, f"the command wrote or changed files: {sorted(set(after.items()) ^ set(before.items()))}"
