"""`derta-mlx train`: DeRTa (or an ablation) LoRA training, then a before/after refusal table."""

import argparse
import json
import sys
from typing import Optional

from derta_mlx.cli.flags import add_config_flags, config_from_args
from derta_mlx.common.errors import UserError
from derta_mlx.common.progress import notify_stderr
from derta_mlx.train.config import TrainConfig

EPILOG = """examples:
  derta-mlx train                                   # the demo: embedded model, bundled mild data
  derta-mlx train --model mistral-7b-4bit --data safety.jsonl helpful.jsonl --iters 600
  derta-mlx train --data safety.jsonl:1 helpful.jsonl:3 --seed 1   # mixed 1:3 (see `derta-mlx data fetch`)
  derta-mlx train --method vanilla --out runs/vanilla   # Table 4 ablations: vanilla, harmful-prefix, rto
  derta-mlx train --config run.yaml --learning-rate 5e-5
  derta-mlx train --resume runs/vanilla             # continue an interrupted run exactly
  derta-mlx train --hosts hosts.json --out runs/big --batch-size 8   # data-parallel over Macs
  derta-mlx train --dry-run --model llama3-8b-4bit --device gpu --memory-gb 16   # will it fit on a 16 GB Mac?
"""


class Progress:
    """One live line on a terminal (a row per report elsewhere), with loss per term and ETA."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr  # looked up now, not at import: tests swap sys.stderr
        self.tty = self.stream.isatty()

    def __call__(self, report) -> None:
        v = report.values
        if report.kind == "train":
            done = report.step / report.iters
            bar = "#" * int(24 * done) + "." * (24 - int(24 * done))
            seconds = int(v["seconds_per_step"] * (report.iters - report.step))
            eta = f"{seconds // 60}:{seconds % 60:02d}"
            terms = " ".join(f"{k} {v[k]:.3f}" for k in ("mle", "rto") if v.get(k) is not None)
            line = (f"step {report.step}/{report.iters} [{bar}] loss {v['loss']:.3f} ({terms}) "
                    f"{v['tokens_per_sec']:.0f} tok/s peak {v['peak_memory_gb']:.2f} GB ETA {eta}")
            self._show(line)
        elif report.kind == "val":
            self._show(f"step {report.step}: val loss {v['val_loss']:.3f} "
                       f"(mle {v['val_mle']:.3f} rto {v['val_rto']:.3f})", keep=True)
        elif report.kind == "probe":
            p = v["probe"]
            self._show(f"step {report.step}: probe of the validation rows: coherent refusal at k={p['k']} "
                       f"{p['coherent']:.0%}, over-refusal {p['over_refusal']:.0%}, score {p['score']:+.2f}"
                       + (" (best so far: checkpoints/best)" if p.get("best") else ""), keep=True)
        elif report.kind == "done" and self.tty:
            self.stream.write("\n")

    def _show(self, line: str, keep: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if keep else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def make_probe(notify, main_rank: bool = True):
    """The before/after probe (before_after.py), reporting through `notify` and progress bars."""
    from derta_mlx.common.progress import Bar
    from derta_mlx.probe.before_after import probe_run

    def probe(model, tokenizer, prepared, label):
        return probe_run(model, tokenizer, prepared, label, notify, bar=Bar if main_rank else None)

    return probe


def cmd_launch(args) -> int:
    """--ranks/--hosts: this process only starts `mlx.launch` and watches it."""
    from pathlib import Path

    from derta_mlx.train.distributed import World, check_not_a_rank
    from derta_mlx.train.job import start_or_resume
    from derta_mlx.train.ranks import count_hosts, run_ranks, strip_launch_flags

    if args.ranks is not None and args.ranks < 1:
        raise UserError("--ranks must be >= 1")
    check_not_a_rank(True)
    cfg = None if args.resume else config_from_args(args)
    if cfg is not None:
        refuse_full_fine_tuning(cfg)
    run_dir = args.resume or (cfg.adapter_path if cfg else None)
    if not run_dir:
        raise UserError("a data-parallel run needs --out RUN (every rank writes to, and resumes from, the same one)")
    # The checks rank 0 would make (batch divides, run directory new, checkpoint to resume),
    # made here once, before any rank starts.
    start_or_resume(cfg, args.resume, World(None, 0, args.ranks or count_hosts(args.hosts)), args.force)
    return run_ranks(strip_launch_flags(args.argv[1:]), Path(run_dir), args.ranks, args.hosts, args.backend)


def as_flags(old, new) -> str:
    """The command-line flags that turn `old` into `new`."""
    flags = []
    if new.grad_checkpoint and not old.grad_checkpoint:
        flags.append("--grad-checkpoint")
    if new.batch_size != old.batch_size:
        flags += [f"--batch-size {new.batch_size}", f"--grad-accumulation-steps {new.grad_accumulation_steps}"]
    if new.max_seq_length != old.max_seq_length:
        flags.append(f"--max-seq-length {new.max_seq_length}")
    if new.num_layers != old.num_layers:
        flags.append(f"--num-layers {new.num_layers}")
    if new.dequantize != old.dequantize:
        flags.append("--dequantize " + ("yes" if new.dequantize else "no"))
    return " ".join(flags)


def format_estimate(est, usable: float, where: str) -> str:
    from derta_mlx.train.memory import GB

    rows = [("base weights", est.base_weights), ("LoRA params + grads + AdamW", est.lora),
            ("activations kept for backward", est.activations), ("logits and loss (*)", est.logits),
            ("one block's backward pass (*)", est.block_backward), ("MLX buffers, batch, optimizer", est.other)]
    lines = [f"  {name:<40} {value / GB:8.2f} GB" for name, value in rows]
    lines.append(f"  {'estimated peak (' + est.compute_dtype + ' compute)':<40} {est.total / GB:8.2f} GB"
                 "  (* only the larger of these two is live at once)")
    lines.append(f"  {'usable memory':<40} {usable / GB:8.2f} GB  ({where})")
    return "\n".join(lines)


def memory_check(cfg: TrainConfig, args, batches: Optional[list] = None):
    """(fits?, report): the estimated peak of cfg against the machine's (or --memory-gb) memory,
    and when it does not fit, the first change of settings that would (see memory.suggest).
    `batches`: (padded length, supervised share) of the run's batches (batches_from_data): the peak is
    that of the largest, instead of max_seq_length with every position supervised."""
    from derta_mlx.train import memory

    device = args.device or memory.current_device()
    from derta_mlx.models.loading import arch_for_model

    arch = arch_for_model(cfg.model)
    settings = memory.settings_for(cfg, device)
    from dataclasses import replace

    length_from = f"max_seq_length, {settings.max_seq_length}"
    if batches:
        candidates = [replace(settings, max_seq_length=min(length, settings.max_seq_length), supervised_share=share)
                      for length, share in batches]
        settings = max(candidates, key=lambda s: memory.estimate(arch, s).total)
        length_from = (f"the largest of the run's {cfg.iters * cfg.grad_accumulation_steps} batches of the data, "
                       f"{settings.supervised_share:.0%} supervised; max_seq_length is {cfg.max_seq_length}")
    est = memory.estimate(arch, settings)
    usable, where = memory.machine_memory(device, args.memory_gb)
    layers = arch.num_layers if settings.num_layers < 0 else min(settings.num_layers, arch.num_layers)
    if arch.bits is None:
        base = f"{arch.dtype} base"
    else:
        base = f"{arch.bits}-bit base " + ("dequantised to float32" if settings.dequantize else "kept quantised")
    from derta_mlx.models.catalogue import load_catalogue

    name = cfg.model or load_catalogue().default
    kind = {"lora": "LoRA", "dora": "DoRA"}[cfg.fine_tune_type]
    lines = [f"Memory estimate for {name} on the {device} ({base}): batch "
             f"{settings.batch_size} x {settings.max_seq_length} tokens ({length_from}), {kind} rank "
             f"{settings.lora_rank} on {layers} of {arch.num_layers} blocks, grad checkpointing "
             f"{'on' if settings.grad_checkpoint else 'off'}",
             format_estimate(est, usable, where)]
    fits = est.total <= usable
    if fits:
        lines.append(f"Fits: {est.total / memory.GB:.2f} of {usable / memory.GB:.2f} GB.")
        return True, "\n".join(lines)
    lines.append(f"Does not fit: {(est.total - usable) / memory.GB:.2f} GB over.")
    found = memory.suggest(arch, settings, usable)
    if found:
        new, new_est = found
        lines.append(f"Would fit ({new_est.total / memory.GB:.2f} GB estimated) with: {as_flags(settings, new)}")
    else:
        lines.append("Nothing fits: not even with --grad-checkpoint, batch 1, 128 tokens and adapters on one block"
                     + (" with the 4-bit base kept quantised" if arch.bits is not None else "")
                     + "; use a machine with more memory or a smaller model.")
    return False, "\n".join(lines)


def refuse_full_fine_tuning(cfg: TrainConfig) -> None:
    """mlx-lm's --fine-tune-type full: DeRTa here trains adapters; say what full training would need."""
    if cfg.fine_tune_type != "full":
        return
    from derta_mlx.models.loading import arch_for_model
    from derta_mlx.train import memory

    try:
        need = f"about {arch_for_model(cfg.model).params() * 16 / memory.GB:.1f} GB"
    except UserError:
        need = "16 bytes a parameter"
    raise UserError(f"--fine-tune-type full: derta-mlx trains LoRA or DoRA adapters; full fine-tuning of "
                    f"{cfg.model or 'the embedded model'} would need {need} for float32 weights, gradients and "
                    "AdamW's two moments before activations: use --fine-tune-type lora (or dora), or mlx_lm.lora")


def cmd_dry_run(args) -> int:
    """--dry-run: the memory estimate of the run, without loading weights or training."""
    from derta_mlx.train.job import start_or_resume

    if args.resume:
        cfg = start_or_resume(None, args.resume)[0]
    else:
        cfg = config_from_args(args).validate()
    refuse_full_fine_tuning(cfg)
    fits, report = memory_check(cfg, args, batches_from_data(cfg))
    print(report)
    return 0 if fits else 1


def batches_from_data(cfg: TrainConfig) -> Optional[list]:
    """(padded length, supervised share) of every micro-batch the run will train on, in the order the
    trainer draws them (same data, seed and batch order), when the model's tokenizer is on this
    machine; None (with a note) otherwise."""
    from derta_mlx.data.instances import build_instances
    from derta_mlx.models.loading import find_model, local_path
    from derta_mlx.train.job import make_instance_config, resolve_tokenizer, train_and_val_rows

    ref = find_model(cfg.model)
    if ref.entry is None or ref.entry.source == "hub":
        if local_path(ref) is None:
            notify_stderr(f"note: {ref.spec} is not on this machine: the estimate assumes every row is "
                          f"max_seq_length ({cfg.max_seq_length}) tokens")
            return None
    quiet = lambda message: None  # noqa: E731
    _, tokenizer, template, refusal = resolve_tokenizer(cfg, quiet)
    rows, _, _ = train_and_val_rows(cfg, quiet)
    instances, _ = build_instances(rows, tokenizer, make_instance_config(cfg, tokenizer, template, refusal))
    if len(instances) < cfg.batch_size:
        return None  # the run itself says so
    from derta_mlx.data.batches import BatchOrder

    lengths = [len(x) for x in instances]
    supervised = [int((x.terms != 0).sum()) for x in instances]
    order = BatchOrder(len(instances), cfg.batch_size, cfg.seed, tuple(lengths) if cfg.length_bucketing else None)
    batches = set()
    for micro in range(cfg.iters * cfg.grad_accumulation_steps):
        picked = order.indices(micro)
        longest = max(lengths[i] for i in picked)
        batches.add((longest, sum(supervised[i] for i in picked) / (len(picked) * longest)))
    return sorted(batches)


def gate_on_memory(cfg: Optional[TrainConfig], args, notify) -> bool:
    """Before a run loads its model: False (and the report) when it cannot fit."""
    from derta_mlx.models.loading import check_local_model
    from derta_mlx.train.distributed import current_world

    if args.ignore_memory_check or current_world().size > 1:  # ranks: mlx.launch's processes
        return True
    if cfg is None:  # --resume: the run's own settings
        from pathlib import Path

        from derta_mlx.train.config import load_config

        saved = Path(args.resume) / "config.yaml"
        if not saved.is_file():
            return True  # run_training says what is wrong with the directory
        cfg = load_config(saved)
    check_local_model(cfg.model)  # a broken directory is named before its config is read for the estimate
    try:
        fits, report = memory_check(cfg.validate(), args)
    except UserError as exc:  # no architecture to estimate from: train anyway, say so
        notify(f"Memory check skipped: {exc}")
        return True
    if not fits:
        print(report + "\nNot starting the run; --ignore-memory-check starts it anyway.", file=sys.stderr)
    return fits


def check_nothing_set_with_resume(args) -> None:
    """--resume continues with the run's own settings: a flag given beside it would be ignored."""
    from dataclasses import fields

    given = [f"--{f.name.replace('_', '-')}" for f in fields(TrainConfig) if hasattr(args, f.name)]
    given += [flag for flag, value in (("--config", args.config), ("--out", args.out)) if value]
    if given:
        raise UserError(f"--resume continues {args.resume} with its own settings (its config.yaml), so "
                        f"{', '.join(given)} would be ignored; drop them, or edit config.yaml and add --force")


def cmd_train(args) -> int:
    from derta_mlx import accel

    if args.force and not args.resume:
        raise UserError("--force only applies to --resume RUN")
    if args.resume:
        check_nothing_set_with_resume(args)
    if args.dry_run:
        return cmd_dry_run(args)
    if args.ranks is not None or args.hosts:
        return cmd_launch(args)

    accel.start(argv=args.argv)
    from derta_mlx.train.distributed import current_world
    from derta_mlx.train.job import StopFlag, run_training

    main_rank = current_world().main  # under mlx.launch only rank 0 talks

    def notify(message):
        if main_rank:
            notify_stderr(message)

    cfg = None if args.resume else config_from_args(args)
    if cfg is not None:
        refuse_full_fine_tuning(cfg)
    if not gate_on_memory(cfg, args, notify):
        return 1
    notify(accel.describe())
    stop = StopFlag()
    previous = stop.install()
    try:
        probe = make_probe(notify, main_rank) if (cfg is None or cfg.probe_after) else None
        from derta_mlx.common.progress import Bar

        from derta_mlx.probe.during import checkpoint_probe_for

        results = run_training(cfg, args.resume, notify, Progress(), probe=probe, stop=stop, bar=Bar,
                               force=args.force, checkpoint_probe=checkpoint_probe_for)
    finally:
        import signal

        signal.signal(signal.SIGINT, previous)
    if not main_rank:  # rank 0 reports the stop; a non-zero exit here would make mlx.launch end it
        return 0
    run_dir = results["run_dir"]
    facts = results["facts"]
    if results["summary"]["stopped"]:
        print(f"\nStopped at step {results['summary']['step']}; checkpoint written. "
              f"Resume with: derta-mlx train --resume {run_dir}")
        return 130
    before = results.get("before")
    if before is None:
        from pathlib import Path

        saved = Path(run_dir) / "probe_before.json"
        before = json.loads(saved.read_text()) if saved.exists() else None
    if before and "helpfulness" in before and results.get("after"):
        from derta_mlx.probe.before_after import format_table

        print(format_table(before, results["after"]))
    print_best(run_dir)
    print(f"\nRun directory: {run_dir}  (trainable parameters: {facts['trainable_params']:,}; "
          f"base {'dequantised to float32' if facts['dequantised'] else 'as loaded'})")
    print(f"Use the adapter with mlx-lm: mlx_lm.generate --model {results['model_path']} --adapter-path {run_dir}")
    return 0


def print_best(run_dir) -> None:
    """Which checkpoint the --probe-every probe kept, and why (nothing without one)."""
    from derta_mlx.train.best import best_dir, best_record

    record = best_record(run_dir)
    if record is None:
        return
    floor = "" if record["floors_met"] else " (below the 80% coherent-refusal floor: no checkpoint met it)"
    print(f"\nBest checkpoint by the validation probe: step {record['step']}, coherent refusal at k={record['k']} "
          f"{record['coherent']:.0%}, over-refusal {record['over_refusal']:.0%}, score {record['score']:+.2f}{floor}\n"
          f"  {best_dir(run_dir)}  (probe / fuse --checkpoint best)")


def register(commands) -> None:
    parser = commands.add_parser(
        "train", help="DeRTa LoRA training (no arguments: the offline demo)",
        description="Train a LoRA/DoRA adapter with DeRTa (MLE with a harmful prefix + Reinforced "
        "Transition Optimization) or one of its ablations. Every flag has a YAML twin for --config.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # `--rank 2` must not pass for --ranks: the ranks get the rest verbatim
    )
    parser.add_argument("-c", "--config", help="YAML file of settings, ours or mlx-lm's lora_config.yaml "
                        "(flags given here override it)")
    parser.add_argument("--out", help="run directory (default runs/<model>-<method>-<time>)")
    parser.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    parser.add_argument("--force", action="store_true",
                        help="with --resume: continue even though config.yaml or the data changed since the "
                             "checkpoint (the result then differs from an uninterrupted run)")
    launch = parser.add_mutually_exclusive_group()
    launch.add_argument("--ranks", type=int, metavar="N",
                        help="data-parallel over N processes on this machine (through mlx.launch)")
    launch.add_argument("--hosts", metavar="FILE", help="data-parallel over the Macs in an mlx.launch hostfile")
    parser.add_argument("--backend", default="ring", choices=("ring", "mpi"),
                        help="mlx.launch backend for --ranks/--hosts (default ring)")
    memory = parser.add_argument_group("will it fit? (the memory estimate, see derta_mlx/train/memory.py)")
    memory.add_argument("--dry-run", action="store_true",
                        help="print the estimated peak memory against this machine's and exit (0: fits, 1: "
                             "does not, with settings that would); loads and downloads nothing")
    memory.add_argument("--memory-gb", type=float, metavar="GB",
                        help="check against a machine with GB of memory instead of this one (with --device gpu: "
                             "a Mac's unified memory, of which 75%% is usable)")
    memory.add_argument("--device", choices=("gpu", "cpu"),
                        help="estimate for Metal (a 4-bit base stays 4-bit) or a CPU (--dequantize auto: float32); "
                             "default this machine's")
    memory.add_argument("--ignore-memory-check", action="store_true",
                        help="start the run even when the estimate exceeds the memory")
    add_config_flags(parser)
    parser.set_defaults(run=cmd_train)
