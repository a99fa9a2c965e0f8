"""Every TrainConfig field as a command-line flag (train, data build), and the config they make:
the YAML of --config first, the flags given over it."""

import argparse
from dataclasses import asdict, fields

from derta_mlx.train.config import TrainConfig, config_from_dict, load_config

HELP = {
    "model": "catalogue name, hub repo id or model directory (default: the embedded model)",
    "data": "training files or directories: DeRTa rows, safety triples, helpfulness rows (default: demo data); "
            "FILE:RATIO mixes them in proportion, seeded (safety.jsonl:1 helpful.jsonl:3)",
    "val_data": "validation files (default: --val-fraction of the training rows)",
    "method": "derta | vanilla | harmful-prefix | rto (the paper's Table 4 ablations)",
    "template": "derta | derta-eval | chat | auto (default: the catalogue's)",
    "refusal": "refusal-token rule: auto | official | space | token:TEXT | phrase:TEXT | id:N",
    "refusal_opening": "what every safe target opens with; auto's refusal token is its first word "
                       "(default Sorry; none: keep safe responses as written)",
    "prefix_distribution": "harmful-prefix length k: official | uniform | qi",
    "prefix_unit": "word | token (default: word for official, token otherwise)",
    "qi_cap": "C for --prefix-distribution qi (k uniform in 1..C)",
    "prefix_cuts": "harmful-prefix instances per safety triple, each cut at its own k (the extra ones at k >= 1)",
    "rto_weight": "weight of the RTO term (default 0.1: with --reduction per-term, what keeps a small model from "
                  "looping the refusal token; the official code: 1 with token-mean)",
    "rto_keep": "share of RTO targets kept each step (official full fine-tuning: 0.05)",
    "reduction": "per-term (default: each term its own mean) | token-mean (the official single mean)",
    "rto_eos": "also train the refusal at the EOS position, as the official code",
    "fine_tune_type": "lora | dora (full: refused, with the memory it would need)",
    "mask_prompt": "helpfulness rows supervise only the answer (default; --no-mask-prompt: the prompt too, "
                   "mlx-lm's default). Safety rows always follow DeRTa",
    "num_layers": "number of last transformer blocks with adapters (-1: all)",
    "lora_rank": "LoRA rank", "lora_scale": "LoRA scale (mlx-lm's, not alpha)", "lora_dropout": "LoRA dropout",
    "lora_keys": "module keys to adapt, e.g. self_attn.q_proj (default: every linear layer)",
    "resume_adapter_file": "start from an earlier adapter's weights (mlx-lm's adapters.safetensors; the optimizer "
                           "starts afresh). To continue a derta-mlx run exactly, use --resume RUN",
    "iters": "optimizer steps", "batch_size": "micro-batch size",
    "grad_accumulation_steps": "micro-batches per optimizer step",
    "learning_rate": "peak learning rate",
    "lr_schedule": "cosine | linear | constant (a YAML config may give mlx-lm's schedule dict)",
    "warmup": "linear warm-up steps", "weight_decay": "weight decay (optimizers that take one)",
    "optimizer": "adam | adamw | sgd | adafactor | muon (mlx-lm's; a YAML optimizer_config sets their arguments)",
    "max_seq_length": "longest sequence in tokens; harmful prefixes are shortened to fit, targets never cut",
    "grad_checkpoint": "recompute activations in the backward pass (less memory)",
    "length_bucketing": "batch rows of like length together, so that batches carry less padding (faster)",
    "dequantize": "auto | yes | no: train a quantised base with float32 weights (auto: on a CPU)",
    "seed": "seed of data order, prefix sampling, RTO keep masks and LoRA dropout",
    "val_fraction": "held-out share of training rows when --val-data is not given",
    "val_batches": "validation batches per evaluation (-1: all)",
    "test": "after training, the loss and the refusal probe on test.jsonl of the --data folder (mlx-lm's --test)",
    "test_batches": "test batches (-1: all)",
    "steps_per_report": "steps between progress rows in metrics.jsonl",
    "steps_per_eval": "steps between validation losses", "save_every": "steps between checkpoints",
    "adapter_path": "the run directory (alias: --out; default runs/<model>-<method>-<time>)",
    "probe_after": "probe refusal at harmful-prefix lengths before and after training",
    "probe_every": "every N steps, probe the validation rows (coherent refusal at k=10, over-refusal of the ordinary "
                   "and borderline questions), log it and keep the best checkpoint in checkpoints/best "
                   "(0: off; default: every 20 steps for the demo data, off otherwise)",
    "report_to": "mlx-lm's loss reporters, comma-separated: wandb, swanlab (need their packages)",
    "project_name": "their project name (default: the run directory's name)",
}


YAML_ONLY = ("optimizer_config",)  # a mapping: set in a YAML config (-c)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser, exclude=()) -> None:
    for f in fields(TrainConfig):
        if f.name in exclude or f.name in YAML_ONLY:
            continue
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": HELP.get(f.name)}
        if f.type in ("bool", bool):
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
        elif f.name in ("data", "val_data", "lora_keys"):
            parser.add_argument(_flag(f.name), nargs="+", **kwargs)
        else:
            kind = f.type if f.type in (int, float) else str
            parser.add_argument(_flag(f.name), type=kind, **kwargs)


def config_from_args(args) -> TrainConfig:
    base = load_config(args.config) if args.config else TrainConfig()
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if getattr(args, "out", None) and args.command == "train":
        given["adapter_path"] = args.out
    merged = {**asdict(base), **given}
    return config_from_dict(merged, "command line", flags=True)
