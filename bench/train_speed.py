"""Training speed: derta-mlx's LoRA trainer against mlx-lm's own (`mlx_lm.tuner.trainer.train`).

Both trainers get the same model, the same token ids in the same padded batches and order,
the same LoRA layers (rank 8, scale 20, every linear layer of the last N blocks, the same
seeded initialisation), the same optimizer (AdamW, constant learning rate, built by
derta-mlx's `make_optimizer` and handed to both) and the same number of steps. The variants
run one after the other in one process, repeated (A B C A B C ...), and the table gives the
median tokens/s, seconds per step and peak memory, and the ratio derta-mlx / mlx-lm.

What differs is only what each trainer does per step: derta-mlx's two-term DeRTa loss
(MLE + RTO, batch-wide denominators) and its loop; mlx-lm's next-token loss over the same
supervised positions and its compiled step. Tokens/s counts real (unpadded) tokens, the same
for both, over the measured steps (after warm-up), timed from outside each trainer.

Models (--model, default all):
  smollm2       the embedded default, a 4-bit SmolLM2-135M converted from GGUF
  tiny          a random-init LLaMA-3-shaped model (hidden 512, 4 blocks, the real 128k
                vocabulary), float32
  tiny-4bit     the same model quantised to 4 bits
On a CPU, derta-mlx trains a 4-bit base with its dequantised float32 weights (--dequantize
auto), so quantised models are measured both ways and against mlx-lm on both bases:
  mlx-lm (4-bit base)         what `mlx_lm.lora` does with the model as it is
  derta-mlx dequantize=no     the same 4-bit kernels
  mlx-lm (float32 base)       mlx-lm on the dequantised model (equal settings for the next)
  derta-mlx dequantize=yes    derta-mlx's CPU default
The 4-bit kernels are ~50x slower than OpenBLAS float32 matmul on a CPU, so variants that use
them run --quantised-steps measured steps (default 3 on a CPU) after one warm-up step.

--profile also times the parts of one step on a fixed batch (forward, loss, the step with and
without mx.compile for both trainers): where the time goes.

Examples:

    python bench/train_speed.py                  # all three models (about 40 min on 2 CPU cores)
    python bench/train_speed.py --model tiny --steps 20 --batch-size 4 --max-seq-length 256
    python bench/train_speed.py --quick          # a 64-wide tiny model, 2 steps: under a minute
"""

import argparse
import contextlib
import gc
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train_profile import format_profile, profile_step  # noqa: E402
from train_setup import (  # noqa: E402
    ModelChoice,
    Variant,
    build_data,
    load_prepared,
    mlx_lm_batch,
    resolve_model,
    variants_for,
)

from derta_mlx.accel import blas as backend  # noqa: E402  (light: no mlx import)
from derta_mlx.common.atomic import write_json  # noqa: E402


def run_once(model: ModelChoice, variant: Variant, instances, cfg, warmup: int, steps: int) -> dict:
    import mlx.core as mx

    from derta_mlx.data.batches import BatchOrder, pad_batch
    from derta_mlx.train.trainer import make_optimizer

    cfg = replace(cfg, iters=warmup + steps + 1, steps_per_report=warmup + steps, save_every=10**9,
                  steps_per_eval=10**9)
    order = BatchOrder(len(instances), cfg.batch_size, cfg.seed)
    chosen = [[instances[i] for i in order.indices(k)] for k in range(warmup + steps)]
    tokens = sum(sum(len(x) for x in rows) for rows in chosen[warmup:])
    padded = sum(pad_batch(rows).inputs.size for rows in chosen[warmup:])

    net, param_bytes = load_prepared(model, variant, cfg)
    marks: List[float] = []  # the start of every step, and the end of the last
    losses: List[float] = []
    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()
    with tempfile.TemporaryDirectory() as tmp:
        if variant.trainer == "derta-mlx":
            from derta_mlx.train.trainer import train

            def stop() -> bool:  # the loop asks before every step
                marks.append(time.perf_counter())
                return len(marks) > warmup + steps

            def report(event) -> None:
                if event.kind == "train":
                    losses.append(event.values["loss"])

            train(net, instances, [], cfg, Path(tmp), "bench", on_report=report, stop_requested=stop)
        else:
            from mlx_lm.tuner.callbacks import TrainingCallback
            from mlx_lm.tuner.trainer import TrainingArgs
            from mlx_lm.tuner.trainer import train as mlx_lm_train

            def iterate_batches(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
                for rows in chosen:
                    marks.append(time.perf_counter())
                    yield mlx_lm_batch(pad_batch(rows), rows)
                marks.append(time.perf_counter())  # asked for one more: the last step is done

            class Losses(TrainingCallback):
                def on_train_loss_report(self, info):
                    losses.append(info["train_loss"])

            args = TrainingArgs(batch_size=cfg.batch_size, iters=cfg.iters, steps_per_report=cfg.steps_per_report,
                                steps_per_save=10**9, max_seq_length=cfg.max_seq_length + 1,
                                adapter_file=str(Path(tmp) / "adapters.safetensors"))
            with contextlib.redirect_stdout(io.StringIO()):  # its progress display
                mlx_lm_train(net, make_optimizer(cfg), list(range(len(instances))), None, args,
                             iterate_batches=iterate_batches, training_callback=Losses())
    peak = mx.get_peak_memory()
    assert len(marks) == warmup + steps + 1, (variant, len(marks))
    seconds = marks[-1] - marks[warmup]
    del net
    gc.collect()
    mx.clear_cache()
    return {"tokens_per_sec": tokens / seconds, "seconds_per_step": seconds / steps, "tokens": tokens,
            "padded_tokens": padded, "peak_memory_gb": peak / 1e9, "parameter_gb": param_bytes / 1e9,
            "own_loss": losses[0] if losses else None}


# --- the benchmark -----------------------------------------------------------------------------


def median_row(model: str, variant: Variant, runs: List[dict], warmup: int, steps: int) -> dict:
    return {
        "model": model, "variant": variant.label, "trainer": variant.trainer, "base": variant.base,
        "dequantize": variant.dequantize, "warmup_steps": warmup, "steps": steps,
        "tokens_per_sec": statistics.median(r["tokens_per_sec"] for r in runs),
        "seconds_per_step": statistics.median(r["seconds_per_step"] for r in runs),
        "peak_memory_gb": statistics.median(r["peak_memory_gb"] for r in runs),
        "parameter_gb": runs[0]["parameter_gb"], "tokens_per_run": runs[0]["tokens"],
        "padded_tokens_per_run": runs[0]["padded_tokens"],
        # each trainer's own objective over the run's steps (DeRTa's vs next-token): not comparable
        "own_loss": runs[0]["own_loss"],
        "runs": runs,
    }


def add_ratios(rows: List[dict]) -> None:
    """ratio = derta-mlx tokens/s / mlx-lm tokens/s on the same model and base weights."""
    for row in rows:
        ref = next((r for r in rows if r["trainer"] == "mlx-lm" and r["model"] == row["model"]
                    and r["base"] == row["base"]), None)
        row["ratio_vs_mlx_lm"] = row["tokens_per_sec"] / ref["tokens_per_sec"] if ref else None


def format_table(rows: List[dict]) -> str:
    head = f"{'model':<16} {'trainer':<26} {'base weights':<18} {'steps':>5} {'tokens/s':>9} {'s/step':>8} " \
           f"{'peak GB':>8} {'derta/mlx-lm':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = "" if r["trainer"] == "mlx-lm" else f"{r['ratio_vs_mlx_lm']:.2f}x"
        lines.append(f"{r['model']:<16} {r['variant']:<26} {r['base']:<18} {r['steps']:>5} {r['tokens_per_sec']:>9.1f} "
                     f"{r['seconds_per_step']:>8.3f} {r['peak_memory_gb']:>8.3f} {ratio:>12}")
    for model in dict.fromkeys(r["model"] for r in rows):
        ours = next((r for r in rows if r["model"] == model and r["variant"] == "derta-mlx dequantize=yes"), None)
        theirs = next((r for r in rows if r["model"] == model and r["trainer"] == "mlx-lm" and r["base"] == "4-bit"), None)
        if ours and theirs:
            lines.append(f"{model}: each tool's CPU default (derta-mlx dequantize=auto -> yes vs mlx-lm on the 4-bit "
                         f"base): {ours['tokens_per_sec'] / theirs['tokens_per_sec']:.1f}x")
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", choices=["all", *MODELS],
                        help="which model; all (default) = smollm2, tiny, tiny-4bit")
    parser.add_argument("--steps", type=int, default=20, help="measured steps per run (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps per run, not measured (default 3)")
    parser.add_argument("--quantised-steps", type=int, default=None,
                        help="measured steps of the variants that use 4-bit kernels (after 1 warm-up step); "
                             "default 3 on a CPU, --steps on a GPU")
    parser.add_argument("--no-4bit-kernels", action="store_true",
                        help="leave out the variants that train on the 4-bit weights (slow on a CPU)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=16, help="LoRA on the last N blocks (default 16)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant, interleaved (default 2)")
    parser.add_argument("--triples", type=int, default=48, help="synthetic mild triples, 2 instances each")
    parser.add_argument("--profile", action="store_true",
                        help="also time the parts of one step (forward, loss, step with and without "
                             "mx.compile for both trainers) on a fixed batch")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run in under a minute: a 64-wide tiny model (float32 and 4-bit), "
                             "2 measured steps, batch 2, length 64")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "train_speed.json"),
                        help="where to write the results (default bench/results/train_speed.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.model = "quick"
        args.steps = args.quantised_steps = 2
        args.warmup, args.batch_size, args.max_seq_length, args.triples, args.num_layers = 1, 2, 64, 8, 2
    return args


MODELS = ["smollm2", "tiny", "tiny-4bit", "tiny-quick", "tiny-quick-4bit"]
GROUPS = {"all": ["smollm2", "tiny", "tiny-4bit"], "quick": ["tiny-quick", "tiny-quick-4bit"]}


def main(argv=None) -> None:
    backend.reexec_with_openblas(__file__)
    args = parse_args(argv)
    import mlx.core as mx

    from derta_mlx.train.config import TrainConfig

    blas = backend.describe()
    print(blas, flush=True)
    on_cpu = mx.default_device() == mx.cpu
    quantised_steps = args.quantised_steps or (min(args.steps, 3) if on_cpu else args.steps)
    cfg = TrainConfig(batch_size=args.batch_size, max_seq_length=args.max_seq_length, num_layers=args.num_layers,
                      learning_rate=args.learning_rate, lr_schedule="constant", lora_rank=8, lora_scale=20.0,
                      lora_dropout=0.0, seed=0)
    notes, rows, profiles = [], [], []
    started = time.perf_counter()
    for name in GROUPS.get(args.model, [args.model]):
        model = resolve_model(name, lambda message: (print(message, flush=True), notes.append(message)))
        if model is None:
            continue
        instances, stats = build_data(model, cfg, args.triples)
        lengths = sorted(len(x) for x in instances)
        print(f"{name}: {model.path}; {len(instances)} instances {dict(stats.kinds)}, "
              f"{lengths[0]}-{lengths[-1]} tokens (median {lengths[len(lengths) // 2]})", flush=True)
        variants = [v for v in variants_for(model) if not (args.no_4bit_kernels and v.slow)]
        plan = {v: (1, quantised_steps) if v.slow else (args.warmup, args.steps) for v in variants}
        runs = {v: [] for v in variants}
        for repeat in range(args.repeats):  # A B C A B C: drift in machine speed hits all alike
            for variant in variants:
                result = run_once(model, variant, instances, cfg, *plan[variant])
                runs[variant].append(result)
                print(f"  [{repeat + 1}/{args.repeats}] {variant.label:<26} {variant.base:<18} "
                      f"{result['tokens_per_sec']:8.1f} tokens/s  {result['seconds_per_step']:.3f} s/step  "
                      f"peak {result['peak_memory_gb']:.3f} GB", flush=True)
        rows.extend(median_row(name, v, runs[v], *plan[v]) for v in variants)
        if args.profile:
            profiles.append(profile_step(model, instances, cfg, reps=max(5, args.repeats)))
            print(format_profile(profiles[-1]), flush=True)
    add_ratios(rows)
    settings = (f"batch {args.batch_size}, max length {args.max_seq_length}, LoRA rank 8 scale 20 on the last "
                f"{args.num_layers} blocks, AdamW lr {args.learning_rate}, medians of {args.repeats} interleaved "
                f"runs; {blas}")
    table = format_table(rows)
    print(f"\n{settings}\n{table}")
    if profiles:
        print("\n" + "\n".join(format_profile(p) for p in profiles))
    preloaded = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if "openblas" in p]
    out = {
        "blas": "OpenBLAS" if preloaded else "MLX bundled reference BLAS", "blas_library": preloaded[0] if preloaded else None,
        "describe": blas, "device": str(mx.default_device()), "platform": platform.platform(), "cpus": os.cpu_count(),
        "mlx": mx.__version__, "mlx_lm": __import__("mlx_lm").__version__,
        "settings": {**{k: v for k, v in vars(args).items() if k != "json"}, "quantised_steps": quantised_steps},
        "notes": notes, "wall_seconds": time.perf_counter() - started, "table": table, "results": rows,
        "profiles": profiles,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
