"""Where a refusal starts in a generated response, in tokens (the paper's Fig. 4)."""

from typing import Sequence

from derta_mlx.data.detector import detect_refusal
from derta_mlx.data.segments import continuation_ids

# The paper's Fig. 4 buckets for where a refusal starts, in tokens of the response.
FIRST_REFUSAL_BUCKETS = ((1, 1, "1"), (2, 5, "2-5"), (6, 30, "6-30"), (31, 10**9, ">30"))


def first_refusal_token(tokenizer, text: str):
    """1-based token position where the refusal starts in a generated `text`, or None. A space
    just before the refusal belongs to its token (" Sorry" is one token), so " Sorry, ..."
    refuses at 1; a newline is a token of its own."""
    verdict = detect_refusal(text)
    if not verdict.refuses:
        return None
    return len(continuation_ids(tokenizer, text[: verdict.start].rstrip(" "))) + 1


def first_refusal_histogram(tokenizer, texts: Sequence[str]) -> dict:
    """How many responses start refusing at token 1, 2-5, 6-30, >30, or never."""
    found = [first_refusal_token(tokenizer, text) for text in texts]
    histogram = {label: sum(1 for p in found if p is not None and lo <= p <= hi)
                 for lo, hi, label in FIRST_REFUSAL_BUCKETS}
    histogram["no refusal"] = sum(1 for p in found if p is None)
    return histogram
