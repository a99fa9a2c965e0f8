"""The loss against hand-computed values on a tiny batch."""

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from derta_mlx.data.instances import IGNORE, MLE, RTO
from derta_mlx.train.loss import (
    Counts,
    LossConfig,
    batch_loss,
    count_targets,
    keep_rto_targets,
    supervised,
    term_scales,
    term_sums,
)


class Table(nn.Module):
    """logits[b, t] = a fixed row per input token: easy to compute by hand."""

    def __init__(self, table):
        super().__init__()
        self.table = mx.array(table, dtype=mx.float32)

    def __call__(self, inputs):
        return self.table[inputs]


TABLE = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]))
INPUTS = np.array([[0, 1, 2, 0]], dtype=np.int32)
TARGETS = np.array([[1, 2, IGNORE, 0]], dtype=np.int32)
TERMS = np.array([[MLE, RTO, 0, RTO]], dtype=np.int8)


def loss_args(inputs, targets, terms):
    """batch_loss's arrays for a (B, L) batch: inputs, then the supervised positions' data."""
    return (mx.array(inputs), *map(mx.array, supervised(targets, terms)))


def hand_sums():
    mle = -math.log(0.25)  # input 0 -> target 1
    rto = -math.log(0.1) - math.log(0.5)  # input 1 -> 2, input 0 -> 0
    return mle, rto


def test_term_sums_equal_hand_values():
    mle, rto = term_sums(Table(TABLE)(mx.array(INPUTS)), mx.array(TARGETS), mx.array(TERMS))
    assert mle.item() == pytest.approx(hand_sums()[0], rel=1e-6)
    assert rto.item() == pytest.approx(hand_sums()[1], rel=1e-6)


@pytest.mark.parametrize("reduction, weight", [("token-mean", 1.0), ("token-mean", 0.5), ("per-term", 2.0)])
def test_loss_equals_hand_value(reduction, weight):
    mle, rto = hand_sums()
    counts = count_targets(TERMS)
    assert counts == Counts(1, 2)
    expected = (mle + weight * rto) / 3 if reduction == "token-mean" else mle / 1 + weight * rto / 2
    scales = mx.array(term_scales(counts, LossConfig(weight, 1.0, reduction)))
    loss, _ = batch_loss(Table(TABLE), *loss_args(INPUTS, TARGETS, TERMS), scales)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_all_masked_batch_is_zero_not_nan():
    terms = np.zeros_like(TERMS)
    targets = np.full_like(TARGETS, IGNORE)
    for reduction in ("token-mean", "per-term"):
        scales = mx.array(term_scales(count_targets(terms), LossConfig(reduction=reduction)))
        loss, _ = batch_loss(Table(TABLE), *loss_args(INPUTS, targets, terms), scales)
        assert loss.item() == 0.0


def test_rto_keep_is_seeded_and_only_drops_rto():
    terms = np.array([[MLE] * 50 + [RTO] * 950], dtype=np.int8)
    kept = keep_rto_targets(terms, 0.05, seed=1, step=3)
    assert np.array_equal(kept, keep_rto_targets(terms, 0.05, seed=1, step=3))
    assert not np.array_equal(kept, keep_rto_targets(terms, 0.05, seed=1, step=4))
    assert (kept[:, :50] == MLE).all()
    assert 20 <= (kept == RTO).sum() <= 80  # about 5% of 950
    assert keep_rto_targets(terms, 1.0, 1, 3) is terms


def test_accumulated_micro_batches_give_the_full_batch_gradient():
    model = Table(TABLE)
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 3, (4, 6)).astype(np.int32)
    targets = rng.integers(0, 3, (4, 6)).astype(np.int32)
    terms = rng.integers(0, 3, (4, 6)).astype(np.int8)
    targets[terms == 0] = IGNORE
    config = LossConfig(rto_weight=0.7, reduction="per-term")
    scales = mx.array(term_scales(count_targets(terms), config))
    grad_fn = nn.value_and_grad(model, batch_loss)
    (_, _), full = grad_fn(model, *loss_args(inputs, targets, terms), scales)
    parts = [grad_fn(model, *loss_args(inputs[s], targets[s], terms[s]), scales)[1]
             for s in (slice(0, 2), slice(2, 4))]
    assert np.allclose(np.array(full["table"]), np.array(parts[0]["table"] + parts[1]["table"]), atol=1e-6)
