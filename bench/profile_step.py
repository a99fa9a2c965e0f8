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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from derta_mlx import backend  # noqa: E402
from derta_mlx.atomic import write_json  # noqa: E402


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
    from mlx_lm.models import llama
    from mlx.utils import tree_flatten

    from derta_mlx.config import TrainConfig
    from derta_mlx.cross_entropy import cross_entropy
    from derta_mlx.loss import batch_loss, supervised
    from derta_mlx.trainer import make_optimizer, prepare_model
    from vs_torch import LORA_KEYS, VOCAB, llama_args, step_flops

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

    def elementwise(x):  # the norms and the SwiGLU of a block, without matmuls
        y = block.input_layernorm(x) + block.post_attention_layernorm(x)
        wide = mx.concatenate([x, x, x], axis=-1)[..., : margs["intermediate_size"]]
        return y + (nn.silu(wide) * wide)[..., :H]

    grads_q = mx.grad(lambda t: (sdpa(t) * q).sum())
    _, grads0 = loss_and_grad(model, *loss_args, scales)
    mx.eval(grads0)
    parts = {
        "whole step (trainer's loss_and_grad + AdamW)": (step, 1),
        "forward only": (forward, 1),
        "block forward+backward": (grad_of(lambda x: block(x, mask)), n_blocks),
        "  7 LoRA linears fwd+bwd": (grad_of(projections), n_blocks),
        "  attention (sdpa) fwd+bwd": (lambda: mx.eval(grads_q(q)), n_blocks),
        "  norms + SwiGLU fwd+bwd": (grad_of(elementwise), n_blocks),
        "final norm + LM head + cross-entropy fwd+bwd": (lambda: mx.eval(head_grad(hidden)), 1),
        "AdamW update": (lambda: (optimizer.update(model, grads0), mx.eval(optimizer.state)), 1),
    }
    seconds = {}
    for name, (fn, times) in parts.items():
        seconds[name] = timed(fn, args.reps) * times
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
