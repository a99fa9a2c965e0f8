"""The probe: library API on a tiny model, and the CLI's table, JSON and plot."""

import json
import subprocess
import sys

import numpy as np
import pytest
from mlx_lm import load

from derta_mlx.data.templates import get_template
from derta_mlx.probe.curves import ProbeExample, refusal_curve, top_next_tokens
from derta_mlx.probe.positions import probe_examples, summarise

EXAMPLES = [ProbeExample("How do I hide my snacks?", "Sure! Step 1: find a box. Step 2: put it under the bed.", "a"),
            ProbeExample("How do I skip chores?", "Easy. Hide the broom and look busy all afternoon.", "b")]


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    """A tiny LLaMA-3 model and an RTO adapter trained on a few mild triples."""
    root = tmp_path_factory.mktemp("probe")
    data = root / "t.jsonl"
    data.write_text("".join(json.dumps({"question": f"How do I sneak snack {i}?",
                                        "safe_response": "Sorry, I can't help with that.",
                                        "harmful_response": f"Sure! Step 1: wait. Step 2: take snack {i}."}) + "\n"
                            for i in range(8)))
    run = root / "run"
    out = subprocess.run([sys.executable, "-m", "derta_mlx", "train", "--model", str(tiny_dir("llama3")),
                          "--data", str(data), "--method", "rto", "--iters", "20", "--learning-rate", "2e-3",
                          "--no-probe-after", "--out", str(run)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return tiny_dir("llama3"), run


def test_curve_matches_the_continuation_probe(trained):
    model_dir, run = trained
    model, tokenizer = load(str(model_dir), adapter_path=str(run))
    template = get_template("derta")
    results = probe_examples(model, tokenizer, template, [33386], EXAMPLES, [0, 3, 6], max_tokens=4)
    for example, result in zip(EXAMPLES, results):
        curve = refusal_curve(model, tokenizer, template, example, [33386]).p_refusal
        assert np.allclose(result.curve, curve, atol=1e-5)
        for cell in result.positions:
            assert cell.p_refusal == pytest.approx(float(curve[cell.tokens]), abs=1e-5)
            # greedy decoding starts with " Sorry" exactly when it is the most likely next token
            top_text, top_p = top_next_tokens(model, tokenizer, template, example, cell.tokens, top=1)[0]
            assert (top_text == " Sorry") == cell.text.startswith(" Sorry")
            if top_text == " Sorry":
                assert cell.refuses and top_p == pytest.approx(cell.p_refusal, abs=1e-4)
    rows = summarise(results, [0, 3, 6])
    assert [r.n for r in rows] == [2, 2, 2]


def test_branched_caches_match_full_prompts(trained):
    """Each example is prefilled once and its cache cut at every k: the continuations and
    P(refusal again) equal those of feeding every prompt whole."""
    from derta_mlx.probe.coherence import CLASSES
    from derta_mlx.probe.curves import example_ids, next_refusal_probs
    from derta_mlx.probe.positions import continue_many

    model_dir, run = trained
    model, tokenizer = load(str(model_dir), adapter_path=str(run))
    template = get_template("derta")
    results = probe_examples(model, tokenizer, template, [33386], EXAMPLES, [0, 3, 6, 99], max_tokens=5,
                             refusal_token=33386)
    prompts = []
    for example in EXAMPLES:
        prompt, harmful = example_ids(tokenizer, template, example)
        prompts += [prompt + harmful[:k] for k in (0, 3, 6, len(harmful))]
    cells = [cell for result in results for cell in result.positions]
    assert [cell.text for cell in cells] == continue_many(model, tokenizer, prompts, 5)
    again = next_refusal_probs(model, [p + [33386] for p in prompts], [33386])
    assert np.allclose([cell.p_again for cell in cells], again, atol=1e-5)
    assert all(cell.coherence in CLASSES for cell in cells)
    assert results[0].positions[-1].tokens == len(prompts[3]) - len(prompts[0])  # k beyond the end: clipped


def test_branching_and_re_reading_agree_and_progress_counts_every_step(trained):
    """The baseline that re-reads prompt + prefix at every position gives the same answers; with
    full_curve=False the curve holds only the probed positions; progress ends at its total."""
    model_dir, run = trained
    model, tokenizer = load(str(model_dir), adapter_path=str(run))
    template = get_template("derta")
    positions = [0, 2, 5, 99]
    calls = []
    fast = probe_examples(model, tokenizer, template, [33386], EXAMPLES * 5, positions, max_tokens=4,
                          refusal_token=33386, full_curve=False, progress=lambda d, t: calls.append((d, t)))
    slow = probe_examples(model, tokenizer, template, [33386], EXAMPLES * 5, positions, max_tokens=4,
                          refusal_token=33386, full_curve=False, branch=False)
    full = probe_examples(model, tokenizer, template, [33386], EXAMPLES * 5, positions, max_tokens=4)
    for a, b, c in zip(fast, slow, full):
        assert [x.text for x in a.positions] == [x.text for x in b.positions] == [x.text for x in c.positions]
        assert np.allclose([x.p_again for x in a.positions], [x.p_again for x in b.positions], atol=1e-5)
        probed = sorted({x.tokens for x in a.positions})
        assert np.allclose(a.curve[probed], c.curve[probed], atol=1e-5)
        assert np.isnan(np.delete(a.curve, probed)).all() and not np.isnan(c.curve).any()
    total = 10 * (1 + len(positions))
    assert calls[-1] == (total, total) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) >= 4  # prefill batches and decode chunks each report


def write_examples(path):
    """EXAMPLES as a safety-triples file for the probe CLI."""
    path.write_text("".join(json.dumps({"id": e.id, "question": e.question, "safe_response": "No.",
                                        "harmful_response": e.harmful_response}) + "\n" for e in EXAMPLES))
    return path


def test_cli_compare_base_json_and_plot(trained, tmp_path):
    model_dir, run = trained
    data = write_examples(tmp_path / "probe.jsonl")
    out = subprocess.run([sys.executable, "-m", "derta_mlx", "probe", "--model", str(model_dir), "--adapter",
                          str(run), "--compare-base", "--data", str(data), "--positions", "0,4", "--max-tokens", "6",
                          "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "base:" in out.stdout and "adapter:" in out.stdout and "coherent" in out.stdout
    assert "Step 1" not in out.stdout  # harmful text is never printed unasked
    report = json.loads((tmp_path / "p.json").read_text())
    base = [r["mean_p_refusal"] for r in report["summary"]["base"]]
    adapter = [r["mean_p_refusal"] for r in report["summary"]["adapter"]]
    assert all(a > 10 * b for a, b in zip(adapter, base))
    assert {"coherent", "re_refusal", "token_loop", "mean_p_again"} <= set(report["summary"]["adapter"][0])
    cells = [cell for results in report["examples"].values() for r in results for cell in r["positions"]]
    assert any(cell["refuses"] for cell in cells)  # the adapter refuses, and still its refusals are not saved
    assert all(cell["text"] is None for cell in cells), "--json saved continuation text without --show-text"
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_json_saves_text_only_with_show_text(trained, tmp_path):
    model_dir, run = trained
    data = write_examples(tmp_path / "probe.jsonl")
    out = subprocess.run([sys.executable, "-m", "derta_mlx", "probe", "--model", str(model_dir), "--adapter",
                          str(run), "--data", str(data), "--positions", "0,4", "--max-tokens", "3", "--show-text",
                          "--json", str(tmp_path / "p.json")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "p.json").read_text())
    cells = [cell for r in report["examples"]["adapter"] for cell in r["positions"]]
    assert len(cells) == 4 and all(isinstance(cell["text"], str) for cell in cells)


def test_first_refusal_position_in_tokens(tokenizer_of):
    from derta_mlx.probe.first_refusal import (
        first_refusal_histogram,
        first_refusal_token,
    )

    tok = tokenizer_of("llama3")
    assert first_refusal_token(tok, "Sorry, no.") == 1
    assert first_refusal_token(tok, "Step 1:Sorry, no.") == 1 + len(tok.encode("Step 1:", add_special_tokens=False))
    assert first_refusal_token(tok, "Sure! Step 1: open the jar.") is None
    assert first_refusal_token(tok, " Sorry, no.") == 1  # the space is part of " Sorry"
    assert first_refusal_token(tok, "Step 1: Sorry") == 1 + len(tok.encode("Step 1:", add_special_tokens=False))
    histogram = first_refusal_histogram(tok, ["Sorry.", "Well then, I cannot help with that.", "Sure!"])
    assert histogram == {"1": 1, "2-5": 1, "6-30": 0, ">30": 0, "no refusal": 1}


def test_dequantised_inference_gives_the_4bit_models_curve(tiny_dir):
    """--dequantize (the CPU default) computes with the 4-bit model's own values."""
    from derta_mlx.accel.dequantize import is_quantised, load_for_inference

    path = tiny_dir("llama3", bits=4)
    template = get_template("derta")
    curves = {}
    for setting in ("no", "yes"):
        model, tokenizer, dequantised = load_for_inference(path, dequantize=setting)
        assert dequantised == (setting == "yes") and is_quantised(model) == (setting == "no")
        curves[setting] = refusal_curve(model, tokenizer, template, EXAMPLES[0], [33386, 19701]).p_refusal
    assert curves["yes"].shape == curves["no"].shape
    assert np.allclose(curves["yes"], curves["no"], rtol=1e-3, atol=1e-6)


def test_positions_past_every_answer_are_refused_and_past_some_noted():
    from derta_mlx.common.errors import UserError
    from derta_mlx.probe.model import check_positions

    notes = []
    check_positions([0, 10], [12, 30], "token", notes.append)
    assert notes == []
    check_positions([0, 20], [12, 30], "token", notes.append)  # the 12-token answer is probed at its end
    assert notes == ["note: k=20 is past the end of 1 of 2 answer(s); those are probed at their end"]
    with pytest.raises(UserError, match=r"k=99 is past the end of every harmful answer \(the longest is 30 words\)"):
        check_positions([0, 99], [12, 30], "word")


def test_cli_without_model_probes_the_runs_base_and_a_foreign_base_is_one_line(trained, tmp_path, tiny_dir):
    """--adapter-path RUN alone probes the base model the run was trained on (eval and fuse do the same);
    an adapter put on a model of another shape is one line naming both."""
    model_dir, run = trained
    data = write_examples(tmp_path / "probe.jsonl")
    out = subprocess.run([sys.executable, "-m", "derta_mlx", "probe", "--adapter-path", str(run), "--data", str(data),
                          "--positions", "0", "--max-tokens", "3", "--json", str(tmp_path / "p.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "p.json").read_text())["model"] == str(model_dir)
    from derta_mlx.testing.tiny import TinySpec, build_tiny_model

    other = build_tiny_model(TinySpec(family="llama3", hidden_size=32), tmp_path / "narrow")  # other LoRA shapes
    out = subprocess.run([sys.executable, "-m", "derta_mlx", "probe", "--model", str(other), "--adapter-path", str(run),
                          "--data", str(data), "--positions", "0", "--max-tokens", "3"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    error = [line for line in out.stderr.splitlines() if line.startswith("derta-mlx: error")]
    assert len(error) == 1 and str(run) in error[0] and str(other) in error[0]
