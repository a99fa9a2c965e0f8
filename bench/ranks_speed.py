"""Data parallel on one machine: `derta-mlx train` in one process against `--ranks 2` (ranks on
loopback, ring backend), same model, data, global batch and seed, run one after the other and
repeated (A B A B). Tokens/s is the global rate the trainer reports in metrics.jsonl (median
of the report rows after the first, which holds compilation and warm-up).

On a CPU the ranks share its cores, each with its share for BLAS; the gain comes from MLX's
element-wise operations, which run on one core per process.

Examples:

    python bench/ranks_speed.py                     # tiny LLaMA-3-shaped model, 12 steps
    python bench/ranks_speed.py --model smollm2 --iters 8
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derta_mlx.common.atomic import write_json  # noqa: E402  (results are written atomically)


def mild_triples(path: Path, n: int = 32) -> Path:
    path.write_text("".join(json.dumps({
        "question": f"How do I sneak snack number {i} from the jar?",
        "safe_response": "Sorry, I can't help with sneaking snacks. Ask first; you may well get one.",
        "harmful_response": "Sure! " + " ".join(f"Step {j}: wait until nobody looks, then move quietly."
                                                 for j in range(1, 2 + i % 6))}) + "\n" for i in range(n)))
    return path


def model_path(name: str) -> str:
    if name == "smollm2":
        return "smollm2-135m-4bit"
    from derta_mlx.testing.tiny import TinySpec, build_tiny_model
    from derta_mlx.testing.tokenizers import cache_root

    path = cache_root() / "bench" / "ranks-llama3-256"
    if not (path / "config.json").is_file():
        build_tiny_model(TinySpec(family="llama3", hidden_size=256, num_hidden_layers=4, intermediate_size=704,
                                  num_attention_heads=4, num_key_value_heads=2), path)
    return str(path)


def run(ranks: int, model: str, data: Path, out: Path, args) -> dict:
    command = [sys.executable, "-m", "derta_mlx", "train", "--model", model, "--data", str(data),
               "--iters", str(args.iters), "--batch-size", str(args.batch_size), "--max-seq-length", "256",
               "--no-probe-after", "--val-fraction", "0", "--steps-per-report", "2", "--save-every", "1000",
               "--out", str(out)]
    if ranks > 1:
        command[4:4] = ["--ranks", str(ranks)]
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_sec"] for r in rows[1:]] or [rows[0]["tokens_per_sec"]]
    return {"tokens_per_sec": statistics.median(rates), "peak_memory_gb": rows[-1]["peak_memory_gb"],
            "peak_memory_gb_per_rank": rows[-1].get("peak_memory_gb_per_rank", [rows[-1]["peak_memory_gb"]])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "ranks_speed.json"))
    args = parser.parse_args(argv)
    model = model_path(args.model)
    results = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        data = mild_triples(Path(tmp) / "triples.jsonl")
        for repeat in range(args.repeats):
            for ranks in results:
                result = run(ranks, model, data, Path(tmp) / f"run-{ranks}-{repeat}", args)
                results[ranks].append(result)
                print(f"  [{repeat + 1}/{args.repeats}] {ranks} rank(s): {result['tokens_per_sec']:.1f} tokens/s, "
                      f"peak {result['peak_memory_gb_per_rank']} GB", flush=True)
    rate = {r: statistics.median(x["tokens_per_sec"] for x in runs) for r, runs in results.items()}
    print(f"\n{args.model}, global batch {args.batch_size}, {args.iters} steps, {os.cpu_count()} CPU cores shared "
          f"by all ranks; medians of {args.repeats}")
    print(f"{'ranks':>5} {'tokens/s':>9} {'peak GB per rank':>22} {'vs 1 rank':>10}")
    for ranks, runs in results.items():
        peaks = ", ".join(f"{p:.3f}" for p in runs[-1]["peak_memory_gb_per_rank"])
        print(f"{ranks:>5} {rate[ranks]:>9.1f} {peaks:>22} {rate[ranks] / rate[1]:>9.2f}x")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"model": args.model, "settings": vars(args), "results": results,
                     "median_tokens_per_sec": rate, "ratio_2_vs_1": rate[2] / rate[1],
                     "platform": platform.platform(), "cpus": os.cpu_count()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
