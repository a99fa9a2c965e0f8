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
    p_refusal: np.ndarray  # (|r|,): P(any refusal token) after r_<t, t = 1..|r|


def example_ids(tokenizer, template: Template, example: ProbeExample):
    """(prompt ids, harmful ids) built per segment exactly as training builds them."""
    prompt = prompt_ids(tokenizer, template.prompt(example.question, tokenizer))
    harmful = continuation_ids(tokenizer, template.response_lead + example.harmful_response)
    return prompt, harmful


def refusal_curve(model, tokenizer, template: Template, example: ProbeExample, refusal_ids: Sequence[int]) -> Curve:
    prompt, harmful = example_ids(tokenizer, template, example)
    inputs = mx.array([prompt + harmful[:-1]])
    logits = model(inputs)[0, len(prompt) - 1 :].astype(mx.float32)
    probs = mx.softmax(logits, axis=-1)[:, list(refusal_ids)].sum(axis=-1)
    return Curve(example.id, np.array(probs))


def _greedy(model, prompt: List[int], max_tokens: int, stop_ids) -> List[int]:
    from mlx_lm.generate import generate_step

    out = []
    for token, _ in generate_step(mx.array(prompt), model, max_tokens=max_tokens,
                                  sampler=lambda logprobs: mx.argmax(logprobs, axis=-1)):
        token = int(token)
        if token in stop_ids:
            break
        out.append(token)
    return out


def continue_from(model, tokenizer, template: Template, example: ProbeExample, positions: Sequence[int],
                  max_tokens: int = 32) -> List[Continuation]:
    prompt, harmful = example_ids(tokenizer, template, example)
    stop_ids = set(getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id])
    results = []
    for k in positions:
        k = min(k, len(harmful))
        text = tokenizer.decode(_greedy(model, prompt + harmful[:k], max_tokens, stop_ids))
        verdict = detect_refusal(text)
        results.append(Continuation(example.id, k, text, verdict.refuses,
                                    verdict.start if verdict.refuses else -1))
    return results


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
    refuses = {k: [] for k in positions}
    probs = {k: [] for k in positions}
    for example in examples:
        curve = refusal_curve(model, tokenizer, template, example, refusal_ids)
        for k, result in zip(positions, continue_from(model, tokenizer, template, example, positions, max_tokens)):
            refuses[k].append(result.refuses)
            probs[k].append(float(curve.p_refusal[min(result.k, len(curve.p_refusal) - 1)]))
    return [PrefixRow(k, float(np.mean(refuses[k])), float(np.mean(probs[k])), len(probs[k])) for k in positions]
