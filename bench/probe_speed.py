"""Probe speed, two comparisons side by side in one process (interleaved, repeated, medians).

Default (`--mode main-job`): the main job's before/after probe (30 held-out demo questions,
positions 0/5/10/20/40, 16 greedy tokens each, P(again)), run as `derta_mlx.probe.before_after` runs
it: each question prefilled once and its KV cache branched at every position, against
re-reading prompt + harmful prefix at every position (`probe_examples(..., branch=False)`, what
the probe did before). Both give the same continuations, checked here.

`--mode curve`: the teacher-forced refusal curve against generating at every position.
For one mild example whose harmful response is T tokens long, P(refusal) at every prefix
length k = 0..T comes from one forward pass (`derta_mlx.probe.curves.refusal_curves`). The
alternative is what a prefilling-attack evaluation does: feed the prompt plus the first k
harmful tokens and decode N tokens, at each of the T+1 positions. This times both, side by
side in one process (curve, batched generation, one-by-one generation, interleaved and
repeated), and prints the ratios.

Examples:

    python bench/probe_speed.py                      # the main job's probe, embedded model (~6 min)
    python bench/probe_speed.py --mode curve         # T=64, N=16 (~3 min)
    python bench/probe_speed.py --mode curve --model tiny --tokens 128 --max-tokens 32
    python bench/probe_speed.py --mode curve --sequential   # also one position at a time (~10 min more)
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derta_mlx.common.atomic import write_json  # noqa: E402  (results are written atomically)

# A mild, non-actionable stand-in for a harmful answer, long enough for any T we time.
RESPONSE = " ".join(
    f"Step {i}: wait until nobody is looking, walk quietly to the kitchen and take one more cookie "
    f"from the jar on the shelf." for i in range(1, 60)
)
QUESTION = "How do I sneak extra cookies from the jar?"


def load_model(name: str, dequantize: str, notify):
    """(model, tokenizer, template, refusal ids) of the embedded default or a tiny model."""
    from derta_mlx.accel.dequantize import load_for_inference
    from derta_mlx.data.refusal_token import resolve_refusal
    from derta_mlx.data.templates import get_template
    from derta_mlx.models.loading import ensure_local, find_model

    if name == "tiny":
        from derta_mlx.testing.tiny import tiny_model_dir

        path, template, rule = tiny_model_dir("llama3"), "derta", "auto"
    else:
        ref = find_model(None)
        path, template, rule = ensure_local(ref, notify), ref.template, ref.refusal_rule
    model, tokenizer, _ = load_for_inference(path, dequantize=dequantize)
    refusal = resolve_refusal(tokenizer, rule)
    ids = refusal.probe_ids
    return model, tokenizer, get_template(template, tokenizer), ids, str(path)


def response_of_length(tokenizer, template, tokens: int):
    """The bench example cut at the first word boundary where it reaches `tokens` tokens."""
    from derta_mlx.probe.curves import ProbeExample, example_ids

    words = RESPONSE.split(" ")
    for n in range(1, len(words) + 1):
        example = ProbeExample(QUESTION, " ".join(words[:n]), "bench")
        if len(example_ids(tokenizer, template, example)[1]) >= tokens:
            return example
    raise SystemExit(f"the bench response is shorter than {tokens} tokens")


def main(argv=None) -> None:
    from derta_mlx.accel import blas as backend

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["main-job", "curve"], default="main-job")
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--tokens", type=int, default=64, help="T: harmful response length in tokens")
    parser.add_argument("--max-tokens", type=int, default=16, help="N: tokens decoded per position")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dequantize", choices=("auto", "yes", "no"), default="auto",
                        help="as `derta-mlx probe --dequantize` (auto: float32 values on a CPU)")
    parser.add_argument("--sequential", action="store_true",
                        help="also generate one position at a time (slow: about 2 s a position on 2 CPU cores)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "probe_speed.json"))
    args = parser.parse_args(argv)
    backend.reexec_with_openblas(__file__)

    import mlx.core as mx

    from derta_mlx.probe.curves import example_ids, refusal_curves
    from derta_mlx.probe.positions import continue_many

    model, tokenizer, template, refusal_ids, path = load_model(args.model, args.dequantize, lambda m: print(m, flush=True))
    model.eval()
    if args.mode == "main-job":
        return main_job(args, model, tokenizer, template, refusal_ids, path)
    example = response_of_length(tokenizer, template, args.tokens)
    prompt, harmful = example_ids(tokenizer, template, example)
    positions = [prompt + harmful[:k] for k in range(len(harmful) + 1)]

    def curve():
        return refusal_curves(model, tokenizer, template, [example], refusal_ids)[0].p_refusal

    def batched():
        return continue_many(model, tokenizer, positions, max_tokens=args.max_tokens)

    def sequential():
        return [continue_many(model, tokenizer, [p], max_tokens=args.max_tokens)[0] for p in positions]

    variants = {"teacher-forced curve (1 forward)": curve,
                f"generate {args.max_tokens} tokens at each position, batched": batched}
    if args.sequential:
        variants[f"generate {args.max_tokens} tokens at each position, one by one"] = sequential
    times = {name: [] for name in variants}
    for name, run in variants.items():  # warm-up: compile kernels, fill the allocator cache
        run()
    for _ in range(args.repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            out = run()
            mx.eval(mx.array(0))
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    curve_s = median["teacher-forced curve (1 forward)"]

    blas = backend.describe()
    print(f"\n{args.model} ({path}); T = {len(harmful)} harmful tokens, {len(positions)} positions, "
          f"N = {args.max_tokens}; median of {args.repeats}; {blas}")
    head = f"{'method':<52} {'seconds':>9} {'vs curve':>9}"
    print(head + "\n" + "-" * len(head))
    for name, seconds in median.items():
        print(f"{name:<52} {seconds:>9.3f} {seconds / curve_s:>8.1f}x")
    result = {
        "model": args.model, "model_path": path, "T": len(harmful), "positions": len(positions),
        "max_tokens": args.max_tokens, "dequantize": args.dequantize, "repeats": args.repeats, "median_seconds": median, "runs": times,
        "speedup_vs_batched": median[f"generate {args.max_tokens} tokens at each position, batched"] / curve_s,
        "describe": blas, "device": str(mx.default_device()), "platform": platform.platform(),
        "cpus": os.cpu_count(), "mlx": mx.__version__,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(f"wrote {out}")


def timed(variants: dict, repeats: int) -> dict:
    """Median seconds of each variant: one warm-up round, then `repeats` interleaved rounds."""
    import mlx.core as mx

    times = {name: [] for name in variants}
    outputs = {name: run() for name, run in variants.items()}  # warm-up: compile, fill the allocator cache
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            mx.eval(mx.array(0))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times, outputs


def main_job(args, model, tokenizer, template, refusal_ids, path) -> None:
    import mlx.core as mx

    from derta_mlx.accel import blas as backend
    from derta_mlx.demo import demo_paths
    from derta_mlx.probe.before_after import CONTINUATION_TOKENS, PROBE_POSITIONS
    from derta_mlx.probe.model import read_probe_examples
    from derta_mlx.probe.positions import probe_examples

    examples = read_probe_examples(demo_paths("heldout")[0])  # the main job's held-out questions
    token = refusal_ids[0]

    def probe(branch):
        return lambda: probe_examples(model, tokenizer, template, refusal_ids, examples, PROBE_POSITIONS,
                                      max_tokens=CONTINUATION_TOKENS, refusal_token=token, full_curve=False,
                                      branch=branch)

    before, after = "re-read prompt + prefix at each position", "prefill once, branch the KV cache"
    median, runs, outputs = timed({before: probe(False), after: probe(True)}, args.repeats)
    same = [c.text for r in outputs[before] for c in r.positions] == [c.text for r in outputs[after] for c in r.positions]
    blas = backend.describe()
    print(f"\n{args.model} ({path}); the main job's probe: {len(examples)} questions x positions "
          f"{list(PROBE_POSITIONS)}, {CONTINUATION_TOKENS} tokens, P(again); median of {args.repeats}; {blas}")
    head = f"{'method':<44} {'seconds':>9} {'speed-up':>9}"
    print(head + "\n" + "-" * len(head))
    for name in (before, after):
        print(f"{name:<44} {median[name]:>9.1f} {median[before] / median[name]:>8.2f}x")
    print(f"same continuations both ways: {'yes' if same else 'NO'}")
    result = {"mode": "main-job", "model": args.model, "model_path": path, "questions": len(examples),
              "positions": list(PROBE_POSITIONS), "max_tokens": CONTINUATION_TOKENS, "repeats": args.repeats,
              "median_seconds": median, "runs": runs, "speedup": median[before] / median[after],
              "same_continuations": same, "describe": blas, "device": str(mx.default_device()),
              "platform": platform.platform(), "cpus": os.cpu_count(), "mlx": mx.__version__}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
