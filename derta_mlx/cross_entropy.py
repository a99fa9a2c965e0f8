"""Cross-entropy over the vocabulary, with a hand-written gradient.

After the matmuls, a training step's largest cost is the (tokens x vocabulary) logits. Here
the forward pass keeps only the log-sum-exp (one float per token) and the backward pass
recomputes the softmax from it, fused with the gradient `softmax - one_hot`: no softmax is held
from the forward to the backward pass (mlx's `nn.losses.cross_entropy` holds more), and on the
CPU both exponentials are cpu_kernels.exp_nonpositive, fused with the shift (MLX's own CPU exp is
slow: see there). On a GPU `mx.exp` is already fast and is used as it is.
"""

import mlx.core as mx

from .cpu_kernels import _exp_nonpositive, on_cpu


@mx.compile
def _exp_shifted_cpu(x, shift):  # exp(x - shift) in one pass, for shift >= max(x)
    return _exp_nonpositive(x - shift)


def _exp_shifted(x, shift):
    return _exp_shifted_cpu(x, shift) if on_cpu() else mx.exp(x - shift)


@mx.compile
def _softmax_grad(probs, targets, cotangent):
    hit = mx.arange(probs.shape[-1], dtype=targets.dtype) == targets[..., None]
    return cotangent[..., None] * (probs - hit)


@mx.custom_function
def _cross_entropy(logits, targets):
    top = logits.max(axis=-1, keepdims=True)
    lse = top + mx.log(_exp_shifted(logits, top).sum(axis=-1, keepdims=True))
    ce = (lse - mx.take_along_axis(logits, targets[..., None], axis=-1)).squeeze(-1)
    return ce, lse


@_cross_entropy.vjp
def _cross_entropy_vjp(primals, cotangents, outputs):
    logits, targets = primals
    _, lse = outputs
    return _softmax_grad(_exp_shifted(logits, lse), targets, cotangents[0]), mx.zeros_like(targets)


def cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Per-position cross-entropy, float32: what `nn.losses.cross_entropy(..., reduction="none")`
    gives, with a cheaper gradient. `targets` must be valid class ids (mask the rest after)."""
    return _cross_entropy(logits.astype(mx.float32), targets.astype(mx.int32))[0]
