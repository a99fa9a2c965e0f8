"""Calibration of `derta-mlx train --dry-run`: the memory estimate against the measured peak.

Each configuration runs in a fresh subprocess (so no allocator state or cache carries over):
load the model, `derta_mlx.train.trainer.prepare_model`, then `derta_mlx.train.trainer.train` for a few
steps on synthetic instances that all have exactly --max-seq-length tokens (so every batch is
batch x length, the shape the estimate assumes), and `mx.get_peak_memory()` after
`mx.reset_peak_memory()` (the loaded weights count: they are active memory when it is reset).
The table gives the estimate of `derta_mlx.train.memory`, the measured peak and the error
(estimate / measured - 1: positive means the estimate is on the safe side).

    python bench/memory_fit.py                 # every configuration, one after the other
    python bench/memory_fit.py --only smollm2-f32-4x256
    python bench/memory_fit.py --mac-table     # the estimate for the catalogue's big models on Macs
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derta_mlx.accel import blas as backend  # noqa: E402  (light: no mlx import)
from derta_mlx.common.atomic import write_json  # noqa: E402

# name: (model, settings); a few training steps each, small enough for a 2-core CPU
CONFIGS = {
    "smollm2-f32-4x256": ("smollm2-135m-4bit", dict(batch_size=4, max_seq_length=256, dequantize="yes")),
    "smollm2-f32-4x256-ckpt": ("smollm2-135m-4bit", dict(batch_size=4, max_seq_length=256, dequantize="yes",
                                                         grad_checkpoint=True)),
    "smollm2-f32-2x512-all": ("smollm2-135m-4bit", dict(batch_size=2, max_seq_length=512, dequantize="yes",
                                                        num_layers=-1)),
    "smollm2-4bit-2x128": ("smollm2-135m-4bit", dict(batch_size=2, max_seq_length=128, dequantize="no")),
    "smollm2-f32-8x128-rank32-8blocks": ("smollm2-135m-4bit", dict(batch_size=8, max_seq_length=128, dequantize="yes",
                                                                  lora_rank=32, num_layers=8)),
    "smollm2-f32-2x256-dora": ("smollm2-135m-4bit", dict(batch_size=2, max_seq_length=256, dequantize="yes",
                                                         fine_tune_type="dora")),
    "tiny-llama3-4x512": ("tiny-llama3", dict(batch_size=4, max_seq_length=512)),
    "tiny-llama3-2x128": ("tiny-llama3", dict(batch_size=2, max_seq_length=128)),
    "tiny-llama3-4x256-accum2": ("tiny-llama3", dict(batch_size=4, max_seq_length=256, grad_accumulation_steps=2)),
}
STEPS = 3  # the peak comes in step 2 (AdamW's moments exist from the first update on)
SLOW_STEPS = 2  # 4-bit kernels on a CPU are ~50x slower than float32 matmul


def synthetic_instances(n: int, length: int, vocab: int, seed: int = 0):
    """n instances of exactly `length` tokens, random ids, every position supervised (MLE, the first
    8 RTO): the worst case the estimate assumes, since the loss computes logits only at
    supervised positions (derta_mlx/models/logits.py)."""
    import numpy as np

    from derta_mlx.data.instances import MLE, RTO, Instance

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        inputs = rng.integers(0, vocab, size=length).astype(np.int32)
        targets = rng.integers(0, vocab, size=length).astype(np.int32)
        terms = np.full(length, MLE, dtype=np.int8)
        terms[:8] = RTO
        out.append(Instance(inputs, targets, terms, "helpful", "synthetic"))
    return out


def measure(name: str) -> dict:
    """One configuration, in this process: measured peak and the estimate."""
    import mlx.core as mx
    from mlx_lm import load

    from derta_mlx.models.arch import arch_from_dir
    from derta_mlx.models.loading import ensure_local, find_model
    from derta_mlx.train.config import TrainConfig
    from derta_mlx.train.memory import estimate_for_config
    from derta_mlx.train.trainer import prepare_model, train

    model_name, settings = CONFIGS[name]
    steps = SLOW_STEPS if settings.get("dequantize") == "no" else STEPS
    cfg = TrainConfig(model=model_name, iters=steps, steps_per_report=steps, steps_per_eval=10**9,
                      save_every=10**9, lr_schedule="constant", probe_after=False, **settings)
    path = ensure_local(find_model(model_name))
    arch = arch_from_dir(path)
    est = estimate_for_config(arch, cfg, device="cpu")
    model, _ = load(str(path), trust_remote_code=False, tokenizer_config={"trust_remote_code": False})
    model = prepare_model(model, cfg)["model"]
    mx.eval(model.parameters())
    weights = mx.get_active_memory()
    per_step = cfg.batch_size * cfg.grad_accumulation_steps
    instances = synthetic_instances(per_step * steps, cfg.max_seq_length, arch.vocab_size)
    mx.clear_cache()
    mx.reset_peak_memory()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train(model, instances, [], cfg, Path(tmp), "bench")
    peak = mx.get_peak_memory()
    return {"config": name, "model": model_name, "settings": settings, "steps": steps,
            "seconds": time.perf_counter() - started, "weights_gb": weights / 1e9,
            "measured_gb": peak / 1e9, "estimate_gb": est.total / 1e9, "estimate": est.as_dict(),
            "error": est.total / peak - 1}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), help="configurations to run (default all)")
    parser.add_argument("--one", choices=list(CONFIGS), help=argparse.SUPPRESS)  # the subprocess
    parser.add_argument("--mac-table", action="store_true",
                        help="print the markdown table of the estimate for the catalogue's 7B/8B/70B/MoE entries "
                             "on 16/32/64/128 GB Macs (Metal: the 4-bit base stays 4-bit); measures nothing")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "memory_fit.json"))
    args = parser.parse_args(argv)
    if args.mac_table:
        print(mac_table())
        return
    if args.one:
        print("RESULT " + json.dumps(measure(args.one)), flush=True)
        return
    backend.reexec_with_openblas(__file__)
    rows = []
    for name in args.only or CONFIGS:  # one at a time: the machine has 2 cores
        done = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True,
                              env=os.environ)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if done.returncode or line is None:
            print(f"{name}: failed\n{done.stderr[-2000:]}", flush=True)
            continue
        rows.append(json.loads(line[len("RESULT "):]))
        r = rows[-1]
        print(f"{name:<26} estimate {r['estimate_gb']:6.3f} GB  measured {r['measured_gb']:6.3f} GB  "
              f"error {r['error']:+6.1%}  ({r['seconds']:.0f} s)", flush=True)
    table = format_table(rows)
    print("\n" + table)
    import mlx.core as mx

    out = {"device": str(mx.default_device()), "platform": platform.platform(), "mlx": mx.__version__,
           "describe": backend.describe(), "table": table, "results": rows}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, out)
    print(f"wrote {path}")


MAC_MODELS = ("mistral-7b-4bit", "llama3-8b-4bit", "mixtral-8x7b-4bit", "llama3-70b-4bit")
MAC_GB = (16, 32, 64, 128)


def mac_table() -> str:
    """Estimated peak of the default run (batch 4 x 512, LoRA rank 8 on 16 blocks), without and
    with --grad-checkpoint, on Metal, against 75% of each Mac's unified memory."""
    from derta_mlx.models.arch import Arch
    from derta_mlx.models.catalogue import load_catalogue
    from derta_mlx.train.config import TrainConfig
    from derta_mlx.train.memory import GB, METAL_USABLE_SHARE, estimate, settings_for

    catalogue = load_catalogue()
    head = "| model | settings | estimated peak | " + " | ".join(f"{gb} GB Mac" for gb in MAC_GB) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(MAC_GB)]
    for name in MAC_MODELS:
        arch = Arch(**catalogue.get(name).arch)
        for checkpoint in (False, True):
            est = estimate(arch, settings_for(TrainConfig(grad_checkpoint=checkpoint), "gpu"))
            fits = ["fits" if est.total <= gb * GB * METAL_USABLE_SHARE else "no" for gb in MAC_GB]
            label = "--grad-checkpoint" if checkpoint else "defaults"
            lines.append(f"| {name} | {label} | {est.total / GB:.1f} GB | " + " | ".join(fits) + " |")
    return "\n".join(lines)


def format_table(rows) -> str:
    lines = ["| config | estimate GB | measured GB | error |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['estimate_gb']:.3f} | {r['measured_gb']:.3f} | {r['error']:+.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
