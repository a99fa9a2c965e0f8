"""Batch order: a pure function of (seed, micro-batch); length bucketing cuts padding."""

import numpy as np
import pytest

from derta_mlx.data.batches import BatchOrder


def lengths_of(n: int, seed: int = 0):
    """Short RTO-like rows mixed with long helpful-like rows, as DeRTa's data."""
    rng = np.random.default_rng(seed)
    return tuple(int(v) for v in np.where(rng.random(n) < 0.5, rng.integers(20, 60, n), rng.integers(150, 400, n)))


def epoch_batches(order: BatchOrder, epoch: int):
    return [order.indices(epoch * order.per_epoch + slot) for slot in range(order.per_epoch)]


def padded_tokens(order: BatchOrder, lengths, epoch: int = 0) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in epoch_batches(order, epoch))


@pytest.mark.parametrize("size, batch, pool", [(203, 4, 16), (64, 8, 2), (10, 3, 16)])
def test_bucketed_epoch_uses_each_instance_at_most_once_in_full_batches(size, batch, pool):
    lengths = lengths_of(size)
    order = BatchOrder(size, batch, seed=5, lengths=lengths, pool=pool)
    batches = epoch_batches(order, 0)
    assert len(batches) == size // batch and all(len(b) == batch for b in batches)
    used = np.concatenate(batches)
    assert len(set(used.tolist())) == len(used)  # no instance twice in an epoch
    assert len(used) >= size - batch - pool * batch  # at most the pools' remainders are left out


def test_bucketing_is_deterministic_and_differs_per_epoch_and_seed():
    lengths = lengths_of(200)
    order = BatchOrder(200, 4, seed=1, lengths=lengths)
    again = BatchOrder(200, 4, seed=1, lengths=lengths)
    assert all(np.array_equal(a, b) for a, b in zip(epoch_batches(order, 0), epoch_batches(again, 0)))
    assert not all(np.array_equal(a, b) for a, b in zip(epoch_batches(order, 0), epoch_batches(order, 1)))
    other = BatchOrder(200, 4, seed=2, lengths=lengths)
    assert not all(np.array_equal(a, b) for a, b in zip(epoch_batches(order, 0), epoch_batches(other, 0)))


def test_bucketing_cuts_padding():
    lengths = lengths_of(400)
    plain = padded_tokens(BatchOrder(400, 4, seed=0), lengths)
    bucketed = padded_tokens(BatchOrder(400, 4, seed=0, lengths=lengths), lengths)
    real = sum(lengths)
    assert bucketed < plain
    assert bucketed - real < 0.25 * (plain - real)  # most of the padding is gone


def test_unbucketed_order_is_unchanged():
    """Runs written before bucketing existed resume to the same batches."""
    order = BatchOrder(10, 3, seed=7)
    expected = np.random.default_rng([7, 0]).permutation(10)
    assert np.array_equal(np.concatenate(epoch_batches(order, 0)), expected[:9])
