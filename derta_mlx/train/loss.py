"""DeRTa's loss: an MLE term and an RTO term over one batch, explicitly weighted.

    L = MLE + rto_weight * RTO

`reduction`:
  token-mean  (sum MLE CE + w * sum RTO CE) / (#MLE + #RTO targets): the official code's single
              mean over all supervised tokens (w = 1), where RTO's weight is its token share.
  per-term    sum MLE CE / #MLE + w * sum RTO CE / #RTO: each term a mean of its own, so RTO's
              weight no longer grows with the length of the harmful responses.

`rto_keep` keeps each RTO target with that probability (resampled every step from the run's
seed; the official full-parameter runs kept about 5%). The denominators are batch-wide counts
passed in (`Counts`), so gradient accumulation over micro-batches gives exactly the gradient
of the whole batch, and a batch with no supervised token gives 0, never NaN.
"""

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from derta_mlx.data.instances import IGNORE, MLE, RTO
from derta_mlx.models.logits import logits_at
from derta_mlx.train.cross_entropy import cross_entropy

REDUCTIONS = ("token-mean", "per-term")


@dataclass(frozen=True)
class LossConfig:
    rto_weight: float = 1.0
    rto_keep: float = 1.0
    reduction: str = "token-mean"

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}")
        if not 0.0 < self.rto_keep <= 1.0:
            raise ValueError("rto_keep must be in (0, 1]")
        if self.rto_weight < 0:
            raise ValueError("rto_weight must be >= 0")


@dataclass(frozen=True)
class Counts:
    """Supervised targets of each term in the whole (accumulated) batch."""

    mle: int
    rto: int


def keep_rto_targets(terms: np.ndarray, keep: float, seed: int, step: int) -> np.ndarray:
    """The step's term mask with a random (1 - keep) share of RTO targets switched off."""
    if keep >= 1.0:
        return terms
    rng = np.random.default_rng([seed, step])
    dropped = (terms == RTO) & (rng.random(terms.shape) >= keep)
    return np.where(dropped, 0, terms).astype(terms.dtype)


def count_targets(terms: np.ndarray) -> Counts:
    return Counts(int((terms == MLE).sum()), int((terms == RTO).sum()))


def term_sums(logits: mx.array, targets: mx.array, terms: mx.array):
    """Summed cross-entropy of the MLE and the RTO positions."""
    ce = cross_entropy(logits, mx.maximum(targets, 0))
    ce = mx.where(targets == IGNORE, 0.0, ce)
    mle = (ce * (terms == MLE)).sum()
    rto = (ce * (terms == RTO)).sum()
    return mle, rto


def term_scales(counts: Counts, config: LossConfig):
    """(a, b) such that the loss is a * MLE sum + b * RTO sum for the batch's counts."""
    w = config.rto_weight
    if config.reduction == "token-mean":
        total = max(counts.mle + counts.rto, 1)
        return 1.0 / total, w / total
    return 1.0 / max(counts.mle, 1), w / max(counts.rto, 1)


def supervised(targets: np.ndarray, terms: np.ndarray):
    """(positions, targets, terms) at the supervised positions of a (B, L) batch: positions index
    the flattened batch, and only there does the loss need logits (see logits.py)."""
    positions = np.flatnonzero(terms.reshape(-1)).astype(np.int32)
    if positions.size == 0:  # keep the shapes non-empty: one position, scored by neither term
        return np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros(1, terms.dtype)
    return positions, targets.reshape(-1)[positions], terms.reshape(-1)[positions]


def batch_loss(model, inputs, positions, targets, terms, scales):
    """(loss, (mle_sum, rto_sum)) of one micro-batch, from `supervised`'s positions, targets and
    terms; `scales` = mx.array([a, b]) from term_scales."""
    mle_sum, rto_sum = term_sums(logits_at(model, inputs, positions), targets, terms)
    return scales[0] * mle_sum + scales[1] * rto_sum, (mle_sum, rto_sum)
