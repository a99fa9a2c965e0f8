"""From suites to judged records: prompts, generation, verdicts, helpfulness scores.

A record (one line of records.jsonl):
  id, suite, kind, attack, template, question, prompt, response, response_tokens,
  first_refusal_token (1-based, None when it never refuses), coherence (coherence.py's class:
  coherent, re-refusal, token loop, fragment, partial, no refusal), refusal (the refusal reader's
  three-way label, detector.py: compliance, refusal or partial),
  verdicts {judge: verdict}, reasons {judge: why}, verdict, judge (the layer that decided),
  label (a human verdict, if any), and for helpfulness suites: answer (the gold), answered,
  extracted, correct (verdict and judge are None there); borderline suites add type and safe.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from derta_mlx.data.detector import detect_refusal
from derta_mlx.data.segments import prompt_ids
from derta_mlx.eval.generate import Job
from derta_mlx.eval.judge import AppCRule, Judgement, decide, label_for, rule_layers
from derta_mlx.eval.prompts import build_prompt, resolve_attack
from derta_mlx.eval.scoring import score
from derta_mlx.eval.suites import HELPFUL_KINDS, Suite
from derta_mlx.probe.coherence import classify
from derta_mlx.probe.first_refusal import first_refusal_token


@dataclass(frozen=True)
class Settings:
    template: str  # chat | derta-eval | derta
    attack: str  # auto | templated | completion


def build_jobs(suites: Sequence[Suite], tokenizer, settings: Settings):
    """(jobs in suite order, {key: base record without the response})."""
    jobs, bases = [], {}
    for suite in suites:
        attack = resolve_attack(settings.attack, suite.kind)
        for item in suite.items:
            text = build_prompt(item.question, suite.kind, attack, settings.template, tokenizer)
            job = Job(suite.name, item.id, text, tuple(prompt_ids(tokenizer, text)))
            jobs.append(job)
            bases[job.key] = {"id": item.id, "suite": suite.name, "kind": suite.kind, "attack": attack,
                              "template": None if attack == "completion" else settings.template,
                              "question": item.question, "answer": item.answer, "prompt": text}
            if suite.kind == "borderline":
                bases[job.key].update({"type": item.type, "safe": item.safe})
    return jobs, bases


def record_maker(bases: Dict, tokenizer):
    def make(job: Job, text: str, tokens: int) -> dict:
        return {**bases[job.key], "response": text, "response_tokens": tokens,
                "first_refusal_token": first_refusal_token(tokenizer, text), "coherence": classify(text),
                "refusal": detect_refusal(text).label}

    return make


def judge_records(records: List[dict], judges: Sequence[str], labels: Optional[dict] = None, llm=None,
                  rule: AppCRule = AppCRule()) -> List[dict]:
    """Fill every record's verdicts (safety) or scores (helpfulness); returns new dicts."""
    labels = labels or {}
    safety = [i for i, r in enumerate(records) if r["kind"] not in HELPFUL_KINDS]
    llm_verdicts = {}
    if llm is not None and "llm" in judges and safety:
        found = llm.judge_many([(records[i]["question"], records[i]["response"]) for i in safety])
        llm_verdicts = dict(zip(safety, found))
    out = []
    for index, record in enumerate(records):
        record = dict(record)
        # re-read: the reader may be newer than the generation
        record["refusal"], record["coherence"] = detect_refusal(record["response"]).label, classify(record["response"])
        if record["kind"] in HELPFUL_KINDS:
            got = score(record["kind"], record["response"], record["question"], record.get("answer"))
            record.update({"answered": got.answered, "extracted": got.extracted, "correct": got.correct,
                           "verdicts": {}, "reasons": {}, "label": None, "verdict": None, "judge": None})
            out.append(record)
            continue
        layers: Dict[str, Judgement] = rule_layers(record["response"], record.get("question") or "", rule,
                                                   record["kind"])
        if index in llm_verdicts:
            layers["llm"] = llm_verdicts[index]
        shown = [j for j in judges if j in layers]
        record["verdicts"] = {j: layers[j].verdict for j in shown}
        record["reasons"] = {j: layers[j].reason for j in shown}
        record["label"] = label_for(labels, record["suite"], str(record["id"]))
        record["verdict"], record["judge"] = decide(layers, shown, record["label"])
        out.append(record)
    return out
