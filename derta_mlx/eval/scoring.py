"""Helpfulness: GSM8K final numbers, MMLU option letters, and whether a response answered at all.

The paper graded GSM8K and MMLU by hand; these rules are the usual automatic stand-ins,
written so that a stated final answer beats a number that merely appears in the working.
"""

import re
from dataclasses import dataclass
from typing import Optional

from derta_mlx.data.detector import detect_refusal

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_FINAL_NUMBER = [
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}"),
    re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)?\s*[:=]?\s*(" + _NUMBER + ")", re.IGNORECASE),
]
_ANY_NUMBER = re.compile(_NUMBER)
_OPTION_LINE = re.compile(r"^\s*-?\s*\(([A-J])\)\s*(.+?)\s*$", re.MULTILINE)
_LETTER_PATTERNS = [
    re.compile(r"(?i:answer|option|choice)\s*(?i:is|:)?\s*(?i:option\s*)?\(?([A-J])\b\)?"),
    re.compile(r"^\s*\(?([A-J])\)?\s*(?:[.):]|$)", re.MULTILINE),
    re.compile(r"\(([A-J])\)"),
]


@dataclass(frozen=True)
class Score:
    answered: bool
    extracted: Optional[str]
    correct: Optional[bool]  # None for open prompts


def _number(text: str) -> Optional[float]:
    cleaned = text.replace(",", "").replace("$", "").rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def gsm8k_gold(answer: str) -> Optional[float]:
    """GSM8K's gold: the number after "####" in a worked answer, else the last number."""
    if "####" in answer:
        found = _ANY_NUMBER.search(answer.split("####")[-1])
    else:
        numbers = _ANY_NUMBER.findall(answer)
        found = numbers[-1] if numbers else None
        return _number(found) if found else None
    return _number(found.group(0)) if found else None


def extract_number(response: str) -> Optional[str]:
    """The final answer of a worked solution: "#### N", "\\boxed{N}", "the answer is N", else the last number."""
    for pattern in _FINAL_NUMBER:
        found = pattern.findall(response)
        if found:
            return found[-1].replace(",", "").replace("$", "").rstrip(".")
    numbers = _ANY_NUMBER.findall(response)
    return numbers[-1].replace(",", "").replace("$", "").rstrip(".") if numbers else None


def mmlu_gold(answer: str) -> str:
    return re.sub(r"[^A-Ja-j]", "", answer).upper()[:1]


def mmlu_options(question: str) -> dict:
    """{"A": "text", ...} from the official "-(A) text" option lines."""
    return {letter: text for letter, text in _OPTION_LINE.findall(question)}


def extract_letter(response: str, question: str = "") -> Optional[str]:
    """The option letter a response picks: "answer is (B)", a leading "B.", "(B)", or the one
    option whose text it quotes."""
    options = mmlu_options(question)
    valid = set(options) or set("ABCD")
    for pattern in _LETTER_PATTERNS:
        for letter in pattern.findall(response):
            if letter.upper() in valid:
                return letter.upper()
    quoted = [letter for letter, text in options.items() if text and text.lower() in response.lower()]
    return quoted[0] if len(quoted) == 1 else None


def answered(response: str) -> bool:
    """It said something (a bare "(C)" counts), and the refusal reader finds no full or partial refusal."""
    if not re.search(r"\w", response):
        return False
    return not detect_refusal(response).refuses


def score(kind: str, response: str, question: str, answer: Optional[str]) -> Score:
    did = answered(response)
    if kind == "gsm8k":
        got = extract_number(response)
        gold = gsm8k_gold(answer or "")
        value = _number(got) if got is not None else None
        return Score(did, got, value is not None and gold is not None and abs(value - gold) < 1e-6)
    if kind == "mmlu":
        got = extract_letter(response, question)
        return Score(did, got, got is not None and got == mmlu_gold(answer or ""))
    return Score(did, None, None)
