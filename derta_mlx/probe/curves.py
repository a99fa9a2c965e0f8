"""Teacher-forced P(refusal) inside a harmful answer: one forward pass over prompt + harmful
response gives P(refusal token | q, first k harmful tokens) for every k (batched, right-padded;
the LM head runs only where it is read), and the most likely next tokens at a position."""

from dataclasses import dataclass
from typing import List, Sequence

import mlx.core as mx
import numpy as np

from derta_mlx.data.segments import continuation_ids, prompt_ids
from derta_mlx.data.templates import Template
from derta_mlx.models.logits import logits_at


@dataclass(frozen=True)
class ProbeExample:
    question: str
    harmful_response: str
    id: str = ""


@dataclass(frozen=True)
class Curve:
    example_id: str
    p_refusal: np.ndarray  # (|r|+1,): [k] = P(any refusal token | q, first k harmful tokens)


def example_ids(tokenizer, template: Template, example: ProbeExample):
    """(prompt ids, harmful ids) built per segment exactly as training builds them."""
    prompt = prompt_ids(tokenizer, template.prompt(example.question, tokenizer))
    harmful = continuation_ids(tokenizer, template.response_lead + example.harmful_response)
    return prompt, harmful


def padded(sequences: List[List[int]]) -> np.ndarray:
    width = max(len(s) for s in sequences)
    batch = np.zeros((len(sequences), width), dtype=np.int32)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = sequence
    return batch


def refusal_mass(logits: mx.array, refusal_ids: List[int]) -> np.ndarray:
    """P(any refusal token) from (N, vocab) logits."""
    return np.array(mx.softmax(logits.astype(mx.float32), axis=-1)[:, refusal_ids].sum(axis=-1))


def refusal_probs_at(model, batch: np.ndarray, positions: List[int], refusal_ids: List[int],
                     cache=None) -> np.ndarray:
    """P(any refusal token) at flat `positions` of a right-padded batch; the LM head runs only
    there (logits.py), not over every prompt token. `cache` (mlx-lm's) is filled on the way."""
    positions = mx.array(positions, dtype=mx.int32)
    return refusal_mass(logits_at(model, mx.array(batch), positions, cache), refusal_ids)


def refusal_curves(model, tokenizer, template: Template, examples: Sequence[ProbeExample],
                   refusal_ids: Sequence[int], batch_size: int = 8) -> List[Curve]:
    """Teacher-forced curves of many examples, batched (right-padded; padding never read)."""
    curves = []
    ids = list(refusal_ids)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        pairs = [example_ids(tokenizer, template, e) for e in chunk]
        batch = padded([p + h for p, h in pairs])
        spans = [(row * batch.shape[1] + len(p) - 1, row * batch.shape[1] + len(p) + len(h))
                 for row, (p, h) in enumerate(pairs)]
        probs = refusal_probs_at(model, batch, [i for a, b in spans for i in range(a, b)], ids)
        offset = 0
        for example, (a, b) in zip(chunk, spans):
            curves.append(Curve(example.id, probs[offset : offset + b - a]))
            offset += b - a
    return curves


def next_refusal_probs(model, sequences: List[List[int]], refusal_ids: Sequence[int],
                       batch_size: int = 8) -> List[float]:
    """P(any refusal token | sequence) at the end of each sequence, batched (right-padded)."""
    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        batch = padded(chunk)
        last = [row * batch.shape[1] + len(s) - 1 for row, s in enumerate(chunk)]
        out.extend(refusal_probs_at(model, batch, last, list(refusal_ids)).tolist())
    return out


def refusal_curve(model, tokenizer, template: Template, example: ProbeExample, refusal_ids) -> Curve:
    return refusal_curves(model, tokenizer, template, [example], refusal_ids)[0]


def top_next_tokens(model, tokenizer, template: Template, example: ProbeExample, k: int, top: int = 5):
    """The `top` most likely next tokens after k harmful tokens: [(text, probability)]."""
    prompt, harmful = example_ids(tokenizer, template, example)
    logits = model(mx.array([prompt + harmful[: min(k, len(harmful))]]))[0, -1].astype(mx.float32)
    probs = np.array(mx.softmax(logits))
    best = np.argsort(-probs)[:top]
    return [(tokenizer.decode([int(i)]), float(probs[i])) for i in best]
