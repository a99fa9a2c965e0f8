"""Where to cut a harmful response: seeded harmful-prefix sampling with an explicit unit.

Distributions (k = the number of units of the harmful response kept before the safe answer):
  official  the official script: words, k uniform in 1..L-2, and k = 0 for every third item
            (by index). Rows with fewer than 3 words get k = 0 (the script silently dropped
            them from one list only, which misaligned its data).
  uniform   k uniform in 0..L (the paper's text: "a random number sampled from 0 to |r|").
  qi        Qi et al. (2024): k = 0 with probability 0.5, else uniform in 1..min(C, L).
"""

import random
import re
from dataclasses import dataclass
from typing import List

DISTRIBUTIONS = ("official", "uniform", "qi")
UNITS = ("word", "token")


@dataclass(frozen=True)
class PrefixSampler:
    distribution: str = "official"
    unit: str = "word"
    seed: int = 0
    qi_cap: int = 100  # C in Qi et al.'s augmentation

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"prefix distribution must be one of {DISTRIBUTIONS}")
        if self.unit not in UNITS:
            raise ValueError(f"prefix unit must be one of {UNITS}")

    def sample(self, index: int, length: int) -> int:
        """k for the item at `index` whose harmful response has `length` units.

        Each item gets its own generator seeded by (seed, index), so k does not depend on
        which other rows are in the file or in what order they are processed.
        """
        rng = random.Random(f"{self.seed}:{index}")
        if self.distribution == "official":
            if index % 3 == 0 or length < 3:
                return 0
            return rng.randint(1, length - 2)
        if self.distribution == "uniform":
            return rng.randint(0, length)
        if rng.random() < 0.5 or length == 0:
            return 0
        return rng.randint(1, min(self.qi_cap, length))


_WORD = re.compile(r"\S+")


def word_ends(text: str) -> List[int]:
    """Character offsets where each whitespace-separated word ends (newlines split words too)."""
    return [match.end() for match in _WORD.finditer(text)]
