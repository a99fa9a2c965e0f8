"""`derta-mlx eval`'s flags and examples (the run flags live on `eval` and on `eval run`)."""

import argparse

from derta_mlx.cli.arg_types import positive_int

RUN_EPILOG = """examples:
  derta-mlx eval                                    # demo suites on the embedded model (offline)
  derta-mlx eval --adapter-path runs/demo           # the same after DeRTa training -> runs/demo/eval
  derta-mlx eval --suite safety_jailbreakchat.json --suite helpfulness_gsm8k_500.json \\
      --model llama3-8b-4bit --adapter-path runs/llama3 --template derta-eval --max-tokens 1024
  derta-mlx eval --suite completion=leadins.jsonl --attack completion --judge detector,appc,llm \\
      --judge-model llama3-8b-instruct-4bit
  derta-mlx eval --adapter-path runs/demo --labels my_labels.jsonl     # re-judge (no new generation)
An interrupted eval continues where it stopped when run again with the same --out.
Responses are saved in OUT/records.jsonl but never printed unless you pass --show-text.
"""
JUDGE_EPILOG = """examples:
  derta-mlx eval judge results/jailbreakchat/llama3_derta.json --out judged/jchat
  derta-mlx eval judge completion_outputs.json --prompts safety_completionattack.json --tokenizer tiny-llama3
  derta-mlx eval judge runs/demo/eval/records.jsonl --labels labels.jsonl
  derta-mlx eval judge results/codeattack/llama3_derta.json --judge appc,llm \
      --judge-model models/llama-guard-3-8b-4bit --judge-preset llama-guard-3   # mlx_lm.convert -q first
Lines are {"question"|"instruction","response"} objects, or JSON strings of prompt + continuation
(the official CompletionAttack outputs; --prompts strips the prompt by prefix match).
Each file is read in its attack's format (CodeAttack, persona, cipher, completion), found from
--kind, --prompts, the file name, its folders or its rows; the choice is printed.
"""
COMPARE_EPILOG = """examples:
  derta-mlx eval compare runs/eval-smollm2-135m-4bit runs/demo/eval
  derta-mlx eval compare runs/vanilla runs/derta --judge appc --out compare.md
"""
LABELS_HELP = ('human verdicts, jsonl {"id", "verdict": "unsafe"|"safe"} (+ optional "suite"); they override '
               "every automatic judge (default: OUT/labels.jsonl when it exists)")


def add_run_flags(p, suppress: bool) -> None:
    def default(value):
        return argparse.SUPPRESS if suppress else value

    p.add_argument("--suite", action="append", default=default(None), metavar="[KIND=]FILE",
                   help="suite jsonl {\"question\"} (+ \"answer\"); repeatable; KIND (safety, codeattack, persona, cipher, completion, gsm8k, "
                   "mmlu, open, borderline) is read from the file name unless given; a borderline suite (over-refusal) is jsonl "
                   "{\"question\", \"type\", \"label\": safe|unsafe} or CSV prompt,type,label (XSTest's); `--suite borderline` "
                   "is the bundled one, all 480 prompts (default: the bundled demo suites, with a 72-prompt borderline sample)")
    p.add_argument("--model", default=default(None), help="catalogue name, hub id or directory (default: the one the adapter's run names, else the embedded model)")
    p.add_argument("--adapter-path", "--adapter", dest="adapter", default=default(None),
                   help="a training run directory (LoRA adapter; --adapter is an alias)")
    p.add_argument("--attack", default=default("auto"), choices=("auto", "templated", "completion"),
                   help="templated: the question in the template; completion: the raw text, no template "
                   "(auto: completion for completion-attack suites)")
    p.add_argument("--template", default=default("auto"), choices=("auto", "chat", "derta-eval", "derta"),
                   help="chat: the model's chat template; derta-eval: the official evaluation string "
                   "(auto: chat for instruct models)")
    p.add_argument("--max-tokens", type=positive_int, default=default(128),
                   help="tokens to generate per prompt (default 128; the official harness used 1024)")
    p.add_argument("--batch-size", type=positive_int, default=default(8), help="prompts decoded together (default 8)")
    p.add_argument("--limit", type=positive_int, default=default(None), help="only the first N prompts of each suite")
    p.add_argument("--out", default=default(None),
                   help="results directory (default: ADAPTER/eval, or runs/eval-MODEL)")
    add_judge_flags(p, suppress)
    p.add_argument("--dequantize", default=default("auto"), choices=("auto", "yes", "no"),
                   help="decode a 4-bit model with float32 weights (auto: on a CPU, ~10x faster)")


def add_judge_flags(p, suppress: bool = False) -> None:
    def default(value):
        return argparse.SUPPRESS if suppress else value

    p.add_argument("--judge", default=default("detector,appc"),
                   help="judge layers, comma-separated, later ones decide: detector, appc, llm "
                   "(default detector,appc)")
    p.add_argument("--judge-model", default=default(None),
                   help="mlx-lm model for the llm judge: a catalogue name, hub id or directory")
    p.add_argument("--judge-preset", default=default("auto"), choices=("auto", "appc", "llama-guard-3", "harmbench"),
                   help="how the llm judge is asked: appc (our App. C prompt), llama-guard-3 or harmbench (their "
                   "published prompts); auto picks by the model's name")
    p.add_argument("--judge-cache", default=default(None), help="verdict cache (default OUT/judge_cache.json)")
    p.add_argument("--labels", default=default(None), help=LABELS_HELP)
    p.add_argument("--show-text", action="store_true", default=default(False),
                   help="print every response (they may be harmful)")
