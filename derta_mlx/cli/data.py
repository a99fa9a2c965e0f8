"""`derta-mlx data validate|stats|build|fetch`: check data, describe it, show what training would use, get it."""

import argparse
import json
from collections import Counter

import numpy as np

from derta_mlx.cli import data_fetch
from derta_mlx.cli.arg_types import output_file
from derta_mlx.cli.flags import add_config_flags, config_from_args
from derta_mlx.common.progress import notify_stderr
from derta_mlx.common.safe_paths import check_not_input
from derta_mlx.data.formats import (
    DertaRow,
    HelpfulRow,
    QuestionRow,
    SafetyTriple,
    read_rows,
)

KINDS = {SafetyTriple: "safety triples", DertaRow: "DeRTa rows", HelpfulRow: "helpfulness rows",
         QuestionRow: "evaluation questions"}


def kind_of(row) -> str:
    """The row's part of the recipe: borderline rows (helpfulness rows from a *borderline* file) apart."""
    return "borderline rows" if isinstance(row, HelpfulRow) and row.borderline else KINDS[type(row)]


def cmd_validate(args) -> int:
    notes = []
    rows = read_rows(args.files, lambda note: (notes.append(note), notify_stderr(note)))
    counts = Counter(kind_of(row) for row in rows)
    rto = sum(1 for row in rows if isinstance(row, DertaRow) and row.rto)
    print(f"ok: {len(rows)} rows in {len(args.files)} file(s): "
          + ", ".join(f"{n} {kind}" for kind, n in counts.items())
          + (f" ({rto} RTO)" if rto else "")
          + (f"; {len(notes)} duplicate row(s) dropped" if notes else ""))
    return 0


def _lengths(values) -> str:
    if not values:
        return "-"
    a = np.array(values)
    return f"min {a.min()}  median {int(np.median(a))}  p95 {int(np.percentile(a, 95))}  max {a.max()}"


def data_stats(rows, tokenizer) -> dict:
    from derta_mlx.data.segments import continuation_ids
    from derta_mlx.probe.first_refusal import first_refusal_histogram

    def n_tokens(text):
        return len(continuation_ids(tokenizer, " " + text))

    triples = [r for r in rows if isinstance(r, SafetyTriple)]
    safe_texts = [r.safe_response for r in triples]
    safe_texts += [r.text for r in rows if isinstance(r, DertaRow) and not r.rto]
    histogram = first_refusal_histogram(tokenizer, [text.lstrip() for text in safe_texts])
    return {
        "rows": dict(Counter(kind_of(r) for r in rows)),
        "tokens": {
            "question": [n_tokens(r.question) for r in triples],
            "safe_response": [n_tokens(r.safe_response) for r in triples],
            "harmful_response": [n_tokens(r.harmful_response) for r in triples],
            "helpful_response": [n_tokens(r.response) for r in rows if isinstance(r, HelpfulRow) and r.response],
        },
        "refusal_start": histogram,
        "safe_answers": safe_answer_mix([r.safe_response for r in triples]),
        "files": dict(Counter(r.where.path for r in rows)),
    }


SAFE_PLACES = {"refuses": "refuse in their first sentence", "later": "refuse only after it",
               "none": "do not refuse (training puts the refusal opening before them)"}


def safe_answer_mix(safe_texts) -> dict:
    """How many safe answers refuse in their first sentence, later, or not at all (fetch's rule)."""
    from derta_mlx.data.fetch.refusing import refusal_place

    counts = Counter(refusal_place(text) for text in safe_texts)
    return {place: counts.get(place, 0) for place in SAFE_PLACES}


def cmd_stats(args) -> int:
    from derta_mlx.common.progress import Bar
    from derta_mlx.data.instances import build_instances
    from derta_mlx.train.config import TrainConfig
    from derta_mlx.train.job import make_instance_config, resolve_tokenizer

    if args.json:
        check_not_input(args.json, _input_paths(args.files), "--json")
    rows = read_rows(args.files)
    cfg = TrainConfig(model=args.model)
    _, tokenizer, template, refusal = resolve_tokenizer(cfg, notify_stderr)
    stats = data_stats(rows, tokenizer)
    with Bar("Building instances", len(rows), "rows") as bar:
        _, built = build_instances(rows, tokenizer, make_instance_config(cfg, tokenizer, template, refusal), bar)
    stats["transition"] = {"refusal_token": refusal.token_id, "refusal_text": refusal.text, **built.as_dict()}
    print("rows: " + ", ".join(f"{n} {kind}" for kind, n in stats["rows"].items()))
    if len(stats["files"]) > 1:
        print("rows per file: " + ", ".join(f"{path} {n}" for path, n in stats["files"].items()))
    if sum(stats["safe_answers"].values()):
        print("safe answers: " + ", ".join(f"{n} {SAFE_PLACES[place]}"
                                           for place, n in stats["safe_answers"].items()))
    print("token lengths:")
    for field, values in stats["tokens"].items():
        if values:
            print(f"  {field:<17} {_lengths(values)}")
    print("where the refusal starts in the safe responses (token position; the paper's Fig. 4 buckets):")
    total = max(sum(stats["refusal_start"].values()), 1)
    for label, n in stats["refusal_start"].items():
        print(f"  {label:<17} {n:>5}  {n / total:6.1%}")
    print(f"refusal token {refusal.text!r} (id {refusal.token_id}, template {template.name}); safe responses "
          f"normalised to open with {cfg.refusal_opening!r}: {dict(built.openings)}")
    print(built.transition_summary())
    if args.json:
        from derta_mlx.common.atomic import write_json

        write_json(args.json, {**stats, "tokens": {k: v for k, v in stats["tokens"].items()}})
    return 0


def _input_paths(files) -> list:
    """The data files named on the command line, each also without a :RATIO suffix."""
    paths = []
    for name in files:
        paths.append(name)
        head, _, ratio = str(name).rpartition(":")
        if head and ratio.replace(".", "", 1).isdigit():
            paths.append(head)
    return paths


def cmd_build(args) -> int:
    from derta_mlx.common.atomic import write_text
    from derta_mlx.common.progress import Bar
    from derta_mlx.data.instances import build_instances
    from derta_mlx.train.job import make_instance_config, resolve_tokenizer

    cfg = config_from_args(args).validate()
    check_not_input(args.out, _input_paths(args.files))
    rows = read_rows(args.files)
    _, tokenizer, template, refusal = resolve_tokenizer(cfg, notify_stderr)
    with Bar("Building instances", len(rows), "rows") as bar:
        instances, stats = build_instances(rows, tokenizer, make_instance_config(cfg, tokenizer, template, refusal),
                                           bar)
    lines = []
    with Bar(f"Writing {args.out}", len(instances), "instances") as bar:
        for x in instances:
            lines.append(json.dumps({
                "source": x.source, "kind": x.kind, "prefix_units": x.prefix_units,
                "inputs": x.inputs.tolist(), "targets": x.targets.tolist(), "terms": x.terms.tolist(),
                "text": tokenizer.decode(x.inputs.tolist()) if args.with_text else None,
            }) + "\n")
            if len(lines) % 1000 == 0 or len(lines) == len(instances):
                bar(len(lines))
    write_text(args.out, "".join(lines))
    print(f"wrote {len(instances)} instances to {args.out}: {dict(stats.kinds)}; "
          f"supervised tokens {dict(stats.supervised)}; truncated {stats.truncated}; "
          f"dropped {dict(stats.dropped) or 0}; refusal token {refusal.text!r} id {refusal.token_id}; "
          f"safe responses {dict(stats.openings)}")
    print(stats.transition_summary())
    return 0


def register(commands) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = commands.add_parser("data", help="validate, describe and build training data",
                                 description="Training and evaluation data in JSON Lines.")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("validate", help="check every row; errors name FILE:LINE",
                       epilog="example:\n  derta-mlx data validate safety.jsonl helpful.jsonl", formatter_class=raw)
    p.add_argument("files", nargs="+")
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("stats", help="counts, token lengths and where refusals start",
                       epilog="example:\n  derta-mlx data stats safety.jsonl --model llama3-8b-4bit", formatter_class=raw)
    p.add_argument("files", nargs="+")
    p.add_argument("--model", help="whose tokenizer counts tokens (default: the embedded model)")
    p.add_argument("--json", type=output_file, help="also write the numbers here")
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser("build", help="write the training instances training would use, for inspection",
                       epilog="example:\n  derta-mlx data build safety.jsonl --out instances.jsonl "
                       "--method derta --prefix-unit token", formatter_class=raw)
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True, type=output_file, help="instances .jsonl to write")
    p.add_argument("--with-text", action="store_true", help="also write each instance's decoded text")
    p.add_argument("-c", "--config", help="YAML settings, as for train")
    add_config_flags(p, exclude={"data", "val_data", "adapter_path"})
    p.set_defaults(run=cmd_build)

    data_fetch.register(sub)
