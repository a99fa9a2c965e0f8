"""Where to cut a harmful response: seeded harmful-prefix sampling with an explicit unit.

Distributions (k = the number of units of the harmful response kept before the safe answer):
  official  the official script: words, k uniform in 1..L-2, and k = 0 for a third of the
            items (the script took every third by index; here a seeded third, by content).
            Rows with fewer than 3 words get k = 0 (the script silently dropped them from one
            list only, which misaligned its data).

k is seeded by (seed, the row's key): a hash of its question and harmful response (`row_key`). So k does not change when other rows are added, removed or
reordered, and `derta-mlx data build` shows the k that training uses.
  uniform   k uniform in 0..L (the paper's text: "a random number sampled from 0 to |r|").
  qi        Qi et al. (2024): k = 0 with probability 0.5, else uniform in 1..min(C, L).
"""

import hashlib
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

    def sample(self, key: str, length: int, inside: bool = False) -> int:
        """k for the item with `key` (see row_key) whose harmful response has `length` units;
        `inside`: the distribution's part with k >= 1 (a cut inside the answer) where there is one."""
        rng = random.Random(f"{self.seed}:{key}")
        if self.distribution == "official":
            if (rng.randrange(3) == 0 and not inside) or length < 3:
                return 0
            return rng.randint(1, length - 2)
        if self.distribution == "uniform":
            return rng.randint(1 if inside and length else 0, length)
        if (rng.random() < 0.5 and not inside) or length == 0:
            return 0
        return rng.randint(1, min(self.qi_cap, length))


def row_key(question: str, harmful: str) -> str:
    """What seeds a row's k: its content (a row's default id is its line number, which moves)."""
    return hashlib.sha256(f"{question}\0{harmful}".encode()).hexdigest()[:16]


_WORD = re.compile(r"\S+")


def word_ends(text: str) -> List[int]:
    """Character offsets where each whitespace-separated word ends (newlines split words too)."""
    return [match.end() for match in _WORD.finditer(text)]
