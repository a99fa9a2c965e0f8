"""`derta-mlx models list|show|download|convert`."""

import argparse
from pathlib import Path

from derta_mlx.common.errors import UserError
from derta_mlx.common.progress import notify_stderr
from derta_mlx.data.refusal_token import resolve_refusal
from derta_mlx.data.templates import get_template
from derta_mlx.models.catalogue import load_catalogue, models_dir
from derta_mlx.models.loading import (
    ensure_local,
    find_model,
    load_tokenizer,
    local_path,
)
from derta_mlx.train.memory import train_memory_label


def _where(entry) -> str:
    return entry.repo if entry.source == "hub" else entry.source


def cmd_list(args) -> int:
    catalogue = load_catalogue()
    rows = [("NAME", "FAMILY", "FROM", "TEMPLATE", "DISK", "TRAIN MEM*", "LOCAL")]
    for entry in catalogue.entries.values():
        present = local_path(find_model(entry.name)) is not None
        name = entry.name + (" (default)" if entry.name == catalogue.default else "")
        rows.append(
            (name, entry.family, _where(entry), entry.template,
             f"{entry.disk_gb:g} GB", train_memory_label(entry.name), "yes" if present else "no")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print("\n* estimated peak on a Mac for the default run / with --grad-checkpoint (batch 4 x 512 tokens, "
          "LoRA rank 8 on 16 blocks); `derta-mlx train --dry-run --model NAME --memory-gb N` checks other settings")
    print(f"local weights: {models_dir()} (hub models: the Hugging Face cache)")
    return 0


def cmd_show(args) -> int:
    ref = find_model(args.name)
    entry = ref.entry
    if entry:
        fields = [
            ("name", entry.name), ("description", entry.description), ("source", _where(entry)),
            ("family", entry.family), ("template", entry.template), ("refusal rule", entry.refusal),
            ("licence", entry.licence), ("parameters", f"{entry.params_b:g} B"),
            ("disk", f"{entry.disk_gb:g} GB"),
            ("training memory", train_memory_label(entry.name) + " (estimated: default run / --grad-checkpoint)"),
        ]
    else:
        fields = [("model", ref.spec), ("source", ref.repo or "local directory")]
    path = local_path(ref)
    if path is None and (args.fetch or (entry and entry.source != "hub")):
        path = ensure_local(ref, notify_stderr)
    fields.append(("local path", str(path) if path else "not downloaded (derta-mlx models download NAME)"))
    if path:
        tokenizer = load_tokenizer(path)
        rule = args.refusal or ref.refusal_rule
        template = get_template(ref.template, tokenizer)
        target = resolve_refusal(tokenizer, rule, template.response_lead)
        fields.append(("refusal token", f"{target.text!r} id {target.token_id} (piece {target.piece!r}, rule {rule}, "
                                        f"template {template.name}, refusal opening 'Sorry')"))
        variants = ", ".join(f"{text!r}={token_id}" for token_id, text in target.variants)
        fields.append(("refusal variants", variants or "none"))
        fields.append(("eos", f"{tokenizer.eos_token!r} id {tokenizer.eos_token_id}"))
        fields.append(("chat template", "yes" if getattr(tokenizer, "chat_template", None) else "no"))
    width = max(len(key) for key, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    return 0


def cmd_download(args) -> int:
    ref = find_model(args.name)
    path = ensure_local(ref, notify_stderr)
    print(f"{ref.spec}: ready at {path}")
    return 0


def cmd_convert(args) -> int:
    from derta_mlx.common.progress import Bar
    from derta_mlx.models.gguf.convert import CONVERT_STEPS, GGUFError, convert_gguf

    out = Path(args.out) if args.out else models_dir() / Path(args.gguf).stem.lower()
    notify_stderr(f"Converting {args.gguf} -> {out}")
    try:
        with Bar("Converting (check, read, convert, write)", CONVERT_STEPS, "steps") as bar:
            path = convert_gguf(args.gguf, out, overwrite=args.overwrite, progress=bar)
    except GGUFError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {path}; use it with --model {path}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "models", help="the model catalogue: list, show, download, convert",
        description="The model catalogue (models/catalogue.yaml). --model also accepts a Hugging Face "
        "repo id or a local mlx-lm directory.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("list", help="list catalogue entries and whether each is local",
                       epilog="example:\n  derta-mlx models list", formatter_class=raw)
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("show", help="one entry, with its resolved refusal token",
                       epilog="examples:\n  derta-mlx models show smollm2-135m-4bit\n"
                       "  derta-mlx models show tiny-llama3 --refusal official", formatter_class=raw)
    p.add_argument("name", help="catalogue name, hub repo id or local directory")
    p.add_argument("--refusal", help="refusal rule to resolve instead of the entry's (auto, official, "
                   "space, token:TEXT, phrase:TEXT, id:N)")
    p.add_argument("--fetch", action="store_true", help="download a hub model first if it is not cached")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("download", help="fetch a hub model (resumable; honours HF_HOME, HF_HUB_OFFLINE)",
                       epilog="examples:\n  derta-mlx models download mistral-7b-4bit\n"
                       "  derta-mlx models download mlx-community/Meta-Llama-3-8B-Instruct-4bit",
                       formatter_class=raw)
    p.add_argument("name", help="catalogue name or hub repo id")
    p.set_defaults(run=cmd_download)

    p = sub.add_parser("convert", help="convert a llama.cpp GGUF file into an mlx-lm directory",
                       epilog="example:\n  derta-mlx models convert --gguf ~/llama.cpp/model.Q4_1.gguf "
                       "--out models/my-model", formatter_class=raw)
    p.add_argument("--gguf", required=True, help="the .gguf file (LLaMA architecture)")
    p.add_argument("--out", help="output directory (default: models/<file stem>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(run=cmd_convert)
