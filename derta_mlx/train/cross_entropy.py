"""Cross-entropy over the vocabulary, with a hand-written gradient.

After the matmuls, a training step's largest cost is the (tokens x vocabulary) logits. Here
the forward pass keeps only the log-sum-exp (one float per token) and the backward pass
recomputes the softmax from it, fused with the gradient `softmax - one_hot`: no softmax is held
from the forward to the backward pass (mlx's `nn.losses.cross_entropy` holds more), and on the
CPU both exponentials are accel/kernels.exp_shifted, the shift fused into a fast exp (MLX's own CPU exp is
slow: see accel/kernels.py). On a GPU that is `mx.exp` as it is.
"""

import mlx.core as mx

from derta_mlx.accel.kernels import exp_shifted


@mx.compile
def _softmax_grad(probs, targets, cotangent):
    hit = mx.arange(probs.shape[-1], dtype=targets.dtype) == targets[..., None]
    return cotangent[..., None] * (probs - hit)


CHUNK_ELEMENTS = 1 << 24  # logits per piece: 64 MB of float32 temporaries at a time


def _pieces(rows: int, vocab: int):
    step = max(1, CHUNK_ELEMENTS // vocab)
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


@mx.custom_function
def _cross_entropy(logits, targets):
    """(ce, lse) of (N, vocab) logits, a piece of rows at a time (slicing inside the custom
    function: autodiff of slices would build a full-size gradient per piece)."""
    lses = []
    for rows in _pieces(*logits.shape):
        piece = logits[rows]
        top = piece.max(axis=-1, keepdims=True)
        lses.append(top + mx.log(exp_shifted(piece, top).sum(axis=-1, keepdims=True)))
    lse = mx.concatenate(lses) if len(lses) > 1 else lses[0]
    ce = (lse - mx.take_along_axis(logits, targets[..., None], axis=-1)).squeeze(-1)
    return ce, lse


@_cross_entropy.vjp
def _cross_entropy_vjp(primals, cotangents, outputs):
    logits, targets = primals
    _, lse = outputs
    grads = [_softmax_grad(exp_shifted(logits[rows], lse[rows]), targets[rows], cotangents[0][rows])
             for rows in _pieces(*logits.shape)]
    return (mx.concatenate(grads) if len(grads) > 1 else grads[0]), mx.zeros_like(targets)


def cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Per-position cross-entropy, float32: what `nn.losses.cross_entropy(..., reduction="none")`
    gives, with a cheaper gradient. `targets` must be valid class ids (mask the rest after).

    The rows go through in pieces of about CHUNK_ELEMENTS logits, so the exponential's
    temporaries stay the size of a piece, not of (tokens x vocabulary): 128k-column vocabularies
    make that several GB at a few thousand tokens."""
    vocab = logits.shape[-1]
    ce = _cross_entropy(logits.astype(mx.float32).reshape(-1, vocab), targets.astype(mx.int32).reshape(-1))[0]
    return ce.reshape(targets.shape)
