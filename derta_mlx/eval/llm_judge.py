"""The optional LLM judge: any local mlx-lm model asked with a preset prompt (judge_presets.py).

Verdicts are cached in a JSON file keyed by a hash of (judge model, preset and its version,
question, response), so re-judging the same generations costs nothing and gives the same
answer, and switching presets never reads another preset's verdicts. An output that names no
verdict is an abstention, and the next layer down decides.
"""

import hashlib
import json
from pathlib import Path
from typing import List, Sequence, Tuple

from derta_mlx.accel import load_for_inference
from derta_mlx.common.atomic import write_json
from derta_mlx.data.segments import prompt_ids
from derta_mlx.eval.judge_presets import (
    APPC_PROMPT,
    PRESETS,
    Preset,
    parse_appc,
    resolve_preset,
)
from derta_mlx.eval.judgement import Judgement
from derta_mlx.models.loading import ensure_local, find_model

PROMPT_VERSION = PRESETS["appc"].version
JUDGE_PROMPT = APPC_PROMPT  # the App. C prompt (kept under its old name)
MAX_RESPONSE_CHARS = 2000
parse_verdict = parse_appc


def cache_key(judge_name: str, question: str, response: str, preset: Preset = PRESETS["appc"]) -> str:
    blob = json.dumps([judge_name, preset.version, question, response], ensure_ascii=False)
    if preset.name != "appc":  # the App. C keys stay as they were, so old caches still hit
        blob = json.dumps([preset.name, blob], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _guard_template(tokenizer) -> bool:
    """A Llama Guard tokenizer renders the classification prompt from the turns itself."""
    return "unsafe content" in str(getattr(tokenizer, "chat_template", "") or "")


class LLMJudge:
    """Batched greedy verdicts from a loaded mlx-lm model, cached by hash in `cache_path`."""

    def __init__(self, model, tokenizer, name: str, cache_path=None, batch_size: int = 8,
                 preset: Preset = PRESETS["appc"]):
        self.model, self.tokenizer, self.name, self.preset = model, tokenizer, name, preset
        self.cache_path = Path(cache_path) if cache_path else None
        self.batch_size, self.max_tokens = batch_size, preset.max_tokens
        self.cache = {}
        if self.cache_path and self.cache_path.is_file():
            try:
                self.cache = json.loads(self.cache_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                self.cache = {}  # a cache is only a cache: rebuild it

    def prompt_text(self, question: str, response: str) -> str:
        response = response[:MAX_RESPONSE_CHARS]
        template = getattr(self.tokenizer, "chat_template", None)
        if self.preset.name == "llama-guard-3" and _guard_template(self.tokenizer):
            turns = [{"role": "user", "content": question}, {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(turns, tokenize=False)
        text = self.preset.prompt.format(question=question, response=response)
        if self.preset.chat and template:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                      add_generation_prompt=True, tokenize=False)
        elif self.preset.chat:
            text += "\n"
        # App. C: the answer is prefilled up to the verdict word, so even a small model names one
        return text + self.preset.prefill

    def prompt_ids(self, question: str, response: str) -> List[int]:
        return prompt_ids(self.tokenizer, self.prompt_text(question, response))

    def judge_many(self, pairs: Sequence[Tuple[str, str]]) -> List[Judgement]:
        from mlx_lm.generate import batch_generate

        keys = [cache_key(self.name, q, r, self.preset) for q, r in pairs]
        todo = [i for i, key in enumerate(keys) if key not in self.cache]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            prompts = [self.prompt_ids(*pairs[i]) for i in chunk]
            texts = batch_generate(self.model, self.tokenizer, prompts, max_tokens=self.max_tokens).texts
            for i, text in zip(chunk, texts):
                self.cache[keys[i]] = {"verdict": self.preset.parse(text), "output": text[:80],
                                       "preset": self.preset.name}
            if self.cache_path:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                write_json(self.cache_path, self.cache)
        out = []
        for key in keys:
            entry = self.cache[key]
            reason = f"{self.name} ({self.preset.name}) said {entry['output'].strip()[:40]!r}"
            out.append(Judgement(entry["verdict"], reason))
        return out


def load_llm_judge(spec: str, cache_path, notify=None, dequantize: str = "auto", preset: str = "auto") -> LLMJudge:
    ref = find_model(spec)
    chosen = resolve_preset(preset, ref.spec)
    model, tokenizer, _ = load_for_inference(ensure_local(ref, notify), dequantize=dequantize)
    return LLMJudge(model, tokenizer, ref.spec, cache_path, preset=chosen)
