"""Cross-entropy over the vocabulary with one exponential pass, forward and backward together.

The loss of a training step is dominated, after the matmuls, by the (tokens x vocabulary)
logits: `nn.losses.cross_entropy` exponentiates them once for the forward logsumexp and once
more in the backward pass for the softmax. Here the forward pass keeps the softmax it computed
and the backward pass is one fused subtraction: the same values (within float32 rounding), one
exp pass fewer.

On MLX's CPU backend `mx.exp` is a scalar libm call per element (~100M/s on one core, ~40x a
fused multiply-add), so on the CPU the exponential is Cody-Waite range reduction and a degree-7
polynomial, which mx.compile fuses into one loop the C++ compiler vectorises (relative error
~1e-7, float32's own rounding). On a GPU `mx.exp` is already fast and is used as it is.
"""

import mlx.core as mx

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453


def _exp_nonpositive(x: mx.array) -> mx.array:
    """exp(x) for x <= 0 (shifted logits): 2^n * e^(f ln 2) with n = round(x log2 e)."""
    t = mx.maximum(x * _LOG2E, -126.0)  # below 2^-126 the softmax weight is 0 in float32 anyway
    n = mx.floor(t + 0.5)
    g = (t - n) * _LN2  # |g| <= ln(2)/2, where the degree-7 Taylor series is exact to ~5e-9
    p = g * (1 / 5040) + 1 / 720
    for c in (1 / 120, 1 / 24, 1 / 6, 1 / 2, 1.0, 1.0):
        p = p * g + c
    return p * ((n.astype(mx.int32) + 127) << 23).view(mx.float32)


_fast_exp = mx.compile(_exp_nonpositive)  # not shapeless: the bit view needs shapes


def _exp(x: mx.array) -> mx.array:
    return _fast_exp(x) if mx.default_device() == mx.cpu else mx.exp(x)


@mx.compile
def _softmax_grad(probs, targets, cotangent):
    hit = mx.arange(probs.shape[-1], dtype=targets.dtype) == targets[..., None]
    return cotangent[..., None] * (probs - hit)


@mx.custom_function
def _cross_entropy(logits, targets):
    top = mx.stop_gradient(logits.max(axis=-1, keepdims=True))
    weights = _exp(logits - top)
    total = weights.sum(axis=-1, keepdims=True)
    ce = (top + mx.log(total) - mx.take_along_axis(logits, targets[..., None], axis=-1)).squeeze(-1)
    return ce, weights / total


@_cross_entropy.vjp
def _cross_entropy_vjp(primals, cotangents, outputs):
    _, targets = primals
    _, probs = outputs
    return _softmax_grad(probs, targets, cotangents[0]), mx.zeros_like(targets)


def cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Per-position cross-entropy, float32: what `nn.losses.cross_entropy(..., reduction="none")`
    gives, with a cheaper gradient. `targets` must be valid class ids (mask the rest after)."""
    return _cross_entropy(logits.astype(mx.float32), targets.astype(mx.int32))[0]
