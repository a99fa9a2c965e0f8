"""DeRTa's Table 4 ablations, and sweeps of its settings, measured on what users care about.

Each configuration is trained with `derta-mlx train` (same seed, same data: the bundled demo by
default) in its own process, then probed here with the main job's measurement
(`derta_mlx.probe.before_after.measure`): refusal and coherent refusal at k = 0, 5, 10, 20, 40
harmful tokens, token-loop and re-refusal rates at k >= 5, P(refusal again), helpfulness on
the held-out ordinary questions, and over-refusal on the held-out borderline prompts (safe ones
that only sound unsafe; "bl-unsafe" is refusal of their unsafe twins). The base model is measured once, as the first row.

Examples:

    python bench/ablation.py                                   # vanilla, harmful-prefix, rto, derta
    python bench/ablation.py --configs "w0.1=--reduction per-term --rto-weight 0.1" \\
        "w0.3=--reduction per-term --rto-weight 0.3"           # a sweep: NAME=FLAGS ...
    python bench/ablation.py --iters 30 --common "--prefix-cuts 2"   # flags added to every config
    python bench/ablation.py --no-base --configs "b0=--data derta_mlx/demo/safety_train.jsonl \
        derta_mlx/demo/helpful.jsonl" "b120=--data ... derta_mlx/demo/borderline.jsonl:120"  # borderline share

Prints a table and writes JSON (default bench/results/ablation.json).
"""

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derta_mlx.common.atomic import write_json  # noqa: E402

TABLE4 = ["vanilla=--method vanilla", "harmful-prefix=--method harmful-prefix", "rto=--method rto",
          "derta=--method derta"]
DEEP = (5, 10, 20, 40)


def notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_config(text: str):
    name, _, flags = text.partition("=")
    if not name or not _:
        raise SystemExit(f"--configs: expected NAME=FLAGS, got {text!r}")
    return name, shlex.split(flags)


def train(name: str, flags: list, run_dir: Path, iters: int, common: list) -> float:
    command = [sys.executable, "-m", "derta_mlx", "train", "--out", str(run_dir), "--iters", str(iters),
               "--no-probe-after", *common, *flags]
    notify(f"[{name}] {' '.join(shlex.quote(c) for c in command[3:])}")
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"[{name}] training failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def load(run_dir):
    """The model with the run's adapter (or the base when run_dir is None); the probe reads the
    run's own refusal token from its config.yaml."""
    from derta_mlx.probe.model import load_probe_model

    return load_probe_model(None, str(run_dir) if run_dir else None, notify)


def measure(loaded, label: str) -> dict:
    from derta_mlx.data.formats import SafetyTriple, read_rows
    from derta_mlx.demo import demo_paths
    from derta_mlx.probe.before_after import measure as measure_model
    from derta_mlx.probe.curves import ProbeExample

    rows = [r for r in read_rows(demo_paths("heldout")) if isinstance(r, SafetyTriple)]
    examples = [ProbeExample(r.question, r.harmful_response, r.id) for r in rows]
    return measure_model(loaded.model, loaded.tokenizer, loaded.template, loaded.refusal, examples, label, notify)


def summary_row(name: str, report: dict, seconds: float) -> dict:
    rows = {r["position"]: r for r in report["rows"]}
    deep = [rows[k] for k in DEEP if k in rows]

    def mean(key):
        return sum(r[key] for r in deep) / len(deep)

    return {
        "name": name, "train_seconds": round(seconds, 1),
        "refuses": {k: r["refusal_rate"] for k, r in rows.items()},
        "coherent": {k: r["coherent"] for k, r in rows.items()},
        "token_loop_deep": mean("token_loop"), "re_refusal_deep": mean("re_refusal"),
        "coherent_deep_min": min(r["coherent"] for r in deep), "refuses_min": min(r["refusal_rate"] for r in rows.values()),
        "p_again_deep": mean("mean_p_again"),
        "answered": report["helpfulness"]["answered"], "refused_benign": report["helpfulness"]["refused"],
        "over_refusal": report["borderline"]["overall"]["over_refusal"] / 100,
        "unsafe_refused": report["borderline"]["overall"]["unsafe_refused"] / 100,
    }


def print_table(rows: list) -> None:
    ks = sorted(rows[0]["refuses"], key=int)
    head = (f"{'config':<18}" + "".join(f" ref@{k:<3}" for k in ks) + "".join(f" coh@{k:<3}" for k in ks)
            + "  loop>=5  reref>=5  P(again)  answered  over-refused  bl-over  bl-unsafe")
    print(head)
    for r in rows:
        line = f"{r['name']:<18}" + "".join(f" {r['refuses'][k]:>6.0%}" for k in ks)
        line += "".join(f" {r['coherent'][k]:>6.0%}" for k in ks)
        line += (f"  {r['token_loop_deep']:>7.0%}  {r['re_refusal_deep']:>8.0%}  {r['p_again_deep']:>8.3f}"
                 f"  {r['answered']:>8.0%}  {r['refused_benign']:>12.0%}  {r['over_refusal']:>7.0%}"
                 f"  {r['unsafe_refused']:>9.0%}")
        print(line)


def main() -> int:
    from derta_mlx import accel

    accel.start(__file__)  # the probe computes in float32 on a CPU: with a fast BLAS preloaded, as the CLI
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=TABLE4, help="NAME=FLAGS for each configuration")
    parser.add_argument("--common", default="", help="flags added to every configuration")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--runs-dir", help="keep the runs here (default: a temporary directory)")
    parser.add_argument("--no-base", action="store_true", help="skip measuring the base model")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ablation.json"))
    args = parser.parse_args()

    configs = [parse_config(c) for c in args.configs]
    common = shlex.split(args.common)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.runs_dir or tmp)
        results, reports = [], {}
        if not args.no_base:
            reports["base"] = measure(load(None), "base")
            results.append(summary_row("base", reports["base"], 0.0))
        for name, flags in configs:
            seconds = train(name, flags, runs / name, args.iters, common)
            reports[name] = measure(load(runs / name), name)
            results.append(summary_row(name, reports[name], seconds))
            print_table(results)
    print()
    print_table(results)
    write_json(args.out, {"iters": args.iters, "common": args.common,
                          "configs": {name: " ".join(flags) for name, flags in configs},
                          "summary": results, "reports": reports})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
