"""Rows -> token-level training instances for DeRTa's two terms.

An instance is (inputs, targets, terms), all of one length T: the model reads `inputs`, and
at position i the loss compares its prediction with `targets[i]` (IGNORE = unsupervised);
`terms[i]` says which loss term the position belongs to (MLE or RTO).

  MLE   prompt | harmful prefix (k units, may be empty) | safe response + EOS
        targets are the next tokens of the safe response and its EOS.
  RTO   prompt | the whole harmful response (+ EOS with rto_eos, as the official code)
        inputs are the true harmful tokens; every target from the end of the prompt on is
        the refusal token: P(refusal | q, r_<t) for t = 1..|r| (..|r|+1 with rto_eos).

Sequences are concatenated per-segment ids (see segments.py). Truncation to max_seq_length
never cuts a safe target: it shortens the harmful prefix (MLE) or the harmful input (RTO);
a row that still cannot fit or has nothing to supervise is dropped and counted.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np

from ..errors import UserError
from ..segments import continuation_ids, prompt_ids
from ..templates import Template
from .formats import LEGACY_EOS, DertaRow, HelpfulRow, QuestionRow, SafetyTriple
from .prefix import PrefixSampler, word_ends

IGNORE = -1
NO_TERM, MLE, RTO = 0, 1, 2
METHODS = ("derta", "vanilla", "harmful-prefix", "rto")


@dataclass
class Instance:
    inputs: np.ndarray
    targets: np.ndarray
    terms: np.ndarray
    kind: str  # helpful | vanilla | harmful-prefix | rto | derta-row
    source: str  # FILE:LINE of the row it came from
    prefix_units: int = -1  # k of a harmful-prefix instance, in the sampler's unit

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

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.max_seq_length < 8:
            raise UserError("max_seq_length must be at least 8 tokens")


@dataclass
class BuildStats:
    kinds: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    truncated: int = 0
    supervised: Counter = field(default_factory=Counter)  # "mle"/"rto" -> target tokens

    def add(self, instance: Instance) -> None:
        self.kinds[instance.kind] += 1
        self.supervised["mle"] += int((instance.terms == MLE).sum())
        self.supervised["rto"] += int((instance.terms == RTO).sum())


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

    def mle(self, prompt: List[int], middle: List[int], target: List[int], kind, source, k=-1):
        """prompt | middle | target + EOS, supervising target + EOS; shortens middle to fit."""
        target = target + [self.cfg.eos_id]
        room = self.cfg.max_seq_length + 1 - len(prompt) - len(target)
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

    def harmful_prefix(self, index: int, harmful: str):
        """(k, ids of the first k units of the harmful response in context)."""
        lead = self.cfg.template.response_lead
        sampler = self.cfg.prefix
        if sampler.unit == "word":
            ends = word_ends(harmful)
            k = sampler.sample(index, len(ends))
            return k, (continuation_ids(self.tok, lead + harmful[: ends[k - 1]]) if k else [])
        ids = continuation_ids(self.tok, lead + harmful)
        k = sampler.sample(index, len(ids))
        return k, ids[:k]

    def safe_target(self, safe: str, after_prefix: bool) -> List[int]:
        # After a harmful prefix the answer turns with a space ("... these I'm sorry");
        # with no prefix it follows the template exactly as at inference.
        if after_prefix:
            return continuation_ids(self.tok, " " + safe.lstrip())
        return continuation_ids(self.tok, self.cfg.template.response_lead + safe)

    def triple(self, index: int, row: SafetyTriple) -> list:
        source = str(row.where)
        prompt = self.question_prompt(row.question)
        method = self.cfg.method
        out = []
        if method in ("derta", "harmful-prefix"):
            k, middle = self.harmful_prefix(index, row.harmful_response)
            out.append(self.mle(prompt, middle, self.safe_target(row.safe_response, k > 0),
                                "harmful-prefix", source, k))
        if method in ("vanilla", "rto"):
            out.append(self.mle(prompt, [], self.safe_target(row.safe_response, False), "vanilla", source, 0))
        if method in ("derta", "rto"):
            lead = self.cfg.template.response_lead
            out.append(self.rto(prompt, continuation_ids(self.tok, lead + row.harmful_response), "rto", source))
        return out

    def derta_row(self, row: DertaRow) -> list:
        prompt = prompt_ids(self.tok, row.prefix)
        text = row.text[: -len(LEGACY_EOS)] if row.text.endswith(LEGACY_EOS) else row.text
        ids = continuation_ids(self.tok, text)
        if row.rto:
            return [self.rto(prompt, ids, "rto", str(row.where))]
        return [self.mle(prompt, [], ids, "derta-row", str(row.where))]

    def helpful(self, row: HelpfulRow) -> list:
        source = str(row.where)
        if row.text is not None:
            ids = list(self.tok.encode(row.text))
            return [self.mle(ids[:1], [], ids[1:], "helpful", source)]
        if row.messages is not None:
            if not getattr(self.tok, "chat_template", None):
                raise UserError(f"{source}: 'messages' rows need a model with a chat template")
            text = self.tok.apply_chat_template(row.messages[:-1], add_generation_prompt=True, tokenize=False)
            target = continuation_ids(self.tok, row.messages[-1]["content"])
            return [self.mle(prompt_ids(self.tok, text), [], target, "helpful", source)]
        target = continuation_ids(self.tok, self.cfg.template.response_lead + row.response)
        return [self.mle(self.question_prompt(row.prompt), [], target, "helpful", source)]


def build_instances(rows: Sequence, tokenizer, config: InstanceConfig):
    """All training instances of `rows` in row order, and what was built, cut or dropped."""
    builder = _Builder(tokenizer, config)
    instances = []
    triple_index = 0
    for row in rows:
        if isinstance(row, SafetyTriple):
            built = builder.triple(triple_index, row)
            triple_index += 1
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

