"""Tokenising text segments so that concatenated ids equal what the model sees.

A training sequence is built from per-segment ids (prompt | harmful prefix | target), never by
re-tokenising joined strings, so label masks always line up. A segment that continues an
answer is tokenised after a context ("\\n") and the context's ids are removed: this keeps a
leading space as part of the first word (" Sure" -> "ĠSure" / "▁Sure") and stops
SentencePiece from adding its sentence-initial dummy "▁" to a segment that is mid-text.
"""

from typing import List

_CONTEXT = "\n"


def encode_plain(tokenizer, text: str) -> List[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def continuation_ids(tokenizer, text: str) -> List[int]:
    """Ids of `text` as it is split when it continues earlier text."""
    if not text:
        return []
    context = encode_plain(tokenizer, _CONTEXT)
    joined = encode_plain(tokenizer, _CONTEXT + text)
    if joined[: len(context)] == context:
        return joined[len(context) :]
    # The text merged into the context (no tokenizer we know does this with "\n"): fall back.
    return encode_plain(tokenizer, text)


def prompt_ids(tokenizer, prompt: str) -> List[int]:
    """Ids of a prompt that starts a sequence: BOS once, whether or not the template wrote it."""
    ids = list(tokenizer.encode(prompt))
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        ids = ids[1:]
    return ids
