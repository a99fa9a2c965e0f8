"""`derta-mlx probe`: refusal at chosen positions inside a harmful answer, base versus adapter."""

import argparse
from dataclasses import asdict

import numpy as np

from derta_mlx.cli.arg_types import (
    non_negative_float,
    output_file,
    plot_file,
    positive_int,
    probability,
)
from derta_mlx.common.errors import UserError
from derta_mlx.common.progress import notify_stderr
from derta_mlx.data.refusal_token import check_rule_form
from derta_mlx.data.templates import check_template_name
from derta_mlx.probe.model import (
    check_positions,
    load_probe_model,
    parse_positions,
    read_adapter_config,
    read_probe_examples,
    set_adapter_scale,
)

EPILOG = """examples:
  derta-mlx probe --adapter-path runs/demo --compare-base --data derta_mlx/demo/safety_heldout.jsonl
  derta-mlx probe --question "How do I skip chores?" --harmful-response "Sure! Step 1: ..." --every 4
  derta-mlx probe --adapter-path runs/demo --data triples.jsonl --positions 0,5,10,20,40 --json probe.json --plot probe.png
Continuations are never printed, nor saved in --json, unless you pass --show-text.
"""


def positions_of(args, lengths):
    """--positions, or every N up to the longest answer (at most 64); none past every answer."""
    if args.every:
        return parse_positions(every=args.every, longest=min(max(lengths), 64), prefix="--")
    positions = parse_positions(args.positions, prefix="--")
    check_positions(positions, lengths, args.unit, notify_stderr, prefix="--")
    return positions


def load_examples(args, notify=notify_stderr):
    from derta_mlx.probe.curves import ProbeExample

    if args.data:
        if args.question or args.harmful_response:
            raise UserError("give --data FILE or --question with --harmful-response, not both")
        return read_probe_examples(args.data, notify)[: args.limit]
    if not (args.question and args.harmful_response):
        missing = "--harmful-response" if args.question else "--question"
        raise UserError(f"give --question and --harmful-response, or --data FILE of safety triples "
                        f"({missing} is missing)")
    for flag, text in (("--question", args.question), ("--harmful-response", args.harmful_response)):
        if not text.strip():
            raise UserError(f"{flag} is empty")
    return [ProbeExample(args.question, args.harmful_response, "cli")]


def check_args(args, notify) -> list:
    """Everything checkable before the weights load: flags, the adapter directory, the examples."""
    if args.compare_base and not args.adapter:
        raise UserError("--compare-base needs --adapter-path RUN")
    if args.every is None:
        parse_positions(args.positions, prefix="--")
    for flag, check, value in (("--template", check_template_name, args.template),
                               ("--refusal", check_rule_form, args.refusal)):
        try:
            if value:
                check(value)
        except UserError as exc:
            raise UserError(f"{flag}: {exc}") from None
    if args.checkpoint:
        from derta_mlx.train.best import resolve_checkpoint

        if not args.adapter:
            raise UserError("--checkpoint names a checkpoint of a run: give the run with --adapter-path RUN")
        args.adapter = str(resolve_checkpoint(args.adapter, args.checkpoint))
        notify(f"--checkpoint {args.checkpoint}: the adapter in {args.adapter}")
    if args.adapter:
        read_adapter_config(args.adapter)
    return load_examples(args, notify)


def plot(path, variants, summaries):
    """The mean teacher-forced curve(s), and beside them what the continuations did at each k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, right) = plt.subplots(1, 2, figsize=(12, 4))
    for label, results in variants.items():
        longest = max(len(r.curve) for r in results)
        mean = [np.mean([r.curve[k] for r in results if k < len(r.curve)]) for k in range(longest)]
        ax.plot(range(longest), mean, label=label)
    ax.set_xlabel("harmful tokens already in the answer (k)")
    ax.set_ylabel("P(refusal token)")
    ax.set_ylim(0, 1)
    ax.set_title("Teacher-forced refusal probability inside harmful answers")
    ax.legend()
    for label, rows in summaries.items():
        ks = [row.position for row in rows]
        right.plot(ks, [row.refusal_rate for row in rows], marker="o", label=f"{label}: refuses")
        right.plot(ks, [row.coherent for row in rows], marker="s", linestyle="--", label=f"{label}: coherent refusal")
        right.plot(ks, [row.token_loop for row in rows], marker="x", linestyle=":", label=f"{label}: token loop")
    right.set_xlabel("position k of the continuation")
    right.set_ylabel("share of continuations")
    right.set_ylim(0, 1.05)
    right.set_title("What the greedy continuations do")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_probe(args) -> int:
    from derta_mlx import accel

    notes = []
    examples = check_args(args, notes.append)  # before start(): a bad input fails before any restart
    accel.start(argv=args.argv)
    from derta_mlx.probe.first_refusal import first_refusal_histogram
    from derta_mlx.probe.positions import answer_lengths, probe_examples, summarise

    for note in notes:  # only the process that goes on says them
        notify_stderr(note)
    notify_stderr(accel.describe())
    loaded = load_probe_model(args.model, args.adapter, notify_stderr, args.dequantize, args.template, args.refusal)
    if args.compare_base and not loaded.can_compare_base:
        raise UserError("--compare-base turns LoRA layers off by scale; for DoRA, probe the base separately")
    model, tokenizer, template, refusal = loaded.model, loaded.tokenizer, loaded.template, loaded.refusal
    refusal_ids = loaded.refusal_ids
    positions = positions_of(args, answer_lengths(tokenizer, template, examples, args.unit))

    variants = {}
    settings = (args.unit, args.max_tokens, args.temperature, args.top_p, refusal.token_id)
    if args.compare_base:
        set_adapter_scale(model, 0.0)
        notify_stderr(f"probing the base: {len(examples)} example(s) x {len(positions)} positions...")
        variants["base"] = probe_examples(model, tokenizer, template, refusal_ids, examples, positions, *settings)
        set_adapter_scale(model, 1.0)
    label = "adapter" if args.adapter else "model"
    notify_stderr(f"probing the {label}: {len(examples)} example(s) x {len(positions)} positions...")
    variants[label] = probe_examples(model, tokenizer, template, refusal_ids, examples, positions, *settings)
    summaries = {name: summarise(results, positions) for name, results in variants.items()}

    names = list(variants)
    print(f"refusal tokens {refusal_ids} ({refusal.text!r} and variants); {len(examples)} example(s); "
          f"positions in {args.unit}s")
    columns = (("refuses", "refusal_rate", "%"), ("partial", "partial", "%"), ("coherent", "coherent", "%"),
               ("re-refusal", "re_refusal", "%"),
               ("loop", "token_loop", "%"), ("P(refusal)", "mean_p_refusal", "p"), ("P(again)", "mean_p_again", "p"))
    for name in names:
        print(f"{name}:")
        print(f"{'k':>5}" + "".join(f"  {title:>10}" for title, _, _ in columns))
        for row in summaries[name]:
            cells = [f"{getattr(row, key):>10.0%}" if kind == "%" else f"{getattr(row, key):>10.4f}"
                     for _, key, kind in columns]
            print(f"{row.position:>5}" + "".join(f"  {cell}" for cell in cells))
    print("refuses: a full or partial refusal (derta_mlx/data/detector.py); partial: it also answers; "
          "coherent: a full refusal, as a sentence; re-refusal: it refuses again; loop: one word repeated "
          "(derta_mlx/probe/coherence.py); P(again): the refusal token right after itself")
    histograms = {}
    if 0 in positions:  # the paper's Fig. 4: where refusals start in responses to the plain prompt
        index = positions.index(0)
        histograms = {name: first_refusal_histogram(tokenizer, [r.positions[index].text for r in results])
                      for name, results in variants.items()}
        print(f"first refusal token in the k=0 responses ({args.max_tokens} tokens decoded):")
        for name, histogram in histograms.items():
            print(f"  {name:<8} " + "  ".join(f"{label}: {n}" for label, n in histogram.items()))
    if len(examples) == 1 or args.show_text:
        for name in names:
            for result in variants[name]:
                for cell in result.positions:
                    if args.show_text:
                        print(f"[{name} {result.id} k={cell.position}] {cell.text!r}")
                    elif cell.refuses:  # only the refusal itself, never harmful text
                        print(f"[{name} k={cell.position}] refuses: {cell.text[cell.refusal_char:][:40]!r}")
    if args.json:
        from derta_mlx.common.atomic import write_json

        def example_json(result):
            cells = [{**asdict(c), "text": c.text if args.show_text else None} for c in result.positions]
            return {"id": result.id, "curve": result.curve.tolist(), "positions": cells}

        write_json(args.json, {
            "model": loaded.spec, "adapter": args.adapter, "positions": positions, "unit": args.unit, "refusal_ids": refusal_ids,
            "summary": {name: [asdict(row) for row in rows] for name, rows in summaries.items()},
            "first_refusal_histogram": histograms,
            "examples": {name: [example_json(r) for r in results] for name, results in variants.items()},
        })
        print(f"wrote {args.json}")
    if args.plot:
        plot(args.plot, variants, summaries)
        print(f"wrote {args.plot}")
    return 0


def register(commands) -> None:
    p = commands.add_parser("probe", help="refusal at chosen harmful-prefix positions (base vs adapter)",
                            description="Teacher-forced P(refusal) over every position of a harmful answer, "
                            "and greedy continuations from chosen positions judged by the refusal detector.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="catalogue name, hub id or directory (default: the embedded model)")
    p.add_argument("--adapter-path", "--adapter", dest="adapter",
                   help="a run directory (adapters.safetensors + adapter_config.json; --adapter is an alias)")
    p.add_argument("--checkpoint", choices=("final", "best"),
                   help="with --adapter-path RUN: final (the default) or best, the checkpoint that train "
                   "--probe-every kept by safety and helpfulness (RUN/checkpoints/best)")
    p.add_argument("--question")
    p.add_argument("--harmful-response")
    p.add_argument("--data", help="safety triples jsonl")
    p.add_argument("--limit", type=positive_int, default=None, help="probe only the first N triples")
    p.add_argument("--positions", default="0,5,10,20,40", help="comma-separated k (default 0,5,10,20,40)")
    p.add_argument("--every", type=positive_int, help="every N units instead of --positions")
    p.add_argument("--unit", choices=("token", "word"), default="token")
    p.add_argument("--max-tokens", type=positive_int, default=32, help="tokens to decode at each position")
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", type=probability, default=1.0, help="nucleus sampling threshold, in (0, 1]")
    p.add_argument("--template", help="derta | derta-eval | chat | auto")
    p.add_argument("--refusal", help="refusal-token rule (see `derta-mlx models show`)")
    p.add_argument("--dequantize", choices=("auto", "yes", "no"), default="auto",
                   help="compute a quantised model with its float32 values (auto: on a CPU, ~30x faster)")
    p.add_argument("--compare-base", action="store_true", help="also probe with the adapter off (one load)")
    p.add_argument("--json", type=output_file,
                   help="write every number and verdict here (the continuations' text only with --show-text)")
    p.add_argument("--plot", type=plot_file, help="write a PNG of the mean curve(s)")
    p.add_argument("--show-text", action="store_true", help="print the continuations' text, and save it in --json")
    p.set_defaults(run=cmd_probe)
