"""The terminal UI under Textual's Pilot: every screen, a run launched from the form, a probe."""

import ast
import json
import shutil
from pathlib import Path

import pytest
from tui_support import run_app, train_run, wait_for, write_triples

ROOT = Path(__file__).resolve().parent.parent


def absolute_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_tui_imports_only_the_public_api():
    for path in sorted((ROOT / "tui").rglob("*.py")):
        for name in absolute_imports(path):
            if name.split(".")[0] == "derta_mlx":
                assert name == "derta_mlx.api", f"{path.relative_to(ROOT)} imports {name}"
    for path in sorted((ROOT / "derta_mlx").rglob("*.py")):
        if path == ROOT / "derta_mlx" / "cli" / "tui.py":
            continue  # the CLI command imports the UI when it runs
        assert not [n for n in absolute_imports(path) if n.split(".")[0] == "tui"], path


@pytest.fixture(scope="module")
def triples(tmp_path_factory):
    return write_triples(tmp_path_factory.mktemp("data") / "triples.jsonl")


@pytest.fixture(scope="module")
def finished_run(tiny_dir, triples, tmp_path_factory):
    return train_run(tiny_dir("mistral"), triples, tmp_path_factory.mktemp("runs") / "tiny-done")


def make_app(runs, start):
    from tui.app import DertaApp

    return DertaApp(runs_root=runs, start=start)


def test_function_keys_and_palette_move_between_screens(tmp_path):
    app = make_app(tmp_path / "runs", "models")

    async def body(pilot):
        for key, screen in (("f2", "TrainScreen"), ("f3", "RunsScreen"), ("f4", "ProbeScreen"),
                            ("f3", "RunsScreen"), ("1", "ModelsScreen"), ("3", "RunsScreen"), ("2", "TrainScreen")):
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen).__name__ == screen, key
        # on Train the run-name field has the cursor: digits and "?" are typed, F1 opens the help
        name = app.screen.query_one("#f-name")
        app.screen.set_focus(name)
        await pilot.press("4", "question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "TrainScreen" and name.value == "4?"
        await pilot.press("f1")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        text = str(app.screen.query_one("#help-text").render())
        assert "Everywhere" in text and "Launch" in text and "F1" in text
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "TrainScreen"
        app.screen.set_focus(None)
        await pilot.press("1")
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelsScreen"
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Go to Train", "Go to Runs", "Go to Probe", "Download or prepare the selected model"} <= set(titles)

    run_app(app, body, size=(80, 24))


def test_models_screen_lists_the_catalogue_and_builds_a_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("DERTA_MLX_MODELS_DIR", str(tmp_path / "models"))
    app = make_app(tmp_path / "runs", "models")

    async def body(pilot):
        from textual.widgets import DataTable

        table = app.screen.query_one(DataTable)
        names = [table.get_row_at(i)[0] for i in range(table.row_count)]
        assert "smollm2-135m-4bit *" in names and "mistral-7b-4bit" in names
        row = names.index("tiny-mistral")
        table.move_cursor(row=row)
        assert table.get_row_at(row)[1] == "no"
        await pilot.press("d")
        await wait_for(pilot, lambda: "yes" in str(table.get_row_at(row)[1]), 60, "the tiny model")
        assert (tmp_path / "models" / "tiny-mistral" / "config.json").is_file()
        assert "tiny-mistral" in str(app.screen.query_one("#model-detail").render())
        table.move_cursor(row=names.index("mistral-7b-4bit"))
        await pilot.press("d")  # offline and not cached: a clear error, nothing breaks
        await wait_for(pilot, lambda: any("HF_HUB_OFFLINE" in str(n.message) for n in app._notifications), 30,
                       "the offline error")

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    run_app(app, body)


def test_download_progress_counts_the_hub_cache_bytes(tmp_path, monkeypatch):
    from derta_mlx.api import cached_bytes

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    blobs = tmp_path / "models--org--name" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "abc.incomplete").write_bytes(b"x" * 1000)
    (blobs / "def").write_bytes(b"x" * 24)
    assert cached_bytes("org/name") == 1024 and cached_bytes("org/other") == 0


def set_inputs(screen, values):
    for widget_id, value in values.items():
        screen.query_one(f"#{widget_id}").value = value


async def launch_quick_run(pilot, screen, model, triples, **fields):
    """The Train form's quick-test preset on `model` and `triples`, with `fields` (f-NAME: value)
    on top, launched with F5."""
    screen.query_one("#f-preset").value = "quick test (5 steps)"
    await pilot.pause()
    set_inputs(screen, {"f-model": str(model), "f-data": str(triples), "f-max_seq_length": "64",
                        **{f"f-{name}": value for name, value in fields.items()}})
    await pilot.press("f5")


def test_train_form_reports_errors_next_to_the_fields(tmp_path):
    app = make_app(tmp_path / "runs", "train")

    async def body(pilot):
        screen = app.screen
        set_inputs(screen, {"f-iters": "many", "f-data": str(tmp_path / "missing.jsonl")})
        await pilot.press("f5")
        await pilot.pause()
        assert "whole number" in str(screen.query_one("#err-iters").render())
        set_inputs(screen, {"f-iters": "5"})
        await pilot.press("f5")
        await pilot.pause()
        assert "no such file" in str(screen.query_one("#err-data").render())
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"question": "q"}\n{"oops": 1}\n')
        set_inputs(screen, {"f-data": str(bad), "f-batch_size": "0"})
        await pilot.press("f5")
        await pilot.pause()
        assert "batch_size: must be >= 1" in str(screen.query_one("#err-batch_size").render())
        set_inputs(screen, {"f-batch_size": "2", "f-model": "no-such-model"})
        await pilot.press("f5")
        await pilot.pause()
        assert "unknown model" in str(screen.query_one("#err-model").render())
        assert f"{bad}:2" in str(screen.query_one("#err-data").render())
        # mixing ratios: checked as the CLI checks them, the files named without their ratio
        good = tmp_path / "good.jsonl"
        good.write_text('{"instruction": "Say hi", "output": "Hi!"}\n')
        set_inputs(screen, {"f-data": f"{good}:1 {tmp_path / 'gone.jsonl'}:3", "f-model": ""})
        await pilot.press("f5")
        await pilot.pause()
        assert f"no such file: {tmp_path / 'gone.jsonl'}" in str(screen.query_one("#err-data").render())
        set_inputs(screen, {"f-data": f"{good}:0"})
        await pilot.press("f5")
        await pilot.pause()
        assert "ratio after ':' must be a positive number" in str(screen.query_one("#err-data").render())
        form = screen.query_one("TrainForm")
        set_inputs(screen, {"f-name": "runs/mine"})  # as the placeholder spells it
        assert form.run_name() == "mine"
        set_inputs(screen, {"f-name": "elsewhere/mine", "f-data": str(good)})
        await pilot.press("f5")
        await pilot.pause()
        assert "a plain name" in str(screen.query_one("#err-name").render())
        assert not (tmp_path / "runs").exists()

    run_app(app, body)


def test_config_save_and_load_round_trip(tmp_path):
    app = make_app(tmp_path / "runs", "train")
    path = tmp_path / "run.yaml"

    async def body(pilot):
        screen = app.screen
        set_inputs(screen, {"f-iters": "7", "f-learning_rate": "0.002", "f-config": str(path)})
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "iters: 7" in path.read_text()
        set_inputs(screen, {"f-iters": "99"})
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert screen.query_one("#f-iters").value == "7"
        assert screen.query_one("#f-learning_rate").value == "0.002"

    run_app(app, body)


def test_form_refuses_nan_a_directory_to_save_to_and_a_non_utf8_data_file(tmp_path):
    app = make_app(tmp_path / "runs", "train")
    folder = tmp_path / "configs"
    folder.mkdir()
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"question": "caf\u00e9?", "safe_response": "No.", "harmful_response": "Yes."}\n'
                       .encode("latin-1"))

    async def body(pilot):
        screen = app.screen
        set_inputs(screen, {"f-learning_rate": "nan", "f-config": str(folder)})
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "is a directory" in str(screen.query_one("#err-config").render())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "latin1.jsonl"]  # no temp file left
        set_inputs(screen, {"f-config": str(tmp_path / "run.yaml")})
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "finite" in str(screen.query_one("#err-learning_rate").render())
        assert not (tmp_path / "run.yaml").exists()
        set_inputs(screen, {"f-learning_rate": "0.001", "f-data": str(latin1)})
        await pilot.press("f5")
        await pilot.pause()
        assert f"{latin1}:1" in str(screen.query_one("#err-data").render())
        assert not (tmp_path / "runs").exists()

    run_app(app, body)


def test_a_diverged_run_opens_without_crashing_the_chart(finished_run, tmp_path):
    runs = tmp_path / "runs"
    run = runs / "diverged"
    shutil.copytree(finished_run, run)
    rows = _rows(run) + [{"step": 99, "loss": float("inf"), "mle": float("nan"), "rto": None}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run / "status.json").write_text(json.dumps({"state": "failed", "pid": 1, "error": "the loss became inf at step 99"}))
    app = make_app(runs, "runs")

    async def body(pilot):
        table = app.screen.query_one("DataTable")
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert "loss became inf" in str(app.screen.query_one("#detail-summary").render())
        app.follow_run(run)
        await pilot.pause()
        await pilot.pause()
        assert type(app.screen).__name__ == "TrainScreen"

    run_app(app, body)


def test_launch_a_tiny_run_from_the_form_and_see_it_in_runs(tiny_dir, triples, tmp_path):
    runs = tmp_path / "runs"
    app = make_app(runs, "train")

    async def body(pilot):
        from textual.widgets import DataTable

        screen = app.screen
        await launch_quick_run(pilot, screen, tiny_dir("mistral"), triples, name="tiny")
        monitor = screen.query_one("#monitor")
        await wait_for(pilot, lambda: monitor.status == "finished", 120, "the run to finish")
        assert screen.query_one("#train-tabs").active == "train-monitor"
        assert "step 5/5" in str(screen.query_one("#run-title").render())
        assert "tok/s" in str(screen.query_one("#run-stats").render())
        assert any("Run directory" in line for line in screen.query_one("#run-log").lines)
        assert json.loads((runs / "tiny" / "status.json").read_text())["state"] == "finished"
        await pilot.press("f3")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, 10, "the run in Runs")
        row = table.get_row_at(0)
        assert row[0] == "tiny" and "finished" in str(row[1]) and row[4] == "5/5"

    run_app(app, body)


def test_stop_writes_a_checkpoint_and_resume_continues(tiny_dir, triples, tmp_path):
    runs = tmp_path / "runs"
    app = make_app(runs, "train")

    async def body(pilot):
        screen = app.screen
        await launch_quick_run(pilot, screen, tiny_dir("mistral"), triples, name="long", iters="2000",
                               save_every="1000")
        monitor = screen.query_one("#monitor")
        try:
            await stop_and_resume(pilot, monitor)
        finally:  # never leave a 2000-step run behind
            if monitor.process.poll() is None:
                monitor.process.kill()
                monitor.process.wait()

    async def stop_and_resume(pilot, monitor):
        await wait_for(pilot, lambda: monitor.status == "running" and monitor.rows_seen > 0, 120, "steps")
        await pilot.press("f6")
        await wait_for(pilot, lambda: monitor.status == "stopped", 60, "the stop")
        state = json.loads((runs / "long" / "status.json").read_text())
        assert state["state"] == "stopped" and (runs / "long" / "checkpoints" / "latest").is_file()
        stopped_at = state["step"]
        await pilot.press("f7")
        await wait_for(pilot, lambda: monitor.status == "running" and monitor.process.poll() is None, 120, "resume")
        await wait_for(pilot, lambda: max(r["step"] for r in _rows(runs / "long")) > stopped_at, 60, "new steps")
        await pilot.press("f6")
        await wait_for(pilot, lambda: monitor.status == "stopped", 60, "the second stop")

    run_app(app, body)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_runs_screen_shows_status_and_opens_a_run(finished_run, tmp_path):
    runs = finished_run.parent
    dead = runs / "tiny-dead"
    dead.mkdir(exist_ok=True)
    (dead / "config.yaml").write_text((finished_run / "config.yaml").read_text())
    (dead / "status.json").write_text(json.dumps({"state": "running", "pid": 2**22 + 12345}))
    (runs / "tiny-done" / "probe_after.json").write_text(json.dumps(
        {"positions": [0, 5], "rows": [{"position": 0, "refusal_rate": 1.0, "mean_p_refusal": 0.93, "n": 2},
                                       {"position": 5, "refusal_rate": 0.5, "mean_p_refusal": 0.61, "n": 2}]}))
    app = make_app(runs, "runs")

    async def body(pilot):
        from textual.widgets import DataTable

        table = app.screen.query_one(DataTable)
        rows = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(table.row_count)}
        assert "finished" in str(rows["tiny-done"][1]) and "failed" in str(rows["tiny-dead"][1])
        table.move_cursor(row=list(rows).index("tiny-done"))
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert type(detail).__name__ == "RunDetailScreen"
        assert "finished" in str(detail.query_one("#detail-summary").render())
        probe = detail.query_one("#detail-probe-table")
        assert probe.get_row_at(0) == ["0", "-", "-", "-", "100%", "-", "0.9300"]  # a file from before coherence
        assert "method: derta" in str(detail.query_one("#detail-config-text").render())
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "RunsScreen"

    run_app(app, body)


def test_probe_a_run_and_read_the_numbers(finished_run, triples, tiny_dir, tmp_path):
    app = make_app(finished_run.parent, "runs")

    async def body(pilot):
        app.probe_run(finished_run)
        await pilot.pause()
        screen = app.screen
        assert screen.query_one("#p-model").value == str(tiny_dir("mistral"))
        set_inputs(screen, {"p-data": str(triples), "p-positions": "0,3,6", "p-max": "4"})
        await pilot.click("#p-load")
        await pilot.pause()
        assert screen.query_one("#p-question").value == "How do I sneak cookie number 0 from the jar?"
        assert screen.query_one("#p-harmful").password  # hidden until revealed
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen.outcome is not None, 120, "the probe")
        table = screen.query_one("#p-table")
        assert table.row_count == 3
        cells = table.get_row_at(1)
        assert cells[0] == "3" and 0.0 <= float(cells[2]) <= 1.0 and 0.0 <= float(cells[4]) <= 1.0
        verdicts = ("coherent", "re-refusal", "token loop", "fragment", "complies")
        assert cells[3] in verdicts and cells[5] in verdicts
        assert all(c == "(hidden)" or c.startswith("…") for c in cells[6:])
        assert set(screen.outcome.cells) == {"base", "adapter"}
        topk = screen.query_one("#p-topk")
        await wait_for(pilot, lambda: topk.row_count == 5, 30, "top-k tokens")
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.cursor == 1, 5, "the cursor")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not screen.query_one("#p-harmful").password

    run_app(app, body)


def test_a_probe_can_be_cancelled_between_chunks(tiny_dir):
    from derta_mlx.api import ProbeExample
    from tui.probe_job import ModelCache, ProbeRequest, run_probe

    response = "Sure! " + " ".join(f"step {i}" for i in range(20))
    request = ProbeRequest(str(tiny_dir("mistral")), None, False, ProbeExample("q?", response), "", 1, "token", 2)
    calls = []  # progress reports: loading, then one per chunk of positions
    outcome = run_probe(request, ModelCache(), lambda *a: calls.append(a), lambda: len(calls) > 1)
    assert outcome.cancelled and len(outcome.positions) > 8
    assert len(outcome.cells["model"]) == 8  # the first chunk, then the cancel


def test_models_screen_imports_a_gguf_file(tmp_path, monkeypatch):
    from gguf_support import tiny_llama

    monkeypatch.setenv("DERTA_MLX_MODELS_DIR", str(tmp_path / "models"))
    gguf = tmp_path / "tiny.gguf"
    tiny_llama(gguf)
    app = make_app(tmp_path / "runs", "models")

    async def body(pilot):
        await pilot.press("g")
        assert app.focused.id == "gguf-path"
        set_inputs(app.screen, {"gguf-path": str(gguf), "gguf-out": str(tmp_path / "imported")})
        await pilot.click("#gguf-convert")
        await wait_for(pilot, lambda: any("wrote" in str(n.message) for n in app._notifications), 60, "the import")
        assert (tmp_path / "imported" / "config.json").is_file()

    run_app(app, body)


def test_a_launched_run_outlives_the_ui(tiny_dir, triples, tmp_path):
    import time

    runs = tmp_path / "runs"
    app = make_app(runs, "train")

    async def body(pilot):
        screen = app.screen
        await launch_quick_run(pilot, screen, tiny_dir("mistral"), triples, name="orphan", iters="40")
        await wait_for(pilot, lambda: screen.query_one("#monitor").status == "running", 120, "the start")

    run_app(app, body)  # the app exits here, with the run still going
    status = runs / "orphan" / "status.json"
    deadline = time.monotonic() + 120
    while json.loads(status.read_text())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert json.loads(status.read_text())["state"] == "finished"


def test_the_run_monitor_shows_the_probe_every_curve_with_the_best_marked():
    from tui.widgets.run_monitor import describe_probes

    assert describe_probes([{"step": 10, "loss": 1.0}]) == ""
    rows = [{"step": s, "probe": {"k": 10, "coherent": c, "over_refusal": o, "best": b}}
            for s, c, o, b in ((20, 0.5, 0.1, True), (40, 0.9, 0.1, True), (60, 0.95, 0.4, False))]
    line = describe_probes(rows)
    assert line.startswith("validation probe, coherent refusal at k=10 / over-refusal (* best):")
    assert "20: coh 50% over 10%  40: coh 90% over 10% *  60: coh 95% over 40%" in line


def test_the_run_detail_shows_ordinary_and_borderline_answers_before_and_after(tmp_path):
    from tui.screens.runs import helpfulness_summary

    assert helpfulness_summary(tmp_path) == ""
    side = {"rows": [], "helpfulness": {"n": 30, "answered": 0.5, "refused": 0.03},
            "borderline": {"overall": {"safe": {"n": 48}, "unsafe": {"n": 24}, "over_refusal": 4.2,
                                       "unsafe_refused": 8.3}}}
    (tmp_path / "probe_before.json").write_text(json.dumps(side))
    after = json.loads(json.dumps(side))
    after["helpfulness"]["refused"], after["borderline"]["overall"]["over_refusal"] = 0.1, 12.5
    (tmp_path / "probe_after.json").write_text(json.dumps(after))
    text = helpfulness_summary(tmp_path)
    assert "answered correctly 50% -> 50%, refused 3% -> 10%" in text
    assert "borderline (48 safe, 24 unsafe): safe over-refused 4% -> 12%, unsafe refused 8% -> 8%" in text
