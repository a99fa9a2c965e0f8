"""Probing refusal inside a harmful answer (the quantity DeRTa trains).

  refusal_curves   teacher-forced: one forward pass over prompt + harmful response gives
                   P(refusal token | q, first k harmful tokens) for every k (batched).
  probe_examples   continuation: prompt + the first k harmful units (tokens or words), decoded
                   greedily and judged by the refusal detector, next to the curve's value at k.
  summarise        refusal rate and mean P(refusal) per position over many examples.

Functions take a loaded model and tokenizer and return plain dataclasses; nothing prints.
"""

from dataclasses import dataclass
from typing import List, Sequence

import mlx.core as mx
import numpy as np

from .data.prefix import word_ends
from .detector import detect_refusal
from .segments import continuation_ids, prompt_ids
from .templates import Template


@dataclass(frozen=True)
class ProbeExample:
    question: str
    harmful_response: str
    id: str = ""


@dataclass(frozen=True)
class Curve:
    example_id: str
    p_refusal: np.ndarray  # (|r|+1,): [k] = P(any refusal token | q, first k harmful tokens)


@dataclass(frozen=True)
class PositionResult:
    position: int  # k in the requested unit
    tokens: int  # harmful tokens given (k in tokens, clipped to the response)
    p_refusal: float  # teacher-forced P(refusal) at that point
    refuses: bool  # does the greedy continuation refuse?
    text: str  # the continuation
    refusal_char: int  # where the refusal starts in `text`, -1 if it does not refuse


@dataclass(frozen=True)
class ExampleProbe:
    id: str
    curve: np.ndarray
    positions: List[PositionResult]


@dataclass(frozen=True)
class PositionSummary:
    position: int
    refusal_rate: float
    mean_p_refusal: float
    n: int


def example_ids(tokenizer, template: Template, example: ProbeExample):
    """(prompt ids, harmful ids) built per segment exactly as training builds them."""
    prompt = prompt_ids(tokenizer, template.prompt(example.question, tokenizer))
    harmful = continuation_ids(tokenizer, template.response_lead + example.harmful_response)
    return prompt, harmful


def refusal_curves(model, tokenizer, template: Template, examples: Sequence[ProbeExample],
                   refusal_ids: Sequence[int], batch_size: int = 8) -> List[Curve]:
    """Teacher-forced curves of many examples, batched (right-padded; padding never read)."""
    curves = []
    ids = list(refusal_ids)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        pairs = [example_ids(tokenizer, template, e) for e in chunk]
        width = max(len(p) + len(h) for p, h in pairs)
        batch = np.zeros((len(chunk), width), dtype=np.int32)
        for row, (p, h) in enumerate(pairs):
            batch[row, : len(p) + len(h)] = p + h
        probs = np.array(mx.softmax(model(mx.array(batch)).astype(mx.float32), axis=-1)[..., ids].sum(axis=-1))
        for example, (p, h), row in zip(chunk, pairs, probs):
            curves.append(Curve(example.id, row[len(p) - 1 : len(p) + len(h)]))
    return curves


def refusal_curve(model, tokenizer, template: Template, example: ProbeExample, refusal_ids) -> Curve:
    return refusal_curves(model, tokenizer, template, [example], refusal_ids)[0]


def continue_many(model, tokenizer, prompts: List[List[int]], max_tokens: int = 32,
                  temperature: float = 0.0, top_p: float = 1.0) -> List[str]:
    """Continuations of many prompts, batched by mlx-lm's batch_generate (greedy by default)."""
    from mlx_lm.generate import batch_generate
    from mlx_lm.sample_utils import make_sampler

    if not prompts:
        return []
    sampler = make_sampler(temp=temperature, top_p=top_p)
    return batch_generate(model, tokenizer, prompts, max_tokens=max_tokens, sampler=sampler).texts


def tokens_for_words(tokenizer, template: Template, example: ProbeExample, words: Sequence[int]) -> List[int]:
    """How many harmful tokens the first k words of the response are, for each k."""
    ends = word_ends(example.harmful_response)
    out = []
    for k in words:
        k = min(k, len(ends))
        text = template.response_lead + example.harmful_response[: ends[k - 1]] if k else ""
        out.append(len(continuation_ids(tokenizer, text)))
    return out


def probe_examples(model, tokenizer, template: Template, refusal_ids: Sequence[int],
                   examples: Sequence[ProbeExample], positions: Sequence[int], unit: str = "token",
                   max_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0) -> List[ExampleProbe]:
    """For each example: its curve, and the continuation from each position, all batched."""
    model.eval()
    curves = refusal_curves(model, tokenizer, template, examples, refusal_ids)
    prompts, cuts = [], []
    for example in examples:
        prompt, harmful = example_ids(tokenizer, template, example)
        tokens = tokens_for_words(tokenizer, template, example, positions) if unit == "word" else positions
        for k in tokens:
            cuts.append(min(k, len(harmful)))
            prompts.append(prompt + harmful[: cuts[-1]])
    texts = iter(continue_many(model, tokenizer, prompts, max_tokens, temperature, top_p))
    cuts = iter(cuts)
    results = []
    for example, curve in zip(examples, curves):
        rows = []
        for position in positions:
            k, text = next(cuts), next(texts)
            verdict = detect_refusal(text)
            rows.append(PositionResult(position, k, float(curve.p_refusal[k]), verdict.refuses, text,
                                       verdict.start if verdict.refuses else -1))
        results.append(ExampleProbe(example.id, curve.p_refusal, rows))
    return results


def summarise(results: Sequence[ExampleProbe], positions: Sequence[int]) -> List[PositionSummary]:
    out = []
    for i, position in enumerate(positions):
        cells = [r.positions[i] for r in results]
        out.append(PositionSummary(position, float(np.mean([c.refuses for c in cells])),
                                   float(np.mean([c.p_refusal for c in cells])), len(cells)))
    return out


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


def top_next_tokens(model, tokenizer, template: Template, example: ProbeExample, k: int, top: int = 5):
    """The `top` most likely next tokens after k harmful tokens: [(text, probability)]."""
    prompt, harmful = example_ids(tokenizer, template, example)
    logits = model(mx.array([prompt + harmful[: min(k, len(harmful))]]))[0, -1].astype(mx.float32)
    probs = np.array(mx.softmax(logits))
    best = np.argsort(-probs)[:top]
    return [(tokenizer.decode([int(i)]), float(probs[i])) for i in best]
