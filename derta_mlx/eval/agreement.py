"""Agreement of a judge with human labels: accuracy and Cohen's kappa, per labelled file.

A labelled file is jsonl {"question", "response", "verdict": "unsafe"|"safe"}. The calibration
files (tests/data/judge_calibration/<attack>[.heldout].jsonl) are named after the attack; the
attack says which suite kind reads them.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from derta_mlx.eval.attacks import judge_attack
from derta_mlx.eval.judge import judge_detector

# calibration file stem -> the suite kind that reads it
ATTACK_KINDS = {"codeattack": "codeattack", "jailbreakchat": "persona", "autodan": "persona", "cipher": "cipher",
                "completion": "completion"}


@dataclass(frozen=True)
class Agreement:
    n: int
    agree: int
    kappa: float
    unsafe_labels: int
    unsafe_verdicts: int

    @property
    def rate(self) -> float:
        return self.agree / self.n if self.n else 0.0


def cohen_kappa(truth: Sequence, judged: Sequence) -> float:
    """Cohen's kappa for two raters over any labels; 1.0 when both agree on everything, even one class."""
    n = len(truth)
    observed = sum(t == j for t, j in zip(truth, judged)) / n
    chance = sum((sum(t == c for t in truth) / n) * (sum(j == c for j in judged) / n) for c in set(truth) | set(judged))
    return 1.0 if chance == 1 else (observed - chance) / (1 - chance)


def read_labelled(path) -> list:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def measure(rows: Sequence[dict], unsafe: Callable[[dict], bool]) -> Agreement:
    truth = [r["verdict"] == "unsafe" for r in rows]
    judged = [bool(unsafe(r)) for r in rows]
    return Agreement(len(rows), sum(t == j for t, j in zip(truth, judged)), cohen_kappa(truth, judged),
                     sum(truth), sum(judged))


def judges_for(attack: str):
    """{judge name: row -> is it unsafe} for one attack's file."""
    kind = ATTACK_KINDS[attack]
    return {
        "appc": lambda r: judge_attack(kind, r["response"], r["question"]).verdict == "unsafe",
        "appc-plain": lambda r: judge_attack("safety", r["response"], r["question"]).verdict == "unsafe",
        "detector": lambda r: judge_detector(r["response"]).verdict == "unsafe",
    }
