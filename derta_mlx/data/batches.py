"""Instances -> padded batches, in an order that is a pure function of (seed, micro-batch index).

Because the order is recomputed from the cursor, exact resume needs only the cursor: the
micro-batch number. Each epoch is a seeded permutation cut into full batches (the last,
incomplete one is left out, as mlx-lm does).

Length bucketing (`lengths` given): DeRTa mixes short RTO and refusal rows with long helpful
ones, and a batch is padded to its longest row, so random batches compute on a lot of padding.
Bucketed, each epoch's permutation is cut into pools of `pool` batches, each pool is sorted by
length and cut into batches, and the epoch's batches are shuffled: rows of a batch are alike in
length while every batch still comes from a random pool. (mlx-lm sorts the whole data set
once; a pool keeps batches mixed across the data and still differs per epoch.)
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from derta_mlx.data.instances import IGNORE, Instance


@dataclass
class Batch:
    inputs: np.ndarray  # (B, L) int32
    targets: np.ndarray  # (B, L) int32, IGNORE on padding
    terms: np.ndarray  # (B, L) int8, 0 on padding
    tokens: int  # real (unpadded) tokens


def pad_batch(instances: Sequence[Instance], pad_id: int = 0, multiple: int = 8) -> Batch:
    """Right-pad to the longest instance, rounded up to `multiple` (fewer compiled shapes)."""
    longest = max(len(x) for x in instances)
    width = -(-longest // multiple) * multiple
    inputs = np.full((len(instances), width), pad_id, dtype=np.int32)
    targets = np.full((len(instances), width), IGNORE, dtype=np.int32)
    terms = np.zeros((len(instances), width), dtype=np.int8)
    for row, instance in enumerate(instances):
        n = len(instance)
        inputs[row, :n] = instance.inputs
        targets[row, :n] = instance.targets
        terms[row, :n] = instance.terms
    return Batch(inputs, targets, terms, sum(len(x) for x in instances))


@dataclass(frozen=True)
class BatchOrder:
    size: int  # number of instances
    batch_size: int
    seed: int
    lengths: Optional[Tuple[int, ...]] = None  # instance lengths: bucket batches by length
    pool: int = 16  # batches per sorted pool when bucketing

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError("batch size must be >= 1")
        if self.size < self.batch_size:
            raise ValueError(
                f"the data has {self.size} training instances, fewer than the batch size {self.batch_size}"
            )

    @property
    def per_epoch(self) -> int:
        return self.size // self.batch_size

    def indices(self, micro_batch: int) -> np.ndarray:
        """Instance indices of micro-batch number `micro_batch` (0-based, across epochs)."""
        epoch, slot = divmod(micro_batch, self.per_epoch)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.size)
        if self.lengths is None:
            return order[slot * self.batch_size : (slot + 1) * self.batch_size]
        lengths = np.asarray(self.lengths)
        span = self.pool * self.batch_size
        batches = []
        for start in range(0, self.size, span):
            pool = order[start : start + span]
            pool = pool[np.argsort(lengths[pool], kind="stable")]
            full = len(pool) // self.batch_size * self.batch_size
            batches.extend(pool[:full].reshape(-1, self.batch_size))
        return batches[rng.permutation(len(batches))[slot]]
