"""One refusal transition: every safe target opens with the refusal token RTO trains.

RTO teaches "after any harmful prefix, the next token is the refusal token T"; MLE with a
harmful prefix teaches what follows the transition. The two only meet when the safe targets
*begin with T* in their mid-answer context. If they do not (the official code's "Sorry" 19701
starts none of its " I'm sorry, ..." targets), the model learns to emit T but never what comes
after it, and from inside a harmful answer repeats it ("sorry sorry sorry").

So each safe response is normalised to open with the refusal opening (default "Sorry"), by one
stated rule (`normalise_safe`):

  1. it already opens with the opening word            kept      "Sorry, I can't ..."
  2. it opens with another apology                     replaced  "I'm sorry, but I can't ..."
     ("I'm sorry", "I am sorry", "I apologise",                  -> "Sorry, but I can't ..."
     "My apologies", "Apologies")
  3. anything else                                     prefixed  "I won't help with that."
                                                                 -> "Sorry, I won't help with that."

and its ids are built as [T] + the ids of the rest after the opening word, so the first target
id is T whatever the tokenizer does with the joined text (SmolLM2 splits " Sorry" in two).
`refusal_opening: none` keeps the responses as written; the share of safe targets that start
with T is then reported (and warned about) instead of guaranteed.
"""

import re
from dataclasses import dataclass

NO_OPENING = "none"
_APOLOGY_LEAD = re.compile(
    r"^(?:I['\u2019]m\s+(?:so\s+|very\s+|really\s+)?sorry|I\s+am\s+(?:so\s+|very\s+)?sorry|I\s+apologi[sz]e"
    r"|My\s+apologies|Apologies|Sorry)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Normalised:
    text: str  # the safe response as trained: the opening, then `rest`
    rest: str  # what follows the opening word, e.g. ", I can't help with that."
    rule: str  # kept | replaced | prefixed | as written


def opening_word(opening: str) -> str:
    """The word of the opening that the refusal token spells ("Sorry" of "Sorry")."""
    return opening.split()[0] if opening.split() else ""


def normalise_safe(text: str, opening: str = "Sorry") -> Normalised:
    """`text` made to open with `opening` by the module's rule (NO_OPENING: unchanged)."""
    text = text.strip()
    if opening == NO_OPENING:
        return Normalised(text, text, "as written")
    word = opening_word(opening)
    if text.lower().startswith(opening.lower()) and not text[len(opening) : len(opening) + 1].isalnum():
        trained, rule = opening + text[len(opening) :], "kept"
    elif (lead := _APOLOGY_LEAD.match(text)) and word.lower() in ("sorry", "apologies"):
        trained, rule = opening + text[lead.end() :], "replaced"
    else:
        first = text.split()[0] if text.split() else ""
        keep_case = first == "I" or first.startswith(("I'", "I\u2019")) or first.isupper()
        body = text if keep_case or not text else text[0].lower() + text[1:]
        trained, rule = f"{opening}, {body}", "prefixed"
    return Normalised(trained, trained[len(word) :], rule)
