"""What the Probe screen's worker does: derta_mlx probe calls, in chunks so it can report and stop.

Every call goes to the MLX thread, each with the adapter switch it needs in the same call, so
a top-k lookup and a probe never see each other's setting. The model stays loaded between
probes of the same (model, adapter); base versus adapter is one load, LoRA scale 0 or 1.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from derta_mlx.api import (
    ProbeExample,
    load_probe_model,
    parse_positions,
    probe_examples,
    refusal_curves,
    set_adapter_enabled,
    top_next_tokens,
)
from tui.mlx_thread import in_mlx_thread

CHUNK = 8  # positions decoded per call: the unit of progress and of cancelling


@dataclass(frozen=True)
class ProbeRequest:
    model: Optional[str]
    adapter: Optional[str]
    compare_base: bool
    example: ProbeExample
    positions: str  # "0,5,10" (ignored when every > 0)
    every: int
    unit: str
    max_tokens: int


@dataclass
class ProbeOutcome:
    positions: List[int]
    curves: Dict[str, object] = field(default_factory=dict)  # variant -> P(refusal) per token k
    cells: Dict[str, list] = field(default_factory=dict)  # variant -> [PositionResult]
    cancelled: bool = False


class ModelCache:
    """The one loaded model, reloaded only when the model or adapter changes."""

    def __init__(self):
        self.key, self.loaded = None, None

    def get(self, spec, adapter, notify):
        if self.key != (spec, adapter):
            self.key, self.loaded = None, None
            self.loaded = in_mlx_thread(load_probe_model, spec, adapter, notify)
            self.key = (spec, adapter)
        return self.loaded


def variants(loaded, compare_base: bool):
    """[(label, adapter on?)]: base and adapter, or the one model there is."""
    if not loaded.adapter:
        return [("model", False)]
    if compare_base and loaded.can_compare_base:
        return [("base", False), ("adapter", True)]
    return [("adapter", True)]


def _curve(loaded, example):
    set_adapter_enabled(loaded, False)
    return refusal_curves(loaded.model, loaded.tokenizer, loaded.template, [example], loaded.refusal_ids)[0].p_refusal


def _probe_chunk(loaded, enabled, example, positions, unit, max_tokens):
    set_adapter_enabled(loaded, enabled)
    return probe_examples(loaded.model, loaded.tokenizer, loaded.template, loaded.refusal_ids, [example],
                          positions, unit, max_tokens, refusal_token=loaded.refusal.token_id)[0]


def _top_tokens(loaded, compare_base, example, k, top):
    out = {}
    for label, enabled in variants(loaded, compare_base):
        set_adapter_enabled(loaded, enabled)
        out[label] = top_next_tokens(loaded.model, loaded.tokenizer, loaded.template, example, k, top)
    return out


def run_probe(request: ProbeRequest, cache: ModelCache, progress: Callable[[int, int, str], None],
              cancelled: Callable[[], bool]) -> Optional[ProbeOutcome]:
    progress(0, 1, "loading the model...")
    loaded = cache.get(request.model, request.adapter, lambda message: progress(0, 1, message))
    example = request.example
    if request.every:
        longest = len(example.harmful_response.split()) if request.unit == "word" else \
            len(in_mlx_thread(_curve, loaded, example)) - 1
        positions = parse_positions("", request.every, longest)
    else:
        positions = parse_positions(request.positions)
    outcome = ProbeOutcome(positions)
    plan = variants(loaded, request.compare_base)
    chunks = [positions[i : i + CHUNK] for i in range(0, len(positions), CHUNK)]
    total, done = len(plan) * len(chunks), 0
    for label, enabled in plan:
        outcome.cells[label] = []
        for chunk in chunks:
            if cancelled():
                outcome.cancelled = True
                return outcome
            progress(done, total, f"{label}: positions {chunk[0]}..{chunk[-1]}")
            result = in_mlx_thread(_probe_chunk, loaded, enabled, example, chunk, request.unit, request.max_tokens)
            outcome.curves[label] = result.curve
            outcome.cells[label].extend(result.positions)
            done += 1
    progress(total, total, "done")
    return outcome


def top_tokens(cache: ModelCache, request: ProbeRequest, k: int, top: int = 5):
    """{variant: [(token text, probability)]} after k harmful tokens."""
    return in_mlx_thread(_top_tokens, cache.loaded, request.compare_base, request.example, k, top)


def refusal_texts(cache: ModelCache) -> set:
    loaded = cache.loaded
    return {loaded.tokenizer.decode([i]) for i in loaded.refusal_ids}
