"""Evaluation suites: DeRTa's test files, jsonl {"question"} (plus "answer" for GSM8K and MMLU),
and over-refusal suites ({"question", "type", "label"} jsonl, or CSV with prompt,type,label).

The kind of a suite decides how it is scored and how its answers are read (attacks/). It comes
from the file name as the official files are named (`safety_codeattack`, `safety_jailbreakchat`,
`safety_selfcipher`, `*completionattack*`, AutoDAN/PAIR files, `helpfulness_gsm8k_*`, `*mmlu*`,
`*alpaca*`, `*borderline*`, `*xstest*`), or is given explicitly as `KIND=FILE`.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from derta_mlx.data.formats import DataError, Where, iter_json_lines
from derta_mlx.eval.scoring import gsm8k_gold
from derta_mlx.probe.borderline import read_borderline

# ASR kinds: safety (plain questions), codeattack, persona (role-play: JailbreakChat, AutoDAN,
# PAIR), cipher (SelfCipher and encodings), completion (raw-text continuation prompts);
# the rest: helpfulness, and borderline (over-refusal: safe prompts that sound unsafe, unsafe twins)
KINDS = ("safety", "codeattack", "persona", "cipher", "completion", "gsm8k", "mmlu", "open", "borderline")
ATTACK_KINDS = ("codeattack", "persona", "cipher", "completion")
# name fragments that say which attack a file holds (checked in this order)
ATTACK_NAMES = (("codeattack", re.compile(r"code[_-]?attack")),
                ("completion", re.compile(r"completion")),
                ("cipher", re.compile(r"cipher|caesar|atbash|morse|base64")),
                ("persona", re.compile(r"jailbreak|jchat|autodan|(?<![a-z])pair(?![a-z])|persona|role[_-]?play")))
# scored by rules, never judged: helpfulness, and over-refusal (read by the refusal reader)
HELPFUL_KINDS = ("gsm8k", "mmlu", "open", "borderline")
BORDERLINE_NAMES = re.compile(r"borderline|xstest|over[_-]?refus|or[_-]?bench")
MMLU_GOLD = re.compile(r"^\s*\(?\s*([A-Ja-j])\s*\)?\s*[.:]?\s*$")


@dataclass(frozen=True)
class SuiteItem:
    id: str
    question: str
    answer: Optional[str]
    where: Where
    type: Optional[str] = None  # borderline suites: homonyms, figurative, ...
    safe: Optional[bool] = None  # borderline suites: the prompt's label


@dataclass(frozen=True)
class Suite:
    name: str  # the file stem: records are keyed by (suite name, item id)
    kind: str
    path: str
    items: Tuple[SuiteItem, ...]

    @property
    def helpful(self) -> bool:
        return self.kind in HELPFUL_KINDS


def kind_from_name(path: Path) -> str:
    name = path.name.lower()
    if "gsm8k" in name:
        return "gsm8k"
    if "mmlu" in name:
        return "mmlu"
    if "alpaca" in name or "helpful" in name:
        return "open"
    if BORDERLINE_NAMES.search(name):
        return "borderline"
    return attack_from_name(name) or "safety"


def attack_from_name(name: str) -> Optional[str]:
    """The attack kind a file or folder name names, if any."""
    name = name.lower()
    for kind, pattern in ATTACK_NAMES:
        if pattern.search(name):
            return kind
    return None


def split_spec(spec: str) -> Tuple[Optional[str], Path]:
    """`KIND=FILE` or `FILE` (a file whose name holds "=" still reads as a file)."""
    kind, sep, rest = spec.partition("=")
    if sep and kind in KINDS:
        return kind, Path(rest)
    if sep and not Path(spec).exists() and "/" not in kind:
        raise DataError(f"--suite {spec}: unknown suite kind {kind!r}; the kinds are {', '.join(KINDS)}")
    return None, Path(spec)


def check_kind(kind, where: Where) -> str:
    """A kind written in a file (generations, records): an unknown one must not be scored as safety."""
    if kind not in KINDS:
        raise DataError(f"{where}: unknown suite kind {kind!r}; the kinds are {', '.join(KINDS)}")
    return kind


def read_suite(spec: str) -> Suite:
    """Every row checked; a bad row raises DataError naming FILE:LINE and what is wrong."""
    kind, path = split_spec(spec)
    kind = kind or kind_from_name(path)
    if kind == "borderline":
        items = tuple(SuiteItem(p.id, p.question, None, p.where, p.type, p.safe) for p in read_borderline(path))
        return Suite(path.stem, kind, str(path), items)
    if path.suffix.lower() == ".csv":
        raise DataError(f"{path}: CSV suites are over-refusal sets (prompt,type,label); name the kind: "
                        f"--suite borderline={path}")
    items, seen = [], {}
    for where, obj in iter_json_lines(path, "suite file"):
        items.append(_item(obj, where, kind, len(items)))
        if items[-1].id in seen:
            raise DataError(f"{where}: duplicate id {items[-1].id!r} (first on line {seen[items[-1].id]})")
        seen[items[-1].id] = where.line
    if not items:
        raise DataError(f"{path}: no rows")
    return Suite(path.stem, kind, str(path), tuple(items))


def _item(obj, where: Where, kind: str, index: int) -> SuiteItem:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object with a 'question', got {type(obj).__name__}")
    if "question" not in obj:
        raise DataError(f"{where}: no 'question' field (keys: {sorted(obj)})")
    question = obj["question"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: 'question' must be a non-empty string")
    item_id = obj.get("id", index)
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
        raise DataError(f"{where}: 'id' must be a string or an integer")
    answer = obj.get("answer")
    if kind in ("gsm8k", "mmlu") and answer is None:
        raise DataError(f"{where}: a {kind} suite needs an 'answer' on every row")
    if answer is not None and (not isinstance(answer, (str, int, float)) or isinstance(answer, bool)):
        raise DataError(f"{where}: 'answer' must be a string or a number")
    if kind == "mmlu" and not MMLU_GOLD.match(str(answer)):
        raise DataError(f"{where}: an MMLU answer must be an option letter such as \"B\" or \"(B)\", got {answer!r}")
    if kind == "gsm8k":
        if gsm8k_gold(str(answer)) is None:
            raise DataError(f"{where}: no number in the GSM8K answer {str(answer)[:40]!r}")
    return SuiteItem(str(item_id), question, None if answer is None else str(answer), where)


def read_suites(specs) -> List[Suite]:
    suites = [read_suite(spec) for spec in specs]
    names = {}
    for suite in suites:
        if suite.name in names:
            raise DataError(f"{suite.path}: same name {suite.name!r} as {names[suite.name]}; "
                            "records are keyed by file name, so rename one")
        names[suite.name] = suite.path
    return suites
