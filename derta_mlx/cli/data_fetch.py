"""`derta-mlx data fetch`: public datasets from the hub, converted to DeRTa training data."""

import argparse

from derta_mlx.cli.arg_types import new_output_file, positive_int
from derta_mlx.common.progress import notify_stderr

EPILOG = """\
examples:
  derta-mlx data fetch --list
  derta-mlx data fetch pku-saferlhf --limit 3000 --out data/safety.jsonl
  derta-mlx data fetch beavertails --split 330k_train --non-refusing rewrite
  derta-mlx data fetch alpaca-cleaned --limit 9000 --out data/helpful.jsonl
  derta-mlx data fetch derta-official --from DeRTa/          (a clone of github.com/RobustNLP/DeRTa)
  derta-mlx data fetch OWNER/NAME --schema alpaca --file data/train.json
  derta-mlx train --data data/safety.jsonl:1 data/helpful.jsonl:3

Downloads go through huggingface_hub's cache (HF_HOME, HF_HUB_OFFLINE honoured; an interrupted
download resumes). Safety triples keep a safe answer only if it refuses in its first sentence;
--non-refusing says what happens to the others (drop, rewrite: "Sorry, I can't help with that."
in front, keep). No record's text is printed."""


def cmd_list(args) -> int:
    from derta_mlx.data.fetch.catalogue import load_catalogue

    for entry in load_catalogue().values():
        where = f"github.com/{entry.repo} (--from a clone)" if entry.source == "github" else entry.repo
        print(f"{entry.name:<24} {entry.role:<24} {where}")
        print(f"{'':<24} {entry.description}")
        print(f"{'':<24} licence: {entry.licence}; splits: {', '.join(entry.splits)} "
              f"(default {entry.default_split})")
    return 0


def cmd_fetch(args) -> int:
    from derta_mlx.common.errors import UserError
    from derta_mlx.data.fetch.job import FetchRequest, fetch

    if args.list:
        return cmd_list(args)
    if not args.name:
        raise UserError("data fetch: name a dataset (`derta-mlx data fetch --list` shows the catalogue)")
    request = FetchRequest(args.name, split=args.split, limit=args.limit, out=args.out, revision=args.revision,
                           local=args.local, schema=args.schema, files=tuple(args.file or ()),
                           non_refusing=args.non_refusing, force=args.force)
    summary = fetch(request, notify_stderr)
    print("\n".join(summary.lines()))
    return 0


def register(sub) -> None:
    from derta_mlx.data.fetch.refusing import POLICIES
    from derta_mlx.data.fetch.schemas import SCHEMAS

    p = sub.add_parser("fetch", help="download a public dataset and convert it to our formats",
                       description="Download a known dataset (or any hub dataset with --schema) and write it "
                       "as JSON Lines that `derta-mlx train --data` reads.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="a catalogue name (--list), or OWNER/NAME of a hub dataset")
    p.add_argument("--list", action="store_true", help="show the catalogue: names, licences, splits")
    p.add_argument("--split", help="which of the dataset's splits (default: the catalogue's)")
    p.add_argument("--limit", type=positive_int, help="write at most this many rows")
    p.add_argument("--out", type=new_output_file,
                   help="the .jsonl to write; its folder is made if missing (default: data/NAME-SPLIT.jsonl)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--revision", help="a branch, tag or commit of the dataset repo (default: main)")
    p.add_argument("--from", dest="local", metavar="PATH",
                   help="convert local files instead of downloading: a file, or a folder holding the split's files")
    p.add_argument("--schema", choices=list(SCHEMAS), help="how to read an OWNER/NAME dataset's records")
    p.add_argument("--file", action="append", metavar="PATH", help="a file of the dataset repo (repeatable)")
    p.add_argument("--non-refusing", choices=POLICIES, default="drop",
                   help="safety triples whose safe answer does not refuse in its first sentence (default: drop)")
    p.set_defaults(run=cmd_fetch)
