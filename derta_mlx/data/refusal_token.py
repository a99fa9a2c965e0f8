"""Which token RTO trains the model to emit, resolved from the tokenizer.

Rules (the catalogue's `refusal` field, or `--refusal`):
  auto          the token the refusal opening (data/opening.py, default "Sorry") starts an answer
                with: the opening's word after the template's response lead when that is one
                whole-word token, else the word glued to what precedes it. So every safe target
                and every RTO position share one token (one refusal transition):
                  LLaMA-3, DeRTa template  " Sorry" 33386     Mistral, DeRTa template "▁Sorry" 19385
                  LLaMA-3, chat template   "Sorry" 19701      SmolLM2 (splits " Sorry") "Sorry" 37388
                With `refusal_opening: none`, the first of " Sorry", " sorry", "Sorry" that is one
                token (the rule before refusal openings existed).
  official      the no-space vocabulary entry "Sorry" the official code hard-codes
                (LLaMA-3 19701, Mistral 23166), for compatibility.
  space         " Sorry" and nothing else.
  token:TEXT    TEXT, which must be exactly one token (a leading space counts).
  phrase:TEXT   the first token of TEXT as it is tokenised inside an answer ("phrase: I cannot").
  id:N          token id N.
"""

from dataclasses import dataclass

from derta_mlx.common.errors import UserError
from derta_mlx.data.opening import NO_OPENING, opening_word
from derta_mlx.data.segments import continuation_ids, encode_plain

AUTO_CANDIDATES = (" Sorry", " sorry", "Sorry")
PROBE_VARIANTS = (" Sorry", "Sorry", " sorry", "sorry")


@dataclass(frozen=True)
class RefusalTarget:
    token_id: int
    piece: str  # the vocabulary entry, e.g. "ĠSorry" or "▁Sorry"
    text: str  # what it reads as in an answer, e.g. " Sorry"
    rule: str
    variants: tuple  # ((id, text), ...): every one-token "sorry" form, for probing

    @property
    def probe_ids(self) -> list:
        """The token and its variants, sorted: the ids whose probability a probe reads."""
        return sorted({self.token_id, *[i for i, _ in self.variants]})


def _vocab_id(tokenizer, piece: str):
    return tokenizer.get_vocab().get(piece)


def _single_token(tokenizer, text: str):
    """The id of `text` when it is exactly one token, else None."""
    if not text.startswith(" "):
        # A word glued to the previous text is a vocabulary entry without a space marker.
        return _vocab_id(tokenizer, text)
    ids = continuation_ids(tokenizer, text)
    return ids[0] if len(ids) == 1 else None


def _piece(tokenizer, token_id: int) -> str:
    return tokenizer.convert_ids_to_tokens(token_id)


def _describe_split(tokenizer, text: str) -> str:
    ids = continuation_ids(tokenizer, text) if text.startswith(" ") else encode_plain(tokenizer, text)
    pieces = [_piece(tokenizer, i) for i in ids]
    return f"{text!r} is {len(ids)} tokens here: {pieces} (ids {ids})"


def _variants(tokenizer) -> tuple:
    found = []
    for text in PROBE_VARIANTS:
        token_id = _single_token(tokenizer, text)
        if token_id is not None and token_id not in [i for i, _ in found]:
            found.append((token_id, text))
    return tuple(found)


def opening_token(tokenizer, response_lead: str, opening: str):
    """(id, text) of the whole-word token the opening's word starts an answer with, or None."""
    word = opening_word(opening)
    for text in dict.fromkeys((response_lead + word, word)):
        ids = continuation_ids(tokenizer, text)
        if ids and tokenizer.decode([ids[0]]).strip() == word:
            return ids[0], text
    return None


RULE_FORMS = "auto, official, space, token:TEXT, phrase:TEXT or id:N"


def check_rule_form(rule: str) -> None:
    """Raise UserError for a rule of no known form; needs no tokenizer, so it runs before any weights load."""
    if rule in ("auto", "official", "space") or rule.startswith(("token:", "phrase:")):
        return
    if rule.startswith("id:"):
        try:
            int(rule[len("id:") :])
        except ValueError:
            raise UserError(f"refusal rule {rule!r}: id must be an integer") from None
        return
    raise UserError(f"unknown refusal rule {rule!r}; use {RULE_FORMS}")


def resolve_refusal(tokenizer, rule: str = "auto", response_lead: str = " ",
                    opening: str = "Sorry") -> RefusalTarget:
    """Resolve a refusal rule to one token id, or raise UserError saying why it cannot.

    `response_lead` is the template's (templates.py) and `opening` the refusal opening that
    safe targets are normalised to; both matter only to the auto rule."""

    check_rule_form(rule)

    def target(token_id: int, text: str) -> RefusalTarget:
        return RefusalTarget(token_id, _piece(tokenizer, token_id), text, rule, _variants(tokenizer))

    def one_token(text: str) -> RefusalTarget:
        token_id = _single_token(tokenizer, text)
        if token_id is None:
            raise UserError(
                f"refusal rule {rule!r}: {_describe_split(tokenizer, text)}; RTO needs a single token. "
                "Try --refusal auto, phrase:TEXT (its first token) or id:N."
            )
        return target(token_id, text)

    if rule == "auto" and opening != NO_OPENING:
        found = opening_token(tokenizer, response_lead, opening)
        if found is None:
            raise UserError(
                f"the refusal opening {opening!r} does not start with a one-token word in this vocabulary "
                f"({_describe_split(tokenizer, response_lead + opening_word(opening))}); choose another with "
                "--refusal-opening, or a token with --refusal token:TEXT or id:N."
            )
        return target(*found)
    if rule == "auto":
        for text in AUTO_CANDIDATES:
            token_id = _single_token(tokenizer, text)
            if token_id is not None:
                return target(token_id, text)
        raise UserError(
            f"no one-token form of 'Sorry' in this vocabulary ({_describe_split(tokenizer, ' Sorry')}); "
            "choose one with --refusal phrase:TEXT or token:TEXT."
        )
    if rule == "official":
        return one_token("Sorry")
    if rule == "space":
        return one_token(" Sorry")
    if rule.startswith("token:"):
        return one_token(rule[len("token:") :])
    if rule.startswith("phrase:"):
        phrase = rule[len("phrase:") :]
        ids = continuation_ids(tokenizer, phrase) if phrase.startswith(" ") else encode_plain(tokenizer, phrase)
        if not ids:
            raise UserError(f"refusal rule {rule!r}: the phrase is empty")
        return target(ids[0], tokenizer.decode([ids[0]]))
    if rule.startswith("id:"):
        token_id = int(rule[len("id:") :])
        vocab_size = len(tokenizer.get_vocab())
        if not 0 <= token_id < vocab_size:
            raise UserError(f"refusal rule {rule!r}: id outside the vocabulary (size {vocab_size})")
        return target(token_id, tokenizer.decode([token_id]))
    raise AssertionError(f"check_rule_form admitted {rule!r}")  # every form it admits is handled above
