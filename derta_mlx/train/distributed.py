"""Data-parallel training across processes or Macs with MLX's own engine (`mlx.launch`).

Every rank builds the same global batch order and the same global batch (cheap: numpy), trains
on its contiguous shard of each micro-batch's rows, and the gradient sums are all-reduced, so
with the loss's batch-wide denominators (loss.py) the summed gradient is exactly the global
batch's. Only rank 0 writes the run directory; every rank reads it to resume. Without
`mlx.launch` the world is one process and nothing here communicates.
"""

from dataclasses import dataclass
from typing import List, Sequence

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from derta_mlx.common.errors import UserError


@dataclass(frozen=True)
class World:
    group: object  # mx.distributed.Group, or None for one process
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: Sequence) -> slice:
        """This rank's contiguous share of a batch's rows (the batch divides evenly)."""
        n = len(rows) // self.size
        return slice(self.rank * n, (self.rank + 1) * n)

    def sum(self, x: mx.array) -> mx.array:
        return mx.distributed.all_sum(x, group=self.group) if self.size > 1 else x

    def sum_tree(self, tree):
        """All-reduce every array of `tree` in one message: a LoRA model has hundreds of small
        gradient arrays, and one all-reduce each cost more than the step's compute."""
        if self.size == 1:
            return tree
        leaves = tree_flatten(tree)
        flat = mx.concatenate([v.reshape(-1).astype(mx.float32) for _, v in leaves])
        summed = self.sum(flat)
        ends = np.cumsum([v.size for _, v in leaves])
        parts = mx.split(summed, ends[:-1].tolist())
        return tree_unflatten([(k, p.reshape(v.shape).astype(v.dtype)) for (k, v), p in zip(leaves, parts)])

    def gather(self, value: float) -> List[float]:
        """One float from every rank, in rank order."""
        if self.size == 1:
            return [value]
        return mx.distributed.all_gather(mx.array([value], dtype=mx.float32), group=self.group).tolist()

    def barrier(self) -> None:
        if self.size > 1:
            mx.eval(self.sum(mx.array(0)))

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a stop asked on any rank stops all)."""
        if self.size == 1:
            return flag
        return self.sum(mx.array(int(flag))).item() > 0


SINGLE = World(None)


def current_world() -> World:
    """The world `mlx.launch` started this process in, or a single process."""
    if not mx.distributed.is_available():
        return SINGLE
    group = mx.distributed.init()
    if group.size() == 1:
        return SINGLE
    return World(group, group.rank(), group.size())


def check_not_a_rank(launching: bool) -> None:
    """A rank must train, never launch more ranks (which would launch more, and so on)."""
    import os

    if launching and "MLX_RANK" in os.environ:
        raise UserError("--ranks/--hosts given inside a rank started by mlx.launch; run `derta-mlx train` "
                        "there without them")


def check_batch(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise UserError(f"--batch-size {batch_size} does not divide by the {world.size} ranks: each rank takes an "
                        f"equal share of every batch; use a multiple of {world.size}")
