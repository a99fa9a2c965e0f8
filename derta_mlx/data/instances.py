"""Rows -> token-level training instances for DeRTa's two terms.

An instance is (inputs, targets, terms), all of one length T: the model reads `inputs`, and
at position i the loss compares its prediction with `targets[i]` (IGNORE = unsupervised);
`terms[i]` says which loss term the position belongs to (MLE or RTO).

  MLE   prompt | harmful prefix (k units, may be empty) | safe response + EOS
        targets are the next tokens of the safe response and its EOS.
  RTO   prompt | the whole harmful response (+ EOS with rto_eos, as the official code)
        inputs are the true harmful tokens; every target from the end of the prompt on is
        the refusal token: P(refusal | q, r_<t) for t = 1..|r| (..|r|+1 with rto_eos).

Safe targets open with the refusal token (see opening.py): [refusal id] + the rest of the
normalised safe response, at k = 0 and after any harmful prefix alike, so RTO's target is the
first MLE target of every refusal (`BuildStats.transition` counts it).

Sequences are concatenated per-segment ids (see segments.py). Truncation to max_seq_length
never cuts a safe target: it shortens the harmful prefix (MLE) or the harmful input (RTO);
a helpfulness target too long to fit is cut at the end (as the official code does); a row that
still cannot fit or has nothing to supervise is dropped and counted.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from derta_mlx.common.errors import UserError
from derta_mlx.data.detector import detect_refusal
from derta_mlx.data.formats import (
    LEGACY_EOS,
    DertaRow,
    HelpfulRow,
    QuestionRow,
    SafetyTriple,
)
from derta_mlx.data.opening import NO_OPENING, normalise_safe
from derta_mlx.data.prefix import PrefixSampler, row_key, word_ends
from derta_mlx.data.segments import continuation_ids, prompt_ids
from derta_mlx.data.templates import Template

IGNORE = -1
OPENING_CHARS = 16  # an official-format MLE row whose refusal starts this early is a safe response
NO_TERM, MLE, RTO = 0, 1, 2
METHODS = ("derta", "vanilla", "harmful-prefix", "rto")


@dataclass
class Instance:
    inputs: np.ndarray
    targets: np.ndarray
    terms: np.ndarray
    kind: str  # helpful | vanilla | harmful-prefix | rto | derta-row
    source: str  # FILE:LINE of the row it came from
    prefix_units: int = -1  # k of a harmful-prefix instance, in the sampler's unit, as used

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class InstanceConfig:
    template: Template
    refusal_id: int
    eos_id: int
    method: str = "derta"
    max_seq_length: int = 512
    prefix: PrefixSampler = field(default_factory=PrefixSampler)
    rto_eos: bool = False
    refusal_opening: str = "Sorry"  # every safe target opens with it (NO_OPENING: as written)
    prefix_cuts: int = 1  # harmful-prefix instances per safety triple; the extra ones cut inside (k >= 1)
    mask_prompt: bool = True  # helpfulness rows supervise only the answer (False: the prompt too, mlx-lm's default)

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.max_seq_length < 8:
            raise UserError("max_seq_length must be at least 8 tokens")
        if self.prefix_cuts < 1:
            raise UserError("prefix_cuts must be >= 1")

    @property
    def has_rto(self) -> bool:
        return self.method in ("derta", "rto")


@dataclass
class BuildStats:
    kinds: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    truncated: int = 0
    supervised: Counter = field(default_factory=Counter)  # "mle"/"rto" -> target tokens
    openings: Counter = field(default_factory=Counter)  # normalisation rule -> safe responses
    refusal_targets: int = 0  # MLE instances whose target is a refusal
    transition: int = 0  # ... of which the first target is the RTO token
    off_transition: List[str] = field(default_factory=list)  # FILE:LINE of the others' rows, once each

    def add(self, instance: Instance) -> None:
        self.kinds[instance.kind] += 1
        self.supervised["mle"] += int((instance.terms == MLE).sum())
        self.supervised["rto"] += int((instance.terms == RTO).sum())

    @property
    def transition_share(self) -> float:
        """The share of refusal targets that open with the RTO token (1.0 when there are none)."""
        return self.transition / self.refusal_targets if self.refusal_targets else 1.0

    def transition_summary(self) -> str:
        line = (f"refusal targets opening with the RTO token: {self.transition_share:.0%} "
                f"({self.transition}/{self.refusal_targets})")
        if self.off_transition:
            shown = ", ".join(self.off_transition[:5])
            more = f" and {len(self.off_transition) - 5} more" if len(self.off_transition) > 5 else ""
            line += (f"; WARNING: the others ({shown}{more}) open with another token, so the model sees "
                     "no refusal after the RTO token there (see --refusal-opening)")
        return line

    def as_dict(self) -> dict:
        return {"instances": dict(self.kinds), "supervised_tokens": dict(self.supervised),
                "truncated": self.truncated, "dropped": dict(self.dropped),
                "safe_openings": dict(self.openings), "refusal_targets": self.refusal_targets,
                "transition_share": round(self.transition_share, 4),
                "off_transition_rows": list(self.off_transition)}


def _arrays(sequence: List[int], first_target: int, target_of, term: int):
    """inputs = sequence[:-1]; positions >= first_target get target_of(i) and `term`."""
    inputs = np.asarray(sequence[:-1], dtype=np.int32)
    targets = np.full(len(inputs), IGNORE, dtype=np.int32)
    terms = np.zeros(len(inputs), dtype=np.int8)
    for i in range(first_target, len(inputs)):
        targets[i] = target_of(i)
        terms[i] = term
    return inputs, targets, terms


class _Builder:
    def __init__(self, tokenizer, config: InstanceConfig):
        self.tok = tokenizer
        self.cfg = config
        self.stats = BuildStats()

    # -- the two constructions ------------------------------------------------------------

    def mle(self, prompt: List[int], middle: List[int], target: List[int], kind, source, k=-1,
            cut_target: bool = False):
        """prompt | middle | target + EOS, supervising target + EOS. Too long: the middle is
        shortened; with `cut_target` (helpfulness) the target's end is cut instead of dropping."""
        target = target + [self.cfg.eos_id]
        room = self.cfg.max_seq_length + 1 - len(prompt) - len(target)
        if room < 0 and cut_target and len(target) + room >= 1:
            target = target[:room]
            room = 0
            self.stats.truncated += 1
        if room < 0:
            self.stats.dropped["too long for max_seq_length (target kept whole)"] += 1
            return None
        if len(middle) > room:
            middle = middle[:room]
            self.stats.truncated += 1
        sequence = prompt + middle + target
        start = len(prompt) + len(middle) - 1
        inputs, targets, terms = _arrays(sequence, start, lambda i: sequence[i + 1], MLE)
        return Instance(inputs, targets, terms, kind, source, k)

    def rto(self, prompt: List[int], harmful: List[int], kind, source):
        """prompt | harmful (+EOS): the refusal token is the target after every harmful prefix."""
        tail = [self.cfg.eos_id] if self.cfg.rto_eos else []
        sequence = prompt + harmful + tail
        if len(prompt) > self.cfg.max_seq_length or not harmful:
            self.stats.dropped["no RTO position fits (prompt too long or empty response)"] += 1
            return None
        if len(sequence) - 1 > self.cfg.max_seq_length:
            sequence = sequence[: self.cfg.max_seq_length + 1]
            self.stats.truncated += 1
        refusal = self.cfg.refusal_id
        inputs, targets, terms = _arrays(sequence, len(prompt) - 1, lambda i: refusal, RTO)
        return Instance(inputs, targets, terms, kind, source)

    # -- rows -------------------------------------------------------------------------------

    def question_prompt(self, question: str) -> List[int]:
        return prompt_ids(self.tok, self.cfg.template.prompt(question, self.tok))

    def harmful_prefix(self, key: str, harmful: str, room: int, inside: bool = False):
        """(k, ids of the first k units of the harmful response in context), k sampled from the
        row's `key` (k >= 1 when `inside`) and then lowered until the prefix fits in `room` tokens
        (k is what is used)."""
        lead = self.cfg.template.response_lead
        sampler = self.cfg.prefix
        if sampler.unit == "word":
            ends = word_ends(harmful)
            k = sampler.sample(key, len(ends), inside)

            def ids_of(k):
                return continuation_ids(self.tok, lead + harmful[: ends[k - 1]]) if k else []
        else:
            all_ids = continuation_ids(self.tok, lead + harmful)
            k = sampler.sample(key, len(all_ids), inside)

            def ids_of(k):
                return all_ids[:k]
        ids = ids_of(k)
        if len(ids) > room >= 0:
            self.stats.truncated += 1
            while k and len(ids) > room:
                k = k - 1 if sampler.unit == "word" else max(room, 0)
                ids = ids_of(k)
        return k, ids

    def refusal_target(self, safe: str, after_prefix: bool, count: bool = True) -> List[int]:
        """The ids of a safe response as a target: the refusal token, then the rest of the
        normalised response (see opening.py); as written with `refusal_opening: none`.
        `count`: add its normalisation rule to the stats (once per safe response)."""
        normalised = normalise_safe(safe, self.cfg.refusal_opening)
        if count:
            self.stats.openings[normalised.rule] += 1
        if self.cfg.refusal_opening != NO_OPENING:
            return [self.cfg.refusal_id] + continuation_ids(self.tok, normalised.rest)
        # After a harmful prefix the answer turns with a space ("... these I'm sorry");
        # with no prefix it follows the template exactly as at inference.
        if after_prefix:
            return continuation_ids(self.tok, " " + safe.lstrip())
        return continuation_ids(self.tok, self.cfg.template.response_lead + safe)

    def count_transition(self, instance: Optional[Instance]) -> None:
        if instance is None:
            return
        self.stats.refusal_targets += 1
        first = instance.targets[instance.terms == MLE][0]
        if first == self.cfg.refusal_id:
            self.stats.transition += 1
        elif instance.source not in self.stats.off_transition:
            self.stats.off_transition.append(instance.source)

    def triple(self, row: SafetyTriple) -> list:
        source = str(row.where)
        prompt = self.question_prompt(row.question)
        method = self.cfg.method
        out = []
        if method in ("derta", "harmful-prefix"):
            key = row_key(row.question, row.harmful_response)
            after = self.refusal_target(row.safe_response, True)
            for cut in range(self.cfg.prefix_cuts):
                target = after
                room = self.cfg.max_seq_length - len(prompt) - len(target)
                # Extra cuts train the transition inside the answer: k >= 1. A second k = 0 would
                # only add "question -> refusal" rows, which tip a small model into over-refusal.
                k, middle = self.harmful_prefix(f"{key}:{cut}" if cut else key, row.harmful_response, room,
                                                inside=cut > 0)
                if k == 0 and self.cfg.refusal_opening == NO_OPENING:
                    target = self.refusal_target(row.safe_response, False, count=False)
                out.append(self.mle(prompt, middle, target, "harmful-prefix", source, k))
                self.count_transition(out[-1])
        if method in ("vanilla", "rto"):
            out.append(self.mle(prompt, [], self.refusal_target(row.safe_response, False), "vanilla", source, 0))
            self.count_transition(out[-1])
        if self.cfg.has_rto:
            lead = self.cfg.template.response_lead
            out.append(self.rto(prompt, continuation_ids(self.tok, lead + row.harmful_response), "rto", source))
        return out

    def derta_row(self, row: DertaRow) -> list:
        source = str(row.where)
        prompt = prompt_ids(self.tok, row.prefix)
        text = row.text[: -len(LEGACY_EOS)] if row.text.endswith(LEGACY_EOS) else row.text
        if row.rto:
            if not self.cfg.has_rto:
                self.stats.dropped[f"RTO row skipped: --method {self.cfg.method} has no RTO term"] += 1
                return []
            return [self.rto(prompt, continuation_ids(self.tok, text), "rto", source)]
        verdict = detect_refusal(text)
        if verdict.refuses and verdict.start <= OPENING_CHARS:  # a safe response, maybe after a prefix
            instance = self.mle(prompt, [], self.refusal_target(text, True), "derta-row", source)
            self.count_transition(instance)
            return [instance]
        return [self.mle(prompt, [], continuation_ids(self.tok, text), "derta-row", source, cut_target=True)]

    def helpful(self, row: HelpfulRow) -> list:
        source = str(row.where)
        kind = "borderline" if row.borderline else "helpful"  # the same loss; counted apart
        if row.text is not None:
            ids = list(self.tok.encode(row.text))
            return [self.mle(ids[:1], [], ids[1:], kind, source, cut_target=True)]
        if row.messages is not None:
            if not getattr(self.tok, "chat_template", None):
                raise UserError(f"{source}: 'messages' rows need a model with a chat template")
            text = self.tok.apply_chat_template(row.messages[:-1], tools=row.tools, add_generation_prompt=True,
                                                tokenize=False)
            target = continuation_ids(self.tok, row.messages[-1]["content"])
            return [self.helpful_mle(prompt_ids(self.tok, text), target, source, kind)]
        target = continuation_ids(self.tok, self.cfg.template.response_lead + row.response)
        return [self.helpful_mle(self.question_prompt(row.prompt), target, source, kind)]

    def helpful_mle(self, prompt: List[int], target: List[int], source: str, kind: str = "helpful"):
        if self.cfg.mask_prompt:
            return self.mle(prompt, [], target, kind, source, cut_target=True)
        # mlx-lm's unmasked rows: every token after the first is a target, the prompt's too
        return self.mle(prompt[:1], [], prompt[1:] + target, kind, source, cut_target=True)


def build_instances(rows: Sequence, tokenizer, config: InstanceConfig, progress=None):
    """All training instances of `rows` in row order, and what was built, cut or dropped;
    `progress(done, total)` every 1% of the rows."""
    builder = _Builder(tokenizer, config)
    instances = []
    every = max(len(rows) // 100, 1)
    for done, row in enumerate(rows, 1):
        if progress and (done % every == 0 or done == len(rows)):
            progress(done, len(rows))
        if isinstance(row, SafetyTriple):
            built = builder.triple(row)
        elif isinstance(row, DertaRow):
            built = builder.derta_row(row)
        elif isinstance(row, HelpfulRow):
            built = builder.helpful(row)
        elif isinstance(row, QuestionRow):
            raise UserError(f"{row.where}: an evaluation row ({{\"question\"}} only) cannot be trained on")
        else:
            raise TypeError(type(row))
        for instance in built:
            if instance is None:
                continue
            if not (instance.terms != NO_TERM).any():
                builder.stats.dropped["no supervised token"] += 1
                continue
            builder.stats.add(instance)
            instances.append(instance)
    return instances, builder.stats

