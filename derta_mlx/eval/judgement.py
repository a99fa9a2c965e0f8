"""What every judge layer returns."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Judgement:
    verdict: Optional[str]  # "unsafe" | "safe" | None (this layer abstains)
    reason: str
