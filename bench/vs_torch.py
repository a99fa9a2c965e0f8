"""Training speed: derta-mlx's trainer against PyTorch + PEFT on the same LoRA job.

Both sides train the same random-init LLaMA (the same weights: MLX builds them, PyTorch loads
them, and the first step's loss is compared), with LoRA rank 8 on every linear layer of every
block (q k v o gate up down; not the LM head), AdamW at a constant learning rate, the same
batches of random token ids (batch x length, every position supervised) and the same number of
steps. Each side runs in its own process, one after the other, repeated (A B A B ...), and the
table gives the median tokens/s, the process's peak resident memory, and the fraction of the
machine's float32 matmul ceiling (each framework's own GEMM rate, measured in the same process)
that the training step reaches in model FLOPs.

PyTorch, PEFT and transformers are optional benchmark dependencies, never runtime ones:

    pip install torch --index-url https://download.pytorch.org/whl/cpu && pip install peft

Shapes (--shape, default both):
  39m    hidden 512, 12 blocks, MLP 1408, 8 heads: 38.5M linear parameters in the blocks
  123m   hidden 1024, 10 blocks, MLP 2688, 16 heads: 124.5M linear parameters in the blocks
Both have a 32000-token vocabulary (Mistral's size) and an untied LM head.

Examples:

    python bench/vs_torch.py                                  # both shapes, about 10 min
    python bench/vs_torch.py --shape 39m --steps 5 --repeats 1
    python bench/vs_torch.py --quick                          # a 64-wide model, 2 steps: seconds
"""

import argparse
import json
import os  # noqa: I001  (os is needed before the project import below)
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The derta-mlx a child measures: this checkout, or another one (--baseline) for before/after.
sys.path.insert(0, os.environ.get("DERTA_MLX_BENCH_CODE", str(ROOT)))

from derta_mlx.accel import blas as backend  # noqa: E402  (light: no mlx import)
from derta_mlx.common.atomic import write_json  # noqa: E402

SHAPES = {
    "39m": dict(hidden_size=512, num_hidden_layers=12, intermediate_size=1408, num_attention_heads=8),
    "123m": dict(hidden_size=1024, num_hidden_layers=10, intermediate_size=2688, num_attention_heads=16),
    "quick": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4),
}
VOCAB = 32000
LORA_KEYS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def llama_args(shape: str, vocab: int) -> dict:
    s = SHAPES[shape]
    return dict(model_type="llama", vocab_size=vocab, rms_norm_eps=1e-5, rope_theta=10000.0,
                num_key_value_heads=s["num_attention_heads"], tie_word_embeddings=False, **s)


def linear_params(args: dict) -> int:
    h, i, n = args["hidden_size"], args["intermediate_size"], args["num_hidden_layers"]
    return n * (4 * h * h + 3 * h * i)


def step_flops(args: dict, batch: int, length: int) -> float:
    """Model FLOPs of one LoRA step: forward (2 per weight per token) plus the backward pass to
    the activations (another 2; the frozen base weights get no gradient), for the blocks and the
    LM head, plus attention's two (length x length) products, forward and backward (x3)."""
    tokens = batch * length
    weights = linear_params(args) + args["hidden_size"] * args["vocab_size"]
    attention = 3 * 4 * args["num_hidden_layers"] * length * args["hidden_size"] * tokens
    return 4 * weights * tokens + attention


def batches(seed: int, count: int, batch: int, length: int, vocab: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=(batch, length + 1), dtype=np.int64) for _ in range(count)]


def peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


# --- the two sides (each runs in its own process) --------------------------------------------


def build_weights(job: dict) -> None:
    """MLX builds the random model and writes it where both sides read it."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    mx.random.seed(job["seed"])
    model = llama.Model(llama.ModelArgs(**llama_args(job["shape"], job["vocab"])))
    mx.save_safetensors(job["weights"], dict(tree_flatten(model.parameters())))


def run_mlx(job: dict) -> dict:
    """derta-mlx's trainer (derta_mlx.train.trainer.train) on the shared weights."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm.models import llama

    from derta_mlx.data.batches import BatchOrder
    from derta_mlx.data.instances import MLE, Instance
    from derta_mlx.train.config import TrainConfig
    from derta_mlx.train.distributed import current_world
    from derta_mlx.train.trainer import prepare_model, train

    gemm = mlx_gemm_rate(job)
    model = llama.Model(llama.ModelArgs(**llama_args(job["shape"], job["vocab"])))
    model.load_weights(job["weights"])
    steps = job["warmup"] + job["steps"]
    cfg = TrainConfig(iters=steps, batch_size=job["batch"], learning_rate=1e-5, lr_schedule="constant",
                      num_layers=-1, lora_rank=8, lora_scale=2.0, lora_keys=LORA_KEYS,
                      max_seq_length=job["length"] + 1, steps_per_report=1, save_every=10**9,
                      seed=job["seed"], **job.get("mlx_options", {}))
    prepare_model(model, cfg)
    rows = np.concatenate(batches(job["seed"], steps, job["batch"], job["length"], job["vocab"]))
    # Place row j where the trainer's shuffled order reads it, so both sides see the same batches.
    order = BatchOrder(len(rows), job["batch"], cfg.seed)
    placed = np.concatenate([order.indices(m) for m in range(steps)])
    instances = [None] * len(rows)
    for j, slot in enumerate(placed):
        r = rows[j]
        instances[slot] = Instance(r[:-1].astype(np.int32), r[1:].astype(np.int32),
                                   np.full(job["length"], MLE, np.int8), "helpful", "bench")
    times, losses = [], []

    def report(event) -> None:
        if event.kind == "train":
            times.append(time.perf_counter())
            losses.append(event.values["loss"])

    world = current_world()  # under mlx.launch (the "--ranks 2" side): one rank of several
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(model, instances, [], cfg, Path(tmp), "bench", on_report=report, world=world)
    times = [start] + times
    rss, mlx_peak = world.gather(peak_rss_gb()), world.gather(mx.get_peak_memory() / 1e9)
    gemm = sum(world.gather(gemm))  # the machine's ceiling: every rank's cores at once
    if not world.main:
        return None
    measured = times[-1] - times[job["warmup"]]
    return {"seconds_per_step": measured / job["steps"], "first_loss": losses[0], "losses": losses,
            "peak_rss_gb": sum(rss), "mlx_peak_gb": sum(mlx_peak), "gemm_gflops": gemm, "ranks": world.size}


def mlx_gemm_rate(job: dict) -> float:
    import mlx.core as mx

    h, i = SHAPES[job["shape"]]["hidden_size"], SHAPES[job["shape"]]["intermediate_size"]
    a, w = mx.random.normal((job["batch"] * job["length"], h)), mx.random.normal((i, h))
    mx.eval(a, w)
    return _rate(lambda: mx.eval(a @ w.T), 2 * a.shape[0] * h * i)


def _rate(fn, flops: float, reps: int = 10) -> float:
    for _ in range(2):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return flops * reps / (time.perf_counter() - start) / 1e9


def run_torch(job: dict) -> dict:
    """transformers' LlamaForCausalLM + PEFT LoRA + torch.optim.AdamW, the official DeRTa stack."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(job["seed"])
    h, i = SHAPES[job["shape"]]["hidden_size"], SHAPES[job["shape"]]["intermediate_size"]
    a, w = torch.randn(job["batch"] * job["length"], h), torch.randn(i, h)
    gemm = _rate(lambda: a @ w.T, 2 * a.shape[0] * h * i)
    args = llama_args(job["shape"], job["vocab"])
    args.pop("model_type")
    config = LlamaConfig(**args, max_position_embeddings=4096, attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM(config)
    model.config.attn_implementation = "sdpa"
    missing, unexpected = model.load_state_dict(load_file(job["weights"]), strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=[k.split(".")[-1] for k in LORA_KEYS])
    model = get_peft_model(model, lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.0)
    data = batches(job["seed"], job["warmup"] + job["steps"], job["batch"], job["length"], job["vocab"])
    times, losses = [time.perf_counter()], []
    for rows in data:
        ids = torch.from_numpy(rows)
        out = model(input_ids=ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(out.logits.float().reshape(-1, job["vocab"]),
                                                 ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        times.append(time.perf_counter())
    measured = times[-1] - times[job["warmup"]]
    return {"seconds_per_step": measured / job["steps"], "first_loss": losses[0], "losses": losses,
            "peak_rss_gb": peak_rss_gb(), "gemm_gflops": gemm, "threads": torch.get_num_threads()}


SIDES = {"build": build_weights, "derta-mlx": run_mlx, "derta-mlx --ranks 2": run_mlx, "pytorch+peft": run_torch,
         "baseline": run_mlx}


def child(side: str, job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    result = SIDES[side](job)
    if result is not None:
        print("RESULT " + json.dumps(result))


def spawn(side: str, job: dict, tmp: str) -> dict:
    job_file = Path(tmp) / "job.json"
    job_file.write_text(json.dumps(job))
    env = dict(os.environ)
    command = [sys.executable, __file__, "--child", side, str(job_file)]
    if side.startswith("derta-mlx"):
        env.update(backend.preload_env())  # MLX with the BLAS the CLI preloads
    if side == "baseline":  # another checkout, with the OpenBLAS preload its own CLI applied
        env.update(DERTA_MLX_BENCH_CODE=job["baseline"], LD_PRELOAD=getattr(backend.find_blas(), "path", ""))
    if side == "derta-mlx --ranks 2":  # two ranks on this machine, as `derta-mlx train --ranks 2`
        from derta_mlx.train.ranks import run_local

        with tempfile.TemporaryFile("w+") as stdout:
            failed, _ = run_local(command, 2, stdout=stdout, env=env)
            stdout.seek(0)
            text = stdout.read()
        if failed:
            raise SystemExit(f"{side} failed: ranks {failed}")
        out = subprocess.CompletedProcess(command, 0, text, "")
    else:
        out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][7:]) if lines else {}


def torch_available() -> bool:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["39m", "123m", "all"], default="all")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the clock starts")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, interleaved")
    parser.add_argument("--quick", action="store_true", help="a 64-wide model, 2 steps, 1 repeat")
    parser.add_argument("--sides", default="derta-mlx,derta-mlx --ranks 2,pytorch+peft",
                        help="comma-separated sides to measure (default: %(default)s; also: baseline)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="the side 'baseline' runs the derta-mlx of this other checkout (e.g. a git "
                             "worktree of an older commit), for a before/after ratio in one run")
    parser.add_argument("--mlx-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a TrainConfig field for the derta-mlx side (for before/after runs)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "vs_torch.json"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    shapes = ["quick"] if args.quick else (["39m", "123m"] if args.shape == "all" else [args.shape])
    if args.quick:
        args.steps, args.warmup, args.repeats, args.length = 2, 1, 1, 64
    sides = [side.strip() for side in args.sides.split(",")]
    unknown = [side for side in sides if side not in SIDES or side == "build"]
    if unknown or ("baseline" in sides and not args.baseline):
        parser.error(f"unknown sides {unknown}" if unknown else "the side 'baseline' needs --baseline DIR")
    if "pytorch+peft" in sides and not torch_available():
        print("PyTorch/PEFT not installed: measuring derta-mlx only (see --help to install them)")
        sides.remove("pytorch+peft")
    mlx_options = dict(_option(o) for o in args.mlx_option)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "child")}, "rows": []}
    for shape in shapes:
        with tempfile.TemporaryDirectory() as tmp:
            job = {"shape": shape, "vocab": VOCAB, "batch": args.batch_size, "length": args.length,
                   "steps": args.steps, "warmup": args.warmup, "seed": 0,
                   "weights": str(Path(tmp) / "weights.safetensors"), "mlx_options": mlx_options,
                   "baseline": str(Path(args.baseline).resolve()) if args.baseline else None}
            spawn("build", job, tmp)
            runs = {side: [] for side in sides}
            for repeat in range(args.repeats):
                for side in sides:
                    runs[side].append(spawn(side, job, tmp))
                    print(f"  {shape} {side} run {repeat + 1}: "
                          f"{args.batch_size * args.length / runs[side][-1]['seconds_per_step']:.0f} tokens/s",
                          flush=True)
        margs = llama_args(shape, VOCAB)
        flops = step_flops(margs, args.batch_size, args.length)
        for side in sides:
            seconds = statistics.median(r["seconds_per_step"] for r in runs[side])
            gemm = statistics.median(r["gemm_gflops"] for r in runs[side])
            results["rows"].append({
                "shape": shape, "linear_params": linear_params(margs), "side": side,
                "tokens_per_sec": args.batch_size * args.length / seconds, "seconds_per_step": seconds,
                "peak_rss_gb": max(r["peak_rss_gb"] for r in runs[side]),
                "mlx_peak_gb": max((r.get("mlx_peak_gb", 0) for r in runs[side]), default=0) or None,
                "gemm_gflops": gemm, "step_gflops": flops / seconds / 1e9,
                "ceiling_fraction": flops / seconds / 1e9 / gemm, "first_loss": runs[side][0]["first_loss"],
                "runs": runs[side],
            })
    print(format_table(results["rows"]))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, results)
    print(f"wrote {args.json}")


def _option(text: str):
    key, _, value = text.partition("=")
    return key.replace("-", "_"), json.loads(value) if value[:1] in "0123456789-[{tf\"" else value


def format_table(rows) -> str:
    reference = "pytorch+peft" if any(r["side"] == "pytorch+peft" for r in rows) else rows[0]["side"]
    head = (f"{'shape':<6} {'side':<20} {'tokens/s':>9} {'s/step':>7} {'peak RSS GB':>11} {'GEMM GF/s':>9} "
            f"{'step GF/s':>9} {'of ceiling':>10} {'first loss':>10} {'vs ' + reference.split('+')[0]:>12}")
    lines = [head, "-" * len(head)]
    torch_rate = {r["shape"]: r["tokens_per_sec"] for r in rows if r["side"] == reference}
    for r in rows:
        ratio = r["tokens_per_sec"] / torch_rate[r["shape"]] if r["shape"] in torch_rate else float("nan")
        lines.append(f"{r['shape']:<6} {r['side']:<20} {r['tokens_per_sec']:>9.0f} {r['seconds_per_step']:>7.2f} "
                     f"{r['peak_rss_gb']:>11.2f} {r['gemm_gflops']:>9.0f} {r['step_gflops']:>9.0f} "
                     f"{r['ceiling_fraction']:>10.0%} {r['first_loss']:>10.4f} {ratio:>11.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
