"""Where the time of one derta-mlx LoRA training step goes, on bench/vs_torch.py's model shapes.

Each part is timed alone on fixed inputs (forward and backward where the step has both), with
the medians side by side in one run; the parts of one block are multiplied by the number of
blocks, so the rows add up to roughly the whole step. Example:

    python bench/profile_step.py --shape 39m
"""

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from derta_mlx.accel import blas as backend  # noqa: E402
from derta_mlx.common.atomic import write_json  # noqa: E402


def timed(fn, reps: int) -> float:
    fn()
    fn()
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="39m", choices=["39m", "123m", "quick"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "profile_step.json"))
    args = parser.parse_args(argv)
    backend.reexec_with_openblas(__file__)

    import mlx.core as mx
    import mlx.nn as nn
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama
    from mlx_lm.models.activations import swiglu as mlx_lm_swiglu
    from vs_torch import LORA_KEYS, VOCAB, llama_args, step_flops

    from derta_mlx.accel.kernels import attention, training_kernels
    from derta_mlx.train.config import TrainConfig
    from derta_mlx.train.cross_entropy import cross_entropy
    from derta_mlx.train.loss import batch_loss, supervised
    from derta_mlx.train.trainer import make_optimizer, prepare_model

    margs = llama_args(args.shape, VOCAB)
    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs(**margs))
    cfg = TrainConfig(num_layers=-1, lora_keys=LORA_KEYS, lr_schedule="constant", learning_rate=1e-5, iters=10)
    prepare_model(model, cfg)
    model.train()
    B, L, H = args.batch_size, args.length, margs["hidden_size"]
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(B, L + 1))
    inputs, targets = mx.array(ids[:, :-1], dtype=mx.int32), mx.array(ids[:, 1:], dtype=mx.int32)
    loss_args = (inputs, *map(mx.array, supervised(ids[:, 1:].astype(np.int32), np.ones((B, L), np.int8))))
    scales = mx.array([1.0 / (B * L), 1.0 / (B * L)])
    optimizer = make_optimizer(cfg)
    loss_and_grad = nn.value_and_grad(model, batch_loss)
    hidden = mx.random.normal((B, L, H))
    block = model.model.layers[0]
    mask = "causal"
    n_blocks = margs["num_hidden_layers"]

    def step():
        (loss, _), grads = loss_and_grad(model, *loss_args, scales)
        optimizer.update(model, grads)
        mx.eval(loss, model.trainable_parameters(), optimizer.state)

    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def compiled_step(*args):
        (loss, _), grads = loss_and_grad(model, *args)
        optimizer.update(model, grads)
        return loss

    def forward():
        mx.eval(model(inputs))

    def grad_of(fn):  # forward + backward to the input (what a frozen-base block costs)
        g = mx.grad(lambda x: (fn(x) * hidden).sum())
        return lambda: mx.eval(g(hidden))

    def head_and_loss(x):
        logits = model.lm_head(model.model.norm(x))
        ce = cross_entropy(logits, targets)
        return ce.sum() * scales[0]

    head_grad = mx.grad(head_and_loss)
    attn = block.self_attn
    mlp = block.mlp
    q = mx.random.normal((B, margs["num_attention_heads"], L, H // margs["num_attention_heads"]))

    def sdpa(x):
        return mx.fast.scaled_dot_product_attention(x, x, x, scale=0.1, mask="causal")

    def projections(x):  # the 7 LoRA linear layers of a block, alone
        a = attn.q_proj(x) + attn.k_proj(x) + attn.v_proj(x) + attn.o_proj(x)
        up = mlp.up_proj(x) + mlp.gate_proj(x)
        return a + mlp.down_proj(up)

    def norms(x):  # the two RMS norms of a block
        return block.input_layernorm(x) + block.post_attention_layernorm(x)

    grads_q = mx.grad(lambda t: (sdpa(t) * q).sum())
    grads_ours = mx.grad(lambda t: (attention(t, t, t, None, 0.1, "causal") * q).sum())
    wide = mx.random.normal((B, L, margs["intermediate_size"]))

    def swiglu_grad(fn):
        g = mx.grad(lambda a, b: (fn(a, b) * b).sum(), argnums=(0, 1))
        return lambda: mx.eval(g(wide, wide * 0.5))

    _, grads0 = loss_and_grad(model, *loss_args, scales)
    mx.eval(grads0)
    def with_kernels(fn):  # as trainer.train runs its loop (accel/kernels.py; CPU only)
        def run():
            with training_kernels(model):
                return fn()

        return run

    parts = {
        "whole step (trainer's loss_and_grad + AdamW)": (with_kernels(step), 1),
        "whole step without accel.kernels' attention": (step, 1),
        "whole step, mx.compile (fixed shapes)": (lambda: mx.eval(compiled_step(*loss_args, scales), state), 1),
        "forward only": (forward, 1),
        "block forward+backward": (with_kernels(grad_of(lambda x: block(x, mask))), n_blocks),
        "  7 LoRA linears, backward only (linear: no forward needed)": (grad_of(projections), n_blocks),
        "  attention (mx.fast.sdpa) fwd+bwd": (lambda: mx.eval(grads_q(q)), n_blocks),
        "  attention (accel.kernels) fwd+bwd": (lambda: mx.eval(grads_ours(q)), n_blocks),
        "  SwiGLU (mlx-lm) fwd+bwd": (swiglu_grad(mlx_lm_swiglu), n_blocks),
        "  2 RMS norms fwd+bwd": (grad_of(norms), n_blocks),
        "final norm + LM head + cross-entropy fwd+bwd": (lambda: mx.eval(head_grad(hidden)), 1),
        "AdamW update": (lambda: (optimizer.update(model, grads0), mx.eval(optimizer.state)), 1),
    }
    runs = {name: [] for name in parts}
    for _ in range(args.reps):  # interleaved, so that a noisy moment hits every part alike
        for name, (fn, times) in parts.items():
            runs[name].append(timed(fn, 1) * times)
    seconds = {name: statistics.median(values) for name, values in runs.items()}
    whole = seconds["whole step (trainer's loss_and_grad + AdamW)"]
    flops = step_flops(margs, B, L)
    print(f"shape {args.shape}, batch {B}x{L}, {flops / 1e9:.0f} GFLOP per step (model FLOPs); "
          f"whole step {whole:.3f} s = {flops / whole / 1e9:.0f} GFLOP/s")
    for name, value in seconds.items():
        print(f"  {name:<48} {value:7.3f} s  {value / whole:6.0%}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, {"shape": args.shape, "batch": [B, L], "seconds": seconds,
                           "trainable": sum(v.size for _, v in tree_flatten(model.trainable_parameters()))})


if __name__ == "__main__":
    main()
