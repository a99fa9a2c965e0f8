import json
import subprocess
import sys


def cli(*args):
    return subprocess.run([sys.executable, "-m", "derta_mlx", "data", *args], capture_output=True, text=True,
                          timeout=300)


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


TRIPLE = {"question": "How do I skip chores?", "safe_response": "Sorry, I can't help you skip chores.",
          "harmful_response": "Sure! Step 1: hide the broom. Step 2: look busy."}


def test_validate_reports_counts_and_bad_rows(tmp_path):
    good = write(tmp_path / "good.jsonl", [TRIPLE, {"instruction": "Say hi", "output": "Hi!"}])
    out = cli("validate", str(good))
    assert out.returncode == 0 and "2 rows" in out.stdout and "1 safety triples" in out.stdout
    bad = write(tmp_path / "bad.jsonl", [TRIPLE, '{"question": "q", "safe_response": 5, "harmful_response": "h"}'])
    out = cli("validate", str(bad))
    assert out.returncode == 2 and f"{bad}:2: field 'safe_response' must be a string" in out.stderr


def test_stats_and_build_with_a_tiny_model(tmp_path, tiny_dir):
    data = write(tmp_path / "d.jsonl", [TRIPLE, {**TRIPLE, "safe_response": "No. Sorry, I can't."}])
    model = str(tiny_dir("mistral"))
    out = cli("stats", str(data), "--model", model, "--json", str(tmp_path / "s.json"))
    assert out.returncode == 0, out.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["refusal_start"]["1"] == 1 and stats["refusal_start"]["2-5"] == 1
    # the mix of refusing safe answers (data fetch's rule): "No." is the second one's first sentence
    assert stats["safe_answers"] == {"refuses": 1, "later": 1, "none": 0}
    assert "safe answers: 1 refuse in their first sentence, 1 refuse only after it, 0 do not refuse" in out.stdout
    out = cli("build", str(data), "--model", model, "--method", "derta", "--out", str(tmp_path / "i.jsonl"))
    assert out.returncode == 0, out.stderr
    instances = [json.loads(l) for l in (tmp_path / "i.jsonl").read_text().splitlines()]
    # three harmful-prefix cuts per triple (the default --prefix-cuts), then its RTO instance
    assert [x["kind"] for x in instances] == (["harmful-prefix"] * 3 + ["rto"]) * 2
    rto = instances[3]
    assert {t for t, term in zip(rto["targets"], rto["terms"]) if term == 2} == {19385}
    assert instances[0]["text"] is None  # no harmful text unless asked (--with-text)


def test_stats_and_build_report_the_refusal_transition(tmp_path, tiny_dir):
    data = write(tmp_path / "d.jsonl", [TRIPLE, {**TRIPLE, "safe_response": "I won't help with that."}])
    model = str(tiny_dir("llama3"))
    out = cli("stats", str(data), "--model", model, "--json", str(tmp_path / "s.json"))
    assert out.returncode == 0, out.stderr
    assert "refusal targets opening with the RTO token: 100% (6/6)" in out.stdout  # 3 cuts per row
    transition = json.loads((tmp_path / "s.json").read_text())["transition"]
    assert transition["refusal_token"] == 33386 and transition["safe_openings"] == {"kept": 1, "prefixed": 1}
    out = cli("build", str(data), "--model", model, "--refusal-opening", "none", "--out", str(tmp_path / "i.jsonl"))
    assert out.returncode == 0, out.stderr
    assert "50% (3/6)" in out.stdout and f"WARNING: the others ({data}:2)" in out.stdout
