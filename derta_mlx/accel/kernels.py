"""A faster exponential for MLX's CPU backend, and the attention of training built on it.

On the CPU, MLX computes `exp` (and so softmax) one element at a time through a polynomial with
out-of-line `fmaf` calls, and
`mx.fast.scaled_dot_product_attention` falls back to ops that use it. Here the exponential is
Cody-Waite range reduction plus a degree-7 polynomial in MLX ops that `mx.compile` fuses into
loops the C++ compiler vectorises (several times faster: tests/test_fast_step.py checks the
values, bench/profile_step.py the time), and the softmax of the attention gets
a hand-written gradient that needs no exponential at all.

`training_kernels(model)` swaps the attention into mlx-lm's LLaMA module (which also runs
Mistral and SmolLM2) for the duration of a training loop, on the CPU only: on a GPU nothing
changes. Values agree with MLX's to float32 rounding (tests/test_fast_step.py). SwiGLU stays
mlx-lm's: its single compiled kernel beat one built on this exp, whose bit view splits a fused
kernel in two.
"""

import sys
from contextlib import contextmanager

import mlx.core as mx

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453


def _exp_nonpositive(x: mx.array) -> mx.array:
    """exp(x) for x <= 0: 2^n * e^(g) with n = round(x log2 e), |g| <= ln(2)/2."""
    t = mx.maximum(x * _LOG2E, -126.0)  # below 2^-126 the value is 0 for every use here
    n = mx.floor(t + 0.5)
    g = (t - n) * _LN2  # the degree-7 Taylor series is exact to ~5e-9 on |g| <= 0.35
    p = g * (1 / 5040) + 1 / 720
    for c in (1 / 120, 1 / 24, 1 / 6, 1 / 2, 1.0, 1.0):
        p = p * g + c
    return p * ((n.astype(mx.int32) + 127) << 23).view(mx.float32)


exp_nonpositive = mx.compile(_exp_nonpositive)  # not shapeless: the bit view needs shapes


@mx.compile
def _exp_shifted_cpu(x, shift):  # exp(x - shift) in one pass, for shift >= max(x)
    return _exp_nonpositive(x - shift)


def exp_shifted(x, shift):
    """exp(x - shift) where shift >= max(x): on a CPU without MLX's slow exp, mx.exp on a GPU."""
    return _exp_shifted_cpu(x, shift) if on_cpu() else mx.exp(x - shift)


def on_cpu() -> bool:
    return mx.default_device() == mx.cpu


# --- softmax and attention ---------------------------------------------------------------------


@mx.custom_function
def softmax(scores):
    """Softmax over the last axis, float32; -inf entries get ~0 weight (2^-126 of the top)."""
    top = scores.max(axis=-1, keepdims=True)  # the hand-written gradient below needs no care here
    weights = exp_nonpositive(scores - top)
    return weights / weights.sum(axis=-1, keepdims=True)


@softmax.vjp
def _softmax_vjp(primals, cotangent, output):
    return output * (cotangent - (cotangent * output).sum(axis=-1, keepdims=True))


def attention(queries, keys, values, cache, scale: float, mask, sinks=None):
    """mlx_lm.models.base.scaled_dot_product_attention for training: (B, H, L, D) inputs,
    grouped-query heads, a "causal" / boolean / additive mask; anything else goes to mlx-lm."""
    if hasattr(cache, "bits") or sinks is not None or not (mask is None or isinstance(mask, (str, mx.array))):
        from mlx_lm.models.base import scaled_dot_product_attention

        return scaled_dot_product_attention(queries, keys, values, cache, scale, mask, sinks)
    B, H, L, D = queries.shape
    kv_heads, S = keys.shape[1], keys.shape[2]
    q = (queries * scale).reshape(B, kv_heads, H // kv_heads, L, D)
    scores = (q @ keys[:, :, None].swapaxes(-1, -2)).astype(mx.float32)  # (B, kv, rep, L, S)
    if isinstance(mask, str):  # "causal": query i sees keys up to i + (S - L)
        mask = mx.arange(L)[:, None] + (S - L) >= mx.arange(S)[None]
    if mask is not None:
        if mask.dtype == mx.bool_:
            scores = mx.where(_per_group(mask, kv_heads), scores, -mx.inf)
        else:
            scores = scores + _per_group(mask, kv_heads).astype(scores.dtype)
    probs = softmax(scores).astype(values.dtype)
    return (probs @ values[:, :, None]).reshape(B, H, L, -1)


def _per_group(mask, kv_heads):
    """A (L, S), (B, 1|H, L, S) mask shaped for (B, kv_heads, rep, L, S) scores."""
    if mask.ndim < 4 or mask.shape[1] == 1:
        return mask if mask.ndim < 4 else mask[:, :, None]
    return mask.reshape(mask.shape[0], kv_heads, -1, *mask.shape[2:])


# --- swapping them into mlx-lm's model module --------------------------------------------------

_MODULES = ("mlx_lm.models.llama",)


@contextmanager
def training_kernels(model):
    """Within the block, `model` (an mlx-lm LLaMA-family model) computes its attention with
    `attention` above, when the default device is the CPU."""
    module = sys.modules.get(type(model).__module__)
    if not on_cpu() or module is None or module.__name__ not in _MODULES:
        yield False
        return
    swaps = {"scaled_dot_product_attention": attention}
    saved = {name: getattr(module, name) for name in swaps}
    try:
        for name, fn in swaps.items():
            setattr(module, name, fn)
        yield True
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)
