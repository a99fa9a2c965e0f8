"""`derta-mlx eval`: attack suites through a model, layered judges, ASR and helpfulness reports.

  derta-mlx eval [run] --suite FILE ...   generate (resumable), judge, report
  derta-mlx eval judge FILE               judge generations other tools wrote
  derta-mlx eval compare RUN_A RUN_B      two reports side by side

Bare `derta-mlx eval --suite ...` is `eval run`: the run flags live on the `eval` parser
itself and again (with suppressed defaults) on `run`, so both spellings parse the same.
"""

import argparse
import hashlib
import json
from contextlib import nullcontext
from pathlib import Path

from derta_mlx.cli.arg_types import output_file
from derta_mlx.cli.eval_flags import (
    COMPARE_EPILOG,
    JUDGE_EPILOG,
    RUN_EPILOG,
    add_judge_flags,
    add_run_flags,
)
from derta_mlx.common.errors import UserError
from derta_mlx.common.progress import notify_stderr
from derta_mlx.common.safe_paths import check_not_input
from derta_mlx.eval.suites import KINDS
from derta_mlx.probe.borderline import BORDERLINE_DEMO, read_borderline, stratified
from derta_mlx.probe.model import adapter_base_model, read_adapter_config

DEMO_SUITES = Path(__file__).resolve().parents[1] / "demo" / "suites"


def demo_suites():
    return [str(p) for p in sorted(DEMO_SUITES.glob("*.jsonl"))]


def demo_borderline_sample(suite):
    from derta_mlx.eval.suites import Suite
    from derta_mlx.probe.before_after import BORDERLINE_SAFE, BORDERLINE_UNSAFE

    if Path(suite.path) != BORDERLINE_DEMO:
        return suite
    keep = {p.id for p in stratified(read_borderline(BORDERLINE_DEMO), BORDERLINE_SAFE, BORDERLINE_UNSAFE)}
    return Suite(suite.name, suite.kind, suite.path, tuple(i for i in suite.items if i.id in keep))


def default_out(args, ref) -> Path:
    if args.adapter:
        return Path(args.adapter) / "eval"
    return Path("runs") / f"eval-{Path(ref.spec).name}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def check_out(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: a file is there; give a directory")


def check_settings(out_dir: Path, settings: dict) -> None:
    """Records in OUT may only be reused for the same model, adapter and decoding length."""
    check_out(out_dir)
    path = out_dir / "eval_config.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = None
    if not isinstance(old, dict):
        raise UserError(f"{path}: not valid JSON, so its generations cannot be matched to these settings; "
                        f"use another --out (or delete {out_dir})")
    for key in ("model", "adapter_sha256", "max_tokens", "dequantize"):
        if old.get(key) != settings.get(key):
            raise UserError(f"{out_dir} holds generations made with {key}={old.get(key)!r}, not "
                            f"{settings.get(key)!r}; use another --out (or delete {out_dir})")


def load_labels(args, out_dir):
    from derta_mlx.eval.judge import read_labels

    path = args.labels or (out_dir / "labels.jsonl" if out_dir and (out_dir / "labels.jsonl").is_file() else None)
    return (read_labels(path), str(path)) if path else ({}, None)


def note_unmatched_labels(labels, labels_path, records) -> None:
    """A label whose id (or suite) matches no safety record changes nothing: say so, once."""
    from derta_mlx.eval.labels import unmatched_labels

    unmatched = unmatched_labels(labels, records)
    if unmatched:
        suite, item_id = unmatched[0]
        example = f"id {item_id!r}" + (f" in suite {suite!r}" if suite is not None else "")
        notify_stderr(f"{labels_path}: {len(unmatched)} of {len(labels)} label(s) match no safety record "
                      f"(e.g. {example}); check their ids and suites")


def check_judges(args, judges) -> None:
    """Before any generation: the llm judge needs its model, and a known preset."""
    from derta_mlx.eval.judge_presets import resolve_preset

    if "llm" in judges and not args.judge_model:
        raise UserError("--judge llm needs --judge-model NAME|PATH (any mlx-lm model; an instruct model is best)")
    if "llm" in judges:
        resolve_preset(args.judge_preset, args.judge_model)


def make_llm(args, judges, cache_dir):
    if "llm" not in judges:
        return None
    check_judges(args, judges)
    from derta_mlx.eval.llm_judge import load_llm_judge

    cache = Path(args.judge_cache) if args.judge_cache else (cache_dir / "judge_cache.json" if cache_dir else None)
    return load_llm_judge(args.judge_model, cache, notify_stderr, args.dequantize, args.judge_preset)


def show_text(records) -> None:
    for record in records:
        print(f"[{record['suite']} {record['id']}] {record.get('verdict') or record.get('extracted')}: "
              f"{record['response']!r}")


def accumulate(out_dir: Path, stats, batch_size: int) -> dict:
    """Generation totals of the directory: a resumed or re-judged eval adds to the earlier ones."""
    from derta_mlx.eval.report import REPORT_JSON

    total = {"samples": stats.samples, "tokens": stats.tokens, "seconds": stats.seconds}
    try:
        old = json.loads((out_dir / REPORT_JSON).read_text(encoding="utf-8")).get("generation") or {}
    except (OSError, json.JSONDecodeError):
        old = {}
    for key in total:
        total[key] += old.get(key, 0)
    total["seconds"] = round(total["seconds"], 2)
    total["tokens_per_s"] = round(total["tokens"] / total["seconds"], 1) if total["seconds"] else 0.0
    total["batch_size"] = batch_size
    return total


def prepare_run(args):
    """Every input checked before the weights load (and before start() may restart the process)."""
    from derta_mlx.eval.judge import parse_judges
    from derta_mlx.eval.suites import Suite, read_suites
    from derta_mlx.models.loading import find_model

    judges = parse_judges(args.judge)
    check_judges(args, judges)
    if args.adapter:
        read_adapter_config(args.adapter)
    suites = read_suites([BORDERLINE_DEMO if spec == "borderline" else spec for spec in args.suite]
                         if args.suite else demo_suites())
    if not args.suite:  # the demo's over-refusal suite: the main job's balanced sample, not all 480
        suites = [demo_borderline_sample(s) for s in suites]
    if args.limit:
        suites = [Suite(s.name, s.kind, s.path, s.items[: args.limit]) for s in suites]
    ref = find_model(args.model or adapter_base_model(args.adapter))
    out_dir = Path(args.out) if args.out else default_out(args, ref)
    settings = {"model": ref.spec, "adapter": args.adapter,
                "adapter_sha256": _sha256(Path(args.adapter) / "adapters.safetensors") if args.adapter else None,
                "max_tokens": args.max_tokens, "dequantize": args.dequantize}
    check_settings(out_dir, settings)
    return judges, suites, ref, out_dir, settings, load_labels(args, out_dir)


def cmd_run(args) -> int:
    from derta_mlx import accel

    judges, suites, ref, out_dir, settings, (labels, labels_path) = prepare_run(args)
    accel.start(argv=args.argv)

    from derta_mlx.accel import load_for_inference
    from derta_mlx.common.atomic import write_json, write_text
    from derta_mlx.common.progress import Bar
    from derta_mlx.eval.generate import (
        RECORDS,
        generate_records,
        latest_by_key,
        pending_jobs,
        read_records,
        record_key,
    )
    from derta_mlx.eval.pipeline import (
        Settings,
        build_jobs,
        judge_records,
        record_maker,
    )
    from derta_mlx.eval.prompts import resolve_template
    from derta_mlx.eval.report import summarise, write_report
    from derta_mlx.models.loading import ensure_local

    path = ensure_local(ref, notify_stderr)
    model, tokenizer, _ = load_for_inference(path, args.adapter, args.dequantize)
    template = resolve_template(args.template, ref.template, tokenizer)
    jobs, bases = build_jobs(suites, tokenizer, Settings(template, args.attack))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "eval_config.json", {**settings, "template": template, "attack": args.attack,
                                              "suites": [s.path for s in suites], "judges": judges})
    records_path = out_dir / RECORDS
    notify_stderr(f"eval: {len(jobs)} prompts from {len(suites)} suite(s), template {template}, "
            f"max {args.max_tokens} tokens, batch {args.batch_size} -> {out_dir}")

    pending = len(pending_jobs(jobs, records_path))
    if pending < len(jobs):
        notify_stderr(f"  {len(jobs) - pending} of {len(jobs)} prompts have responses in {records_path}; "
                + ("resuming" if pending else "nothing to generate"))
    with Bar("Generating", pending, "prompts") if pending else nullcontext() as bar:
        stats = generate_records(model, tokenizer, jobs, records_path, record_maker(bases, tokenizer),
                                 args.batch_size, args.max_tokens, lambda done, total, _: bar(done, total))
    if stats.samples:
        notify_stderr(f"  generated {stats.samples} responses at {stats.tokens_per_s:.1f} tokens/s")
    every = read_records(records_path)
    latest = latest_by_key(every)
    # the suite decides the kind (records from before attack kinds said "safety")
    current = [{**latest[job.key], "kind": bases[job.key]["kind"]} for job in jobs]
    judged = judge_records(current, judges, labels, make_llm(args, judges, out_dir))
    replaced = {record_key(r): r for r in judged}
    kept = [replaced.pop(record_key(r), None) or r for r in latest.values()]
    note_unmatched_labels(labels, labels_path, kept)  # all of records.jsonl: --limit may judge fewer
    write_text(records_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    generation = accumulate(out_dir, stats, args.batch_size)
    report = summarise(judged, [(s.name, s.kind) for s in suites], judges,
                       {"model": ref.spec, "adapter": args.adapter, "template": template, "attack": args.attack,
                        "max_tokens": args.max_tokens, "labels": labels_path, "generation": generation})
    if args.show_text:
        show_text(judged)
    print(write_report(out_dir, report), end="")
    print(f"wrote {records_path}, {out_dir / 'report.md'}, report.json, report.png")
    return 0


def cmd_judge(args) -> int:
    from derta_mlx.common.atomic import write_text
    from derta_mlx.eval.existing import read_generations
    from derta_mlx.eval.judge import parse_judges
    from derta_mlx.eval.pipeline import first_refusal_token, judge_records
    from derta_mlx.eval.report import markdown, summarise, write_report
    from derta_mlx.eval.suites import read_suite
    from derta_mlx.models.loading import ensure_local, find_model, load_tokenizer

    judges = parse_judges(args.judge)
    check_judges(args, judges)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        check_out(out_dir)
    prompts = read_suite(args.prompts) if args.prompts else None
    records, facts = read_generations(args.file, prompts, args.kind)
    labels, labels_path = load_labels(args, out_dir)
    kinds = sorted({r["kind"] for r in records})
    if kinds == [facts["kind"]]:
        notify_stderr(f"{args.file}: judged as {facts['kind']} ({facts['kind_from']})")
    else:  # our own records carry each row's suite kind
        notify_stderr(f"{args.file}: judged by each row's kind ({', '.join(kinds)})")
    if facts["strings"] and not prompts:
        notify_stderr(f"{args.file}: {facts['strings']} prompt+continuation strings and no --prompts: "
                "the prompt text stays in each response")
    elif prompts and facts["prompt_unmatched"]:
        notify_stderr(f"{args.file}: {facts['prompt_unmatched']} row(s) matched no question of {args.prompts}")
    tokenizer = load_tokenizer(ensure_local(find_model(args.tokenizer), notify_stderr))
    for record in records:
        record["first_refusal_token"] = first_refusal_token(tokenizer, record["response"])
    judged = judge_records(records, judges, labels, make_llm(args, judges, out_dir))
    note_unmatched_labels(labels, labels_path, judged)
    order = []
    for record in judged:
        if (record["suite"], record["kind"]) not in order:
            order.append((record["suite"], record["kind"]))
    report = summarise(judged, order, judges, {"source": str(args.file), "prompts": args.prompts,
                                                "labels": labels_path, "read": facts})
    if args.show_text:
        show_text(judged)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "records.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in judged))
        print(write_report(out_dir, report), end="")
        print(f"wrote {out_dir / 'records.jsonl'}, {out_dir / 'report.md'}, report.json, report.png")
    else:
        print(markdown(report), end="")
    return 0


def cmd_compare(args) -> int:
    from derta_mlx.common.atomic import write_text
    from derta_mlx.eval.report import compare, load_report

    if args.out:
        inputs = [args.run_a, args.run_b]
        check_not_input(args.out, inputs + [Path(p) / name for p in inputs for name in ("report.json", "report.md")])
    a, b = load_report(args.run_a), load_report(args.run_b)
    if args.judge != "final" and args.judge not in a["judges"] + b["judges"]:
        raise UserError(f"--judge {args.judge}: the reports have judges {sorted(set(a['judges'] + b['judges']))}")
    text = compare(a, b, args.run_a, args.run_b, args.judge)
    print(text, end="")
    if args.out:
        write_text(args.out, text)
        print(f"wrote {args.out}")
    return 0


def register(commands) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = commands.add_parser("eval", help="attack suites: ASR per judge, helpfulness, reports",
                                 description="Evaluate a model (and adapter) on attack and helpfulness suites: "
                                 "batched greedy generation, layered judges (refusal detector, App. C rule, "
                                 "local LLM judge, human labels), ASR and helpfulness reports.",
                                 epilog=RUN_EPILOG, formatter_class=raw)
    add_run_flags(parser, suppress=False)
    parser.set_defaults(run=cmd_run)
    sub = parser.add_subparsers(dest="eval_command", metavar="ACTION")

    p = sub.add_parser("run", help="generate, judge and report (the default action)",
                       description="Generate responses to suite prompts, judge them and write a report.",
                       epilog=RUN_EPILOG, formatter_class=raw)
    add_run_flags(p, suppress=True)
    p.set_defaults(run=cmd_run)

    p = sub.add_parser("judge", help="judge existing generations (official results formats)",
                       description="Judge generations written by other tools and print ASR per judge.",
                       epilog=JUDGE_EPILOG, formatter_class=raw)
    p.add_argument("file", help="jsonl of {question|instruction, response} objects or prompt+continuation strings")
    p.add_argument("--prompts", help="the suite the generations answer: ids, kinds, and prompt stripping")
    p.add_argument("--out", help="write records.jsonl and report.{md,json,png} here")
    p.add_argument("--kind", default="auto", choices=("auto",) + KINDS,
                   help="the attack format the rows are read as (auto: the --prompts suite's kind, else the file "
                   "name, its folders, then the rows' content; the choice is printed)")
    p.add_argument("--tokenizer", default=None,
                   help="model whose tokenizer counts refusal positions (default: the embedded model; "
                   "tiny-llama3 has the real LLaMA-3 tokenizer)")
    p.add_argument("--dequantize", default="auto", choices=("auto", "yes", "no"), help=argparse.SUPPRESS)
    add_judge_flags(p)
    p.set_defaults(run=cmd_judge)

    p = sub.add_parser("compare", help="two eval reports side by side (e.g. vanilla vs DeRTa)",
                       description="Compare the reports of two eval directories suite by suite.",
                       epilog=COMPARE_EPILOG, formatter_class=raw)
    p.add_argument("run_a", metavar="RUN_A", help="an eval directory (or a run directory with eval/ inside)")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--judge", default="final", help="which judge's ASR (default: final, after labels)")
    p.add_argument("--out", type=output_file, help="also write the table here (markdown)")
    p.set_defaults(run=cmd_compare)
