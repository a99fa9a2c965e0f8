"""One training run end to end: config -> model -> instances -> train -> run directory.

The CLI and the TUI both call `run_training`; it reports through callbacks and never prints.
"""

import random
import signal
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from derta_mlx import accel
from derta_mlx.common.atomic import write_text
from derta_mlx.common.errors import UserError
from derta_mlx.data.formats import SafetyTriple, read_rows
from derta_mlx.data.instances import InstanceConfig, build_instances
from derta_mlx.data.prefix import PrefixSampler
from derta_mlx.data.refusal_token import resolve_refusal
from derta_mlx.data.templates import get_template
from derta_mlx.demo import demo_paths
from derta_mlx.models.loading import ensure_local, find_model, load_tokenizer
from derta_mlx.train.callbacks import both, reporter_for, reporting_callback
from derta_mlx.train.checkpoint import latest_checkpoint
from derta_mlx.train.config import TrainConfig, dump_config, load_config
from derta_mlx.train.distributed import SINGLE, World, check_batch, current_world
from derta_mlx.train.rundir import new_run_dir, rewind_metrics, write_status
from derta_mlx.train.trainer import Report, prepare_model, train


@dataclass
class Prepared:
    """Everything a run needs, resolved: what config.yaml records."""

    cfg: TrainConfig
    run_dir: Path
    model_path: Path
    template: object
    refusal: object
    train_set: list
    val_set: list
    stats: object
    probe_examples: list


def split_rows(rows: list, fraction: float, seed: int):
    """A seeded row-level split, so both instances of one question land on the same side."""
    if fraction <= 0:
        return rows, []
    order = list(range(len(rows)))
    random.Random(f"val:{seed}").shuffle(order)
    n_val = max(1, int(round(fraction * len(rows))))
    held = set(order[:n_val])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def make_instance_config(cfg: TrainConfig, tokenizer, template, refusal) -> InstanceConfig:
    return InstanceConfig(
        template=template, refusal_id=refusal.token_id, eos_id=tokenizer.eos_token_id, method=cfg.method,
        max_seq_length=cfg.max_seq_length, rto_eos=cfg.rto_eos,
        prefix=PrefixSampler(cfg.prefix_distribution, cfg.unit, cfg.seed, cfg.qi_cap),
        refusal_opening=cfg.refusal_opening, prefix_cuts=cfg.prefix_cuts,
    )


def resolve_refusal_for(cfg: TrainConfig, ref, tokenizer, template):
    """The run's refusal token: the rule, read with the template's lead and the refusal opening."""
    return resolve_refusal(tokenizer, cfg.refusal or ref.refusal_rule, template.response_lead, cfg.refusal_opening)


def resolve_tokenizer(cfg: TrainConfig, notify):
    """(model path, tokenizer, template, refusal target) for cfg, without loading weights."""
    ref = find_model(cfg.model)
    path = ensure_local(ref, notify)
    tokenizer = load_tokenizer(path)
    template = get_template(cfg.template or ref.template, tokenizer)
    return path, tokenizer, template, resolve_refusal_for(cfg, ref, tokenizer, template)


# Row counts from which building instances shows progress (the demo's 260 take under a second).
BIG_DATA_ROWS = 2000


def prepare(cfg: TrainConfig, run_dir: Path, notify: Callable[[str], None], bar=None):
    """Load the model and build the data for `cfg`; returns (model, tokenizer, Prepared).
    `bar(label, total, unit)` (progress.Bar) shows the building of big data sets."""
    from mlx_lm import load as mlx_load

    ref = find_model(cfg.model)
    model_path = ensure_local(ref, notify)
    model, tokenizer = mlx_load(str(model_path))
    template = get_template(cfg.template or ref.template, tokenizer)
    refusal = resolve_refusal_for(cfg, ref, tokenizer, template)

    using_demo = not cfg.data
    rows = read_rows(cfg.data or demo_paths("train"))
    if cfg.val_data:
        train_rows, val_rows = rows, read_rows(cfg.val_data)
    else:
        train_rows, val_rows = split_rows(rows, cfg.val_fraction, cfg.seed)
    probe_rows = read_rows(demo_paths("heldout")) if using_demo else val_rows
    instance_config = make_instance_config(cfg, tokenizer, template, refusal)
    big = bar is not None and len(train_rows) >= BIG_DATA_ROWS
    with bar("Building training instances", len(train_rows), "rows") if big else nullcontext() as progress:
        train_set, stats = build_instances(train_rows, tokenizer, instance_config, progress)
    val_set, _ = build_instances(val_rows, tokenizer, instance_config) if val_rows else ([], None)
    if len(train_set) < cfg.batch_size:
        raise UserError(f"only {len(train_set)} training instances for batch size {cfg.batch_size}")
    probes = [r for r in probe_rows if isinstance(r, SafetyTriple)]
    notify(f"Refusal token {refusal.text!r} (id {refusal.token_id}); " + stats.transition_summary())
    prepared = Prepared(cfg, run_dir, model_path, template, refusal, train_set, val_set, stats, probes)
    return model, tokenizer, prepared


def resolved_config(prepared: Prepared) -> str:
    """config.yaml: the settings (enough to rerun) plus what they resolved to, as comments."""
    p = prepared
    header = [
        "# derta-mlx run configuration: `derta-mlx train --config config.yaml` reruns it.",
        f"# model path: {p.model_path}",
        f"# template: {p.template.name}; refusal token: {p.refusal.text!r} id {p.refusal.token_id} "
        f"(rule {p.refusal.rule})",
        f"# instances: {dict(p.stats.kinds)}; supervised tokens: {dict(p.stats.supervised)}; "
        f"truncated: {p.stats.truncated}; dropped: {dict(p.stats.dropped) or 0}",
        f"# safe responses (refusal opening {p.cfg.refusal_opening!r}): {dict(p.stats.openings)}; "
        + p.stats.transition_summary(),
        f"# validation instances: {len(p.val_set)}",
    ]
    cfg = replace(p.cfg, template=p.template.name, refusal=p.refusal.rule, adapter_path=str(p.run_dir))
    return "\n".join(header) + "\n" + dump_config(cfg)


class StopFlag:
    """Ctrl-C asks the loop to stop after the current step (it then writes a checkpoint)."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def install(self):
        def handler(signum, frame):
            if self.requested:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.requested = True

        return signal.signal(signal.SIGINT, handler)


def start_or_resume(cfg: Optional[TrainConfig], resume: Optional[str], world: World = SINGLE):
    """(cfg, run_dir, checkpoint or None) for a new run or for --resume RUN."""
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
        saved = load_config(run_dir / "config.yaml").validate()
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise UserError(f"{run_dir}: no checkpoint to resume from; start it again with --out")
        if checkpoint.step >= saved.iters:
            raise UserError(f"{run_dir}: already finished ({checkpoint.step}/{saved.iters} steps)")
        check_batch(saved.batch_size, world)
        return saved, run_dir, checkpoint
    cfg = cfg.validate()
    check_batch(cfg.batch_size, world)
    ref = find_model(cfg.model)
    if world.size > 1 and not cfg.adapter_path:  # a time-stamped name could differ between ranks
        raise UserError("under mlx.launch, name the run directory with --out (every rank must use the same one)")
    if not world.main:  # rank 0 creates it, maybe before this rank looks
        return cfg, Path(cfg.adapter_path), None
    return cfg, new_run_dir(cfg.adapter_path, ref.spec, cfg.method), None


def run_training(cfg, resume, notify, on_report: Callable[[Report], None], probe=None, stop=None, bar=None,
                 training_callback=None):
    """The whole job. `probe(model, tokenizer, prepared, label)` runs before and after if given;
    `bar` draws progress (see prepare); `training_callback` is an mlx-lm TrainingCallback (else
    the config's report_to names mlx-lm's reporters)."""
    world = current_world()
    cfg, run_dir, checkpoint = start_or_resume(cfg, resume, world)
    if world.main:
        callback = training_callback or reporting_callback(cfg.report_to, cfg.project_name, run_dir, cfg.to_dict())
        on_report = both(on_report, reporter_for(callback) if callback else None)
    model, tokenizer, prepared = prepare(cfg, run_dir, notify, bar if world.main else None)
    if not world.main:  # rank 0 writes the run directory and probes; this rank only trains
        return _train_and_probe(model, tokenizer, prepared, cfg, run_dir, checkpoint, on_report, None, stop, world)
    run_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        write_text(run_dir / "config.yaml", resolved_config(prepared))
    else:
        rewind_metrics(run_dir, checkpoint.step)
        notify(f"Resuming {run_dir} from step {checkpoint.step}")
    if world.size > 1:
        notify(f"Data-parallel over {world.size} ranks (mlx.launch): {cfg.batch_size // world.size} rows of "
               f"each batch of {cfg.batch_size} per rank")
    write_status(run_dir, "running")
    try:
        results = _train_and_probe(model, tokenizer, prepared, cfg, run_dir, checkpoint, on_report, probe, stop,
                                   world)
    except KeyboardInterrupt:
        write_status(run_dir, "stopped", error="interrupted")
        raise
    except BaseException as exc:
        write_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    write_status(run_dir, "stopped" if results["summary"]["stopped"] else "finished",
                 step=results["summary"]["step"])
    return results


def _train_and_probe(model, tokenizer, prepared, cfg, run_dir, checkpoint, on_report, probe, stop, world):
    """run_training's middle: adapters on, probe before, train, probe after."""
    facts = prepare_model(model, cfg)
    model = facts["model"]
    results = {"run_dir": str(run_dir), "model_path": str(prepared.model_path),
               "facts": {k: v for k, v in facts.items() if k != "model"}}
    if probe and checkpoint is None and prepared.probe_examples:
        results["before"] = probe(model, tokenizer, prepared, "before")
    with accel.training():
        summary = train(model, prepared.train_set, prepared.val_set, cfg, run_dir, cfg.model or "default",
                        resume=checkpoint, on_report=on_report, stop_requested=stop or (lambda: False), world=world)
    results["summary"] = summary
    if probe and not summary["stopped"] and prepared.probe_examples:
        results["after"] = probe(model, tokenizer, prepared, "after")
    return results
