"""Which attack format a file of generations holds, for `eval judge` on other tools' outputs.

In order: the file name, then its folders (the official results sit in `safety/codeattack/`,
`safety/jailbreakchat/`, ...), then the rows themselves: CodeAttack prompts and code answers,
persona prompts and channel tags, cipher prompts and undecodable-as-is answers, and
prompt+continuation strings or "Step 1:" lead-ins (completion). A third of the rows must agree.
"""

import re
from pathlib import Path
from typing import List, Optional, Tuple

from derta_mlx.eval.attacks.ciphers import english
from derta_mlx.eval.attacks.persona import TAG
from derta_mlx.eval.suites import attack_from_name

_CODE_PROMPT = re.compile(r"Follow the comments of the following|\bdecode\s*\(|my_stack|myQueue|my_string", re.IGNORECASE)
_CODE_ANSWER = re.compile(r"output_list|outputList|def decode|func decode|std::string decode|```(?:python|cpp|c\+\+|go)\b")
_PERSONA_PROMPT = re.compile(r"Developer Mode|\bDAN\b|\bAIM\b|Niccolo|jailbr|evil (?:trusted )?confidant|BetterDAN|"
                             r"\bact as\b|\brole[- ]?play|\bin character\b|Imaginative reply|Hypothetical response",
                             re.IGNORECASE)
_CIPHER_PROMPT = re.compile(r"Cipher Code|Caesar|Atbash|Morse|\bASCII\b|base64", re.IGNORECASE)
_LEAD_IN = re.compile(r"(?:step\s*1|1)\s*[:.)]\s*$", re.IGNORECASE)


def _share(rows: List[dict], test) -> float:
    return sum(1 for r in rows if test(r)) / max(1, len(rows))


def detect_kind(path, records: List[dict], strings: int = 0) -> Tuple[Optional[str], str]:
    """(attack kind or None, where it was read from)."""
    path = Path(path)
    named = attack_from_name(path.name)
    if named:
        return named, f"file name {path.name!r}"
    for folder in list(path.resolve().parents)[:3]:
        named = attack_from_name(folder.name)
        if named:
            return named, f"folder name {folder.name!r}"
    rows = records[:200]
    if strings >= len(records) / 3 or _share(rows, lambda r: _LEAD_IN.search(r["question"] or "")) >= 1 / 3:
        return "completion", "content: prompt+continuation strings or \"Step 1:\" lead-ins"
    checks = [
        ("codeattack", "CodeAttack prompts or code answers",
         lambda r: _CODE_PROMPT.search(r["question"] or "") or _CODE_ANSWER.search(r["response"])),
        ("persona", "role-play prompts or persona channel tags",
         lambda r: _PERSONA_PROMPT.search(r["question"] or "") or TAG.match(r["response"])),
        ("cipher", "cipher prompts or answers that are not English as written",
         lambda r: _CIPHER_PROMPT.search(r["question"] or "")
         or (len(r["response"].split()) >= 5 and english(r["response"]) < 0.1)),
    ]
    for kind, what, test in checks:
        share = _share(rows, test)
        if share >= 1 / 3:
            return kind, f"content: {what} in {share:.0%} of rows"
    return None, "no attack format recognised"
