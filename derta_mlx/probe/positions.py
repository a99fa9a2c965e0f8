"""Probing refusal inside a harmful answer (the quantity DeRTa trains).

  (curves.py       teacher-forced: one forward pass over prompt + harmful response gives
                   P(refusal token | q, first k harmful tokens) for every k, batched)
  probe_examples   continuation: prompt + the first k harmful units (tokens or words), decoded
                   greedily, judged by the refusal detector and put in a coherence class
                   (coherence.py: a refusal sentence, a re-refusal or a token loop), next to the
                   curve's value at k and P(refusal again): the refusal tokens' probability right
                   after prompt + k harmful tokens + the refusal token (high = it will repeat).
  summarise        per position over many examples: refusal rate, the coherence classes' rates,
                   mean P(refusal) and mean P(refusal again).

Functions take a loaded model and tokenizer and return plain dataclasses; nothing prints. Long
ones take `progress(done, total)` (progress.py draws it).
"""

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import mlx.core as mx
import numpy as np

from derta_mlx.data.detector import PARTIAL, detect_refusal
from derta_mlx.data.prefix import word_ends
from derta_mlx.data.segments import continuation_ids
from derta_mlx.data.templates import Template
from derta_mlx.probe.coherence import classify
from derta_mlx.probe.curves import (
    Curve,
    ProbeExample,
    example_ids,
    next_refusal_probs,
    padded,
    refusal_mass,
    refusal_probs_at,
)

Progress = Optional[Callable[[int, int], None]]

# Sequences decoded at once (mlx-lm's completion_batch_size, 32 by default): decoding reads every
# weight once per step, so wider steps cost less per token (measured: bench/probe_speed.py).
DECODE_BATCH = 64
PREFILL_BATCH = 8  # examples prefilled together by probe_examples


@dataclass(frozen=True)
class PositionResult:
    position: int  # k in the requested unit
    tokens: int  # harmful tokens given (k in tokens, clipped to the response)
    p_refusal: float  # teacher-forced P(refusal) at that point
    refuses: bool  # does the greedy continuation refuse (fully or partly)?
    text: str  # the continuation
    refusal_char: int  # where the refusal starts in `text`, -1 if it does not refuse
    coherence: str = ""  # its class (coherence.CLASSES): coherent, re-refusal, token loop, ...
    p_again: float = float("nan")  # P(refusal token again | q, first k harmful tokens, refusal token)
    label: str = ""  # the reader's three-way label (detector.LABELS): compliance, refusal or partial


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
    coherent: float = 0.0  # share of continuations that refuse with a sentence
    re_refusal: float = 0.0  # ... that refuse, then start refusing again
    token_loop: float = 0.0  # ... that repeat one word (refusing or not)
    partial: float = 0.0  # ... that refuse only in part (refuse, then go on with the answer; or the reverse)
    mean_p_again: float = float("nan")  # mean P(refusal token again) after the refusal token


def continue_many(model, tokenizer, prompts: List[List[int]], max_tokens: int = 32,
                  temperature: float = 0.0, top_p: float = 1.0, caches: Optional[List[list]] = None,
                  progress: Progress = None) -> List[str]:
    """Continuations of many prompts, batched by mlx-lm's batch_generate (greedy by default);
    `caches` (per prompt, mlx-lm's per-layer KV caches) hold what precedes each prompt.
    `progress(done, len(prompts))` counts continuations by tokens generated so far."""
    from mlx_lm.generate import batch_generate
    from mlx_lm.sample_utils import make_sampler

    if not prompts:
        return []
    sampler = make_sampler(temp=temperature, top_p=top_p)
    if progress:
        sampler = _counting(sampler, lambda tokens: progress(min(tokens // max_tokens, len(prompts) - 1), len(prompts)))
    # Prompts after a cache are a token or two: read them all in one step (mlx-lm reads 8 at a
    # time, sized for whole prompts, which cost the main job's probe about a third of its time).
    short = {"prefill_batch_size": DECODE_BATCH} if caches is not None else {}
    texts = batch_generate(model, tokenizer, prompts, prompt_caches=caches, max_tokens=max_tokens, sampler=sampler,
                           completion_batch_size=DECODE_BATCH, **short).texts
    if progress:
        progress(len(prompts), len(prompts))
    return texts


def _counting(sampler, on_tokens: Callable[[int], None]):
    """`sampler`, also reporting the tokens sampled so far: mlx-lm's batch generator samples every
    decode step of the whole batch with one call, the one hook it offers inside generation."""
    sampled = 0

    def sample(logprobs):
        nonlocal sampled
        sampled += logprobs.shape[0]
        on_tokens(sampled)
        return sampler(logprobs)

    return sample


def tokens_for_words(tokenizer, template: Template, example: ProbeExample, words: Sequence[int]) -> List[int]:
    """How many harmful tokens the first k words of the response are, for each k."""
    ends = word_ends(example.harmful_response)
    out = []
    for k in words:
        k = min(k, len(ends))
        text = template.response_lead + example.harmful_response[: ends[k - 1]] if k else ""
        out.append(len(continuation_ids(tokenizer, text)))
    return out


def answer_lengths(tokenizer, template: Template, examples: Sequence[ProbeExample], unit: str) -> List[int]:
    """Each harmful answer's length in the unit positions count (tokens or words)."""
    if unit == "word":
        return [len(word_ends(e.harmful_response)) for e in examples]
    return [len(example_ids(tokenizer, template, e)[1]) for e in examples]


def _branch(cache: list, row: int, length: int) -> list:
    """A batch-of-one copy of row `row` of per-layer KV caches, holding its first `length` tokens."""
    from mlx_lm.models.cache import KVCache

    out = []
    for layer in cache:
        branch = KVCache()
        branch.keys = layer.keys[row : row + 1, :, :length, :]
        branch.values = layer.values[row : row + 1, :, :length, :]
        branch.offset = length
        out.append(branch)
    return out


def _next_token_probs(model, caches: List[list], token: int, refusal_ids: List[int], batch_size: int = 32):
    """P(any refusal token) after feeding `token` on each of `caches` (batched, left-padded)."""
    from mlx_lm.models.cache import BatchKVCache

    out = []
    for start in range(0, len(caches), batch_size):
        chunk = caches[start : start + batch_size]
        merged = [BatchKVCache.merge([rows[layer] for rows in chunk]) for layer in range(len(chunk[0]))]
        out.extend(refusal_mass(model(mx.array([[token]] * len(chunk)), cache=merged)[:, -1], refusal_ids).tolist())
    return out


def _can_branch(model) -> bool:
    """Whether the model's cache is mlx-lm's plain KVCache, which can be cut at any length."""
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    return all(type(c) is KVCache for c in make_prompt_cache(model))


def probe_steps(n_examples: int, n_positions: int) -> int:
    """What probe_examples' progress counts to: each example prefilled, then each continuation."""
    return n_examples * (1 + n_positions)


def probe_examples(model, tokenizer, template: Template, refusal_ids: Sequence[int],
                   examples: Sequence[ProbeExample], positions: Sequence[int], unit: str = "token",
                   max_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
                   refusal_token: Optional[int] = None, progress: Progress = None,
                   full_curve: bool = True, branch: bool = True) -> List[ExampleProbe]:
    """For each example: its curve, and the continuation from each position, all batched.
    `refusal_token` (the token RTO trains) gives P(refusal again) after it; None skips that.
    `full_curve=False` computes P(refusal) only at the probed positions (the LM head over every
    harmful token costs more than the blocks for a small model with a big vocabulary); the
    curve is then NaN elsewhere. `progress(done, total)` counts examples prefilled, then
    continuations generated.

    Examples are prefilled once, PREFILL_BATCH at a time (prompt + harmful response,
    right-padded), and each row's KV cache is cut at every position, so no position re-reads the
    prompt; causal attention keeps a row's padding out of every cut. Models whose cache cannot be
    cut (rotating or quantised caches), and `branch=False` (bench/probe_speed.py's baseline),
    re-read prompt + prefix at each position instead."""
    from mlx_lm.models.cache import make_prompt_cache

    model.eval()
    ids = list(refusal_ids)
    branching = branch and _can_branch(model)
    curves, prompts, cuts, caches, full_caches = [], [], [], [], []
    total = probe_steps(len(examples), len(positions))

    def report(done):
        if progress:
            progress(done, total)

    for start in range(0, len(examples), PREFILL_BATCH):
        chunk = examples[start : start + PREFILL_BATCH]
        pairs = [example_ids(tokenizer, template, example) for example in chunk]
        chunk_cuts = [[min(k, len(harmful)) for k in (tokens_for_words(tokenizer, template, example, positions)
                                                       if unit == "word" else positions)]
                      for example, (_, harmful) in zip(chunk, pairs)]
        keep = [len(p) + len(h) if full_curve else len(p) + max(c) for (p, h), c in zip(pairs, chunk_cuts)]
        batch = padded([(p + h)[:n] for (p, h), n in zip(pairs, keep)])
        width = batch.shape[1]
        reads = [list(range(len(p) - 1, len(p) + len(h))) if full_curve else [len(p) - 1 + k for k in c]
                 for (p, h), c in zip(pairs, chunk_cuts)]
        flat = [row * width + i for row, r in enumerate(reads) for i in r]
        cache = make_prompt_cache(model) if branching else None
        probs = refusal_probs_at(model, batch, flat, ids, cache)
        offset = 0
        for row, (example, (prompt, harmful), read, row_cuts) in enumerate(zip(chunk, pairs, reads, chunk_cuts)):
            curve = np.full(len(harmful) + 1, np.nan, dtype=np.float32)
            curve[[i - len(prompt) + 1 for i in read]] = probs[offset : offset + len(read)]
            offset += len(read)
            curves.append(Curve(example.id, curve))
            for k in row_cuts:
                cuts.append(k)
                prompts.append(prompt + harmful[:k])
                if branching:
                    caches.append(_branch(cache, row, len(prompts[-1]) - 1))
                    if refusal_token is not None:
                        full_caches.append(_branch(cache, row, len(prompts[-1])))
        report(len(curves))
    again = [float("nan")] * len(prompts)
    if refusal_token is not None:
        if branching:
            again = _next_token_probs(model, full_caches, refusal_token, ids)
        else:
            again = next_refusal_probs(model, [p + [refusal_token] for p in prompts], ids)
    generated = (lambda done, _: report(len(examples) + done)) if progress else None
    if branching:
        texts = continue_many(model, tokenizer, [p[-1:] for p in prompts], max_tokens, temperature, top_p, caches,
                              generated)
    else:
        texts = continue_many(model, tokenizer, prompts, max_tokens, temperature, top_p, progress=generated)
    texts, cuts, again = iter(texts), iter(cuts), iter(again)
    results = []
    for example, curve in zip(examples, curves):
        rows = []
        for position in positions:
            k, text = next(cuts), next(texts)
            verdict = detect_refusal(text)
            rows.append(PositionResult(position, k, float(curve.p_refusal[k]), verdict.refuses, text,
                                       verdict.start if verdict.refuses else -1, classify(text), next(again),
                                       verdict.label))
        results.append(ExampleProbe(example.id, curve.p_refusal, rows))
    return results


def summarise(results: Sequence[ExampleProbe], positions: Sequence[int]) -> List[PositionSummary]:
    out = []
    for i, position in enumerate(positions):
        cells = [r.positions[i] for r in results]

        def share(name):
            return float(np.mean([c.coherence == name for c in cells]))

        out.append(PositionSummary(position, float(np.mean([c.refuses for c in cells])),
                                   float(np.mean([c.p_refusal for c in cells])), len(cells),
                                   share("coherent"), share("re-refusal"), share("token loop"),
                                   float(np.mean([c.label == PARTIAL for c in cells])),
                                   float(np.mean([c.p_again for c in cells]))))
    return out

