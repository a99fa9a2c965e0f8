"""The refusing-safe-answer rule: DeRTa's MLE target is a refusal, and many "safe" answers in
public data are safe without refusing ("Here are some legal ways to ...").

Where a safe answer refuses decides what fetch does with its triple:

  refuses     a refusal phrase (data.detector) inside the first sentence    kept as it is
  later       the first refusal phrase comes after the first sentence       --non-refusing
  none        no refusal phrase at all                                      --non-refusing

and `--non-refusing` says what happens to the last two:

  drop     (default) left out and counted: the MLE target stays a real refusal
  rewrite  a refusal sentence is put in front: "Sorry, I can't help with that. <the answer>", so
           the target opens with the refusal and the safe answer follows it
  keep     kept as written (training then puts the refusal opening before it, which reads badly
           for an answer that does not refuse: "Sorry, here are some legal ways ...")

Each triple written records its outcome as `safe_rule` (refuses, rewritten, kept), and
`derta-mlx data stats` counts where the safe answers of any file refuse.
"""

import re
from typing import Optional, Tuple

from derta_mlx.data.detector import detect_refusal

POLICIES = ("drop", "rewrite", "keep")
REFUSAL_SENTENCE = "Sorry, I can't help with that."
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def refusal_place(text: str) -> str:
    """Where `text` refuses: "refuses" (in its first sentence), "later" or "none"."""
    text = text.strip()
    verdict = detect_refusal(text)
    if not verdict.refuses:
        return "none"
    end = _SENTENCE_END.search(text)
    first_sentence_end = end.end() if end else len(text)
    return "refuses" if verdict.start < first_sentence_end else "later"


def apply_rule(row: dict, policy: str) -> Tuple[Optional[dict], str]:
    """(the triple to write or None, what the rule did) for a safety triple row."""
    place = refusal_place(row["safe_response"])
    if place == "refuses":
        return {**row, "safe_rule": "refuses"}, "refuses"
    if policy == "drop":
        return None, "safe answer does not refuse" if place == "none" else "safe answer refuses only later"
    if policy == "rewrite":
        return {**row, "safe_response": f"{REFUSAL_SENTENCE} {row['safe_response']}", "safe_rule": "rewritten"}, \
            "rewritten"
    return {**row, "safe_rule": "kept"}, "kept"
