"""Probing refusal inside a harmful answer (the quantity DeRTa trains).

  refusal_curve      teacher-forced: one forward pass over prompt + harmful response gives
                     P(refusal token | q, r_<t) at every position t.
  continue_from      continuation: prompt + the first k harmful tokens, decode greedily,
                     and ask the refusal detector whether the continuation refuses.

Functions take a loaded model and tokenizer and return plain dataclasses; nothing prints.
"""

from dataclasses import dataclass
from typing import List, Sequence

import mlx.core as mx
import numpy as np

from .detector import detect_refusal
from .segments import continuation_ids, prompt_ids
from .templates import Template


@dataclass(frozen=True)
class ProbeExample:
    question: str
    harmful_response: str
    id: str = ""


@dataclass(frozen=True)
class Continuation:
    example_id: str
    k: int  # harmful tokens given before decoding
    text: str
    refuses: bool
    refusal_char: int  # -1 when it does not refuse


@dataclass(frozen=True)
class Curve:
    example_id: str
    p_refusal: np.ndarray  # (|r|+1,): [k] = P(any refusal token | q, first k harmful tokens)


def example_ids(tokenizer, template: Template, example: ProbeExample):
    """(prompt ids, harmful ids) built per segment exactly as training builds them."""
    prompt = prompt_ids(tokenizer, template.prompt(example.question, tokenizer))
    harmful = continuation_ids(tokenizer, template.response_lead + example.harmful_response)
    return prompt, harmful


def refusal_curve(model, tokenizer, template: Template, example: ProbeExample, refusal_ids: Sequence[int]) -> Curve:
    prompt, harmful = example_ids(tokenizer, template, example)
    inputs = mx.array([prompt + harmful])
    logits = model(inputs)[0, len(prompt) - 1 :].astype(mx.float32)
    probs = mx.softmax(logits, axis=-1)[:, list(refusal_ids)].sum(axis=-1)
    return Curve(example.id, np.array(probs))


def continue_many(model, tokenizer, prompts: List[List[int]], max_tokens: int = 32) -> List[str]:
    """Greedy continuations of many prompts, batched by mlx-lm's batch_generate."""
    from mlx_lm.generate import batch_generate

    if not prompts:
        return []
    return batch_generate(model, tokenizer, prompts, max_tokens=max_tokens).texts


def _continuation(example_id: str, k: int, text: str) -> Continuation:
    verdict = detect_refusal(text)
    return Continuation(example_id, k, text, verdict.refuses, verdict.start if verdict.refuses else -1)


def continue_from(model, tokenizer, template: Template, example: ProbeExample, positions: Sequence[int],
                  max_tokens: int = 32) -> List[Continuation]:
    """Continuations after the first k harmful tokens, for each k (clipped to the response)."""
    prompt, harmful = example_ids(tokenizer, template, example)
    ks = [min(k, len(harmful)) for k in positions]
    texts = continue_many(model, tokenizer, [prompt + harmful[:k] for k in ks], max_tokens)
    return [_continuation(example.id, k, text) for k, text in zip(ks, texts)]


@dataclass(frozen=True)
class PrefixRow:
    k: int
    refusal_rate: float  # share of continuations that refuse
    mean_p_refusal: float  # teacher-forced P(refusal token) after k harmful tokens
    n: int


def refusal_by_prefix(model, tokenizer, template: Template, examples: Sequence[ProbeExample],
                      positions: Sequence[int], refusal_ids: Sequence[int], max_tokens: int = 24):
    """Refusal rate of greedy continuations and mean teacher-forced P(refusal), per k.

    k is clipped to each response's length, so a short response counts at its end.
    """
    model.eval()
    prompts, clipped = [], []
    curves = [c.p_refusal for c in refusal_curves(model, tokenizer, template, examples, refusal_ids)]
    for example in examples:
        prompt, harmful = example_ids(tokenizer, template, example)
        for k in positions:
            clipped.append(min(k, len(harmful)))
            prompts.append(prompt + harmful[: clipped[-1]])
    texts = iter(continue_many(model, tokenizer, prompts, max_tokens))
    refuses = {k: [] for k in positions}
    probs = {k: [] for k in positions}
    kept = iter(clipped)
    for curve in curves:
        for k in positions:
            refuses[k].append(detect_refusal(next(texts)).refuses)
            probs[k].append(float(curve[next(kept)]))
    return [PrefixRow(k, float(np.mean(refuses[k])), float(np.mean(probs[k])), len(probs[k])) for k in positions]


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
        probs = mx.softmax(model(mx.array(batch)).astype(mx.float32), axis=-1)[..., ids].sum(axis=-1)
        probs = np.array(probs)
        for example, (p, h), row in zip(chunk, pairs, probs):
            curves.append(Curve(example.id, row[len(p) - 1 : len(p) + len(h)]))
    return curves


def top_next_tokens(model, tokenizer, template: Template, example: ProbeExample, k: int, top: int = 5):
    """The `top` most likely next tokens after k harmful tokens: [(text, probability)]."""
    prompt, harmful = example_ids(tokenizer, template, example)
    logits = model(mx.array([prompt + harmful[: min(k, len(harmful))]]))[0, -1].astype(mx.float32)
    probs = np.array(mx.softmax(logits))
    best = np.argsort(-probs)[:top]
    return [(tokenizer.decode([int(i)]), float(probs[i])) for i in best]
