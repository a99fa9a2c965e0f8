"""One training run end to end: config -> model -> instances -> train -> run directory.

The CLI and the TUI both call `run_training`; it reports through callbacks and never prints.
"""

import errno
import math
import random
import signal
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from derta_mlx import accel
from derta_mlx.common.atomic import write_json, write_text
from derta_mlx.common.errors import UserError
from derta_mlx.common.progress import notify_stderr
from derta_mlx.data.formats import HelpfulRow, SafetyTriple, read_rows, split_files
from derta_mlx.data.instances import InstanceConfig, build_instances
from derta_mlx.data.mixing import describe_mix, mix_rows
from derta_mlx.data.prefix import PrefixSampler
from derta_mlx.data.refusal_token import resolve_refusal
from derta_mlx.data.templates import get_template
from derta_mlx.demo import demo_mix, demo_paths
from derta_mlx.models.loading import (
    ensure_local,
    find_model,
    load_checked,
    load_tokenizer,
)
from derta_mlx.train.callbacks import both, reporter_for, reporting_callback
from derta_mlx.train.checkpoint import latest_checkpoint
from derta_mlx.train.claim import claim_run_dir
from derta_mlx.train.config import TrainConfig, dump_config, load_config
from derta_mlx.train.distributed import SINGLE, World, check_batch, current_world
from derta_mlx.train.fingerprint import differences, fingerprint
from derta_mlx.train.rundir import new_run_dir, read_status, rewind_metrics, write_status
from derta_mlx.train.trainer import Report, evaluate, prepare_model, train


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
    data_mix: list = field(default_factory=list)  # mixing.MixPart per --data FILE:RATIO
    test_set: list = field(default_factory=list)  # --test: the instances of the data folders' test.jsonl
    test_examples: list = field(default_factory=list)  # ... and its safety triples, for the refusal probe
    val_rows: list = field(default_factory=list)  # the rows of val_set: --probe-every reads them


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
        refusal_opening=cfg.refusal_opening, prefix_cuts=cfg.prefix_cuts, mask_prompt=cfg.mask_prompt,
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


def train_and_val_rows(cfg: TrainConfig, notify: Callable[[str], None] = notify_stderr):
    """(training rows, validation rows, the mix's parts) of cfg: the data (mixed by its ratios),
    and --val-data or a seeded share of it."""
    data = hub_data(cfg.data, notify)
    rows, mix = mix_rows(data or demo_mix(), cfg.seed, notify)
    if mix:
        notify(describe_mix(mix, cfg.seed))
    if cfg.val_data:
        return rows, read_rows(hub_data(cfg.val_data, notify)), mix
    valid = [split_files(p).get("valid") for p in data]
    if valid and all(valid):  # mlx-lm's folders: their valid.jsonl is the validation split
        notify(f"validation: {', '.join(map(str, valid))} (mlx-lm's layout)")
        return rows, read_rows(valid), mix
    return (*split_rows(rows, cfg.val_fraction, cfg.seed), mix)


def hub_data(specs, notify: Callable[[str], None] = notify_stderr) -> list:
    """--data specs with hub dataset ids (OWNER/NAME[:RATIO], mlx-lm's) replaced by their cached folder."""
    from derta_mlx.data.fetch.download import dataset_folder, looks_like_dataset_id

    out = []
    for spec in specs or []:
        head, _, ratio = str(spec).rpartition(":")
        path, suffix = (head, f":{ratio}") if head and ratio.replace(".", "", 1).isdigit() else (str(spec), "")
        if looks_like_dataset_id(path):
            folder = dataset_folder(path)
            notify(f"data {path}: the hub dataset in {folder}")
            path = str(folder)
        out.append(path + suffix)
    return out


def heldout_safety_rows(cfg: TrainConfig, val_rows: list) -> list:
    """The safety triples the before/after probe (and fuse's gate) read: the demo's held-out file
    for a demo run, else the run's validation rows."""
    rows = val_rows if cfg.data else read_rows(demo_paths("heldout"))
    return [r for r in rows if isinstance(r, SafetyTriple)]


# Row counts from which building instances shows progress (the demo's 260 take under a second).
BIG_DATA_ROWS = 2000


def prepare(cfg: TrainConfig, run_dir: Path, notify: Callable[[str], None], bar=None):
    """Load the model and build the data for `cfg`; returns (model, tokenizer, Prepared).
    `bar(label, total, unit)` (progress.Bar) shows the building of big data sets."""
    ref = find_model(cfg.model)
    model_path = ensure_local(ref, notify)
    model, tokenizer = load_checked(model_path)
    template = get_template(cfg.template or ref.template, tokenizer)
    refusal = resolve_refusal_for(cfg, ref, tokenizer, template)

    test_rows = test_split_rows(cfg) if cfg.test else []
    train_rows, val_rows, mix = train_and_val_rows(cfg, notify)
    instance_config = make_instance_config(cfg, tokenizer, template, refusal)
    big = bar is not None and len(train_rows) >= BIG_DATA_ROWS
    with bar("Building training instances", len(train_rows), "rows") if big else nullcontext() as progress:
        train_set, stats = build_instances(train_rows, tokenizer, instance_config, progress)
    val_set, _ = build_instances(val_rows, tokenizer, instance_config) if val_rows else ([], None)
    if len(train_set) < cfg.batch_size:
        raise UserError(f"only {len(train_set)} training instances for batch size {cfg.batch_size}")
    probes = heldout_safety_rows(cfg, val_rows)
    if probe_every_steps(cfg):
        check_probe_rows(val_rows)
    notify(f"Refusal token {refusal.text!r} (id {refusal.token_id}); " + stats.transition_summary())
    test_set = build_instances(test_rows, tokenizer, instance_config)[0] if test_rows else []
    prepared = Prepared(cfg, run_dir, model_path, template, refusal, train_set, val_set, stats, probes, mix,
                        test_set, [r for r in test_rows if isinstance(r, SafetyTriple)], val_rows)
    return model, tokenizer, prepared


# the main job (the demo data) probes its checkpoints this often; other runs only when asked
DEMO_PROBE_EVERY = 20


def probe_every_steps(cfg: TrainConfig) -> int:
    if cfg.probe_every is not None:
        return cfg.probe_every
    return 0 if cfg.data else DEMO_PROBE_EVERY


def check_probe_rows(val_rows: list) -> None:
    """--probe-every reads safety triples and questions (probe/during.py) from the validation rows."""
    triples = sum(isinstance(r, SafetyTriple) for r in val_rows)
    questions = sum(isinstance(r, HelpfulRow) and bool(r.question) for r in val_rows)
    if not triples or not questions:
        raise UserError(f"--probe-every probes the validation rows, which hold {triples} safety triples and "
                        f"{questions} ordinary questions; it needs both (raise --val-fraction or give --val-data)")


def test_split_rows(cfg: TrainConfig) -> list:
    """--test (mlx-lm's): the rows of test.jsonl in the --data folders laid out as mlx-lm's."""
    files = [split_files(p).get("test") for p in hub_data(cfg.data, lambda message: None)]
    if not files or not all(files):
        raise UserError("--test reads test.jsonl from each --data folder (mlx-lm's layout: train.jsonl, "
                        "valid.jsonl, test.jsonl); " + ("no --data was given" if not cfg.data else
                                                       f"{cfg.data[files.index(None)]} has none"))
    return read_rows(files)


def resolved_settings(prepared: Prepared) -> TrainConfig:
    """The config with the catalogue's choices filled in: what config.yaml and checkpoints record."""
    p = prepared
    return replace(p.cfg, template=p.template.name, refusal=p.refusal.rule, adapter_path=str(p.run_dir))


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
    ] + ([f"# {describe_mix(p.data_mix, p.cfg.seed)}"] if p.data_mix else [])
    return "\n".join(header) + "\n" + dump_config(resolved_settings(p))


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


def start_or_resume(cfg: Optional[TrainConfig], resume: Optional[str], world: World = SINGLE,
                    force: bool = False, notify: Callable[[str], None] = lambda message: None):
    """(cfg, run_dir, checkpoint or None) for a new run or for --resume RUN.

    A run killed before its first checkpoint resumes from step 0 with its saved settings. A
    checkpoint whose settings or data differ from config.yaml and the files now is refused,
    unless `force` (then the run continues with what is there now, and says so).
    """
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            hint = " (it never got past loading: start it again with --out)" if run_dir.is_dir() else ""
            raise UserError(f"{run_dir}: not a run directory (no config.yaml){hint}")
        saved = load_config(run_dir / "config.yaml")
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            notify(f"{run_dir}: no checkpoint yet (stopped before step {saved.save_every}); starting it again from "
                   "step 0 with its saved settings")
        elif checkpoint.note:
            notify(f"{run_dir}: {checkpoint.note}")
        if checkpoint is not None and checkpoint.fingerprint is not None:
            changed = differences(checkpoint.fingerprint, fingerprint(saved))
            if changed and not force:
                raise UserError(f"{run_dir}: changed since checkpoint step {checkpoint.step}: {'; '.join(changed)}. "
                                "Undo the change to continue the same run, or pass --force to continue with it "
                                "(the result will then differ from an uninterrupted run)")
            if changed:
                notify(f"--force: continuing from step {checkpoint.step} with: {'; '.join(changed)}")
        if checkpoint is not None and checkpoint.step >= saved.iters:
            if read_status(run_dir).get("state") == "finished":
                raise UserError(f"{run_dir}: already finished ({checkpoint.step}/{saved.iters} steps)")
            notify(f"{run_dir}: its last checkpoint is the final step ({checkpoint.step}/{saved.iters}) but the run "
                   "did not finish (killed after it?): completing it (adapter from that checkpoint, status)")
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
                 training_callback=None, force: bool = False, checkpoint_probe=None):
    """The whole job. `probe(model, tokenizer, prepared, label)` runs before and after if given;
    `checkpoint_probe(tokenizer, prepared)` makes the --probe-every probe (a function of the model);
    `bar` draws progress (see prepare); `training_callback` is an mlx-lm TrainingCallback (else
    the config's report_to names mlx-lm's reporters); `force` resumes a changed run (see
    start_or_resume)."""
    world = current_world()
    cfg, run_dir, checkpoint = start_or_resume(cfg, resume, world, force, notify if world.main else lambda m: None)
    if not world.main:  # rank 0 writes the run directory and probes; this rank only trains
        model, tokenizer, prepared = prepare(cfg, run_dir, notify, None)
        return _train_and_probe(model, tokenizer, prepared, cfg, run_dir, checkpoint, on_report, None, None, stop,
                                world)
    probes = (probe, checkpoint_probe)
    claim = claim_run_dir(run_dir, new=resume is None)  # before loading: two starts cannot share it
    try:
        return _run_claimed(cfg, resume, run_dir, checkpoint, claim, notify, on_report, probes, stop, bar,
                            training_callback, world)
    finally:
        claim.release()


def _run_claimed(cfg, resume, run_dir, checkpoint, claim, notify, on_report, probes, stop, bar, training_callback,
                 world):
    try:
        model, tokenizer, prepared = prepare(cfg, run_dir, notify, bar)
    except BaseException:
        if resume is None:
            claim.abandon()  # a bad input leaves nothing behind
        raise
    callback = training_callback or reporting_callback(cfg.report_to, cfg.project_name, run_dir, cfg.to_dict())
    on_report = both(on_report, reporter_for(callback) if callback else None)
    if resume is None:
        write_text(run_dir / "config.yaml", resolved_config(prepared))
    else:
        rewind_metrics(run_dir, checkpoint.step if checkpoint else 0)
        notify(f"Resuming {run_dir} from step {checkpoint.step if checkpoint else 0}")
    if world.size > 1:
        notify(f"Data-parallel over {world.size} ranks (mlx.launch): {cfg.batch_size // world.size} rows of "
               f"each batch of {cfg.batch_size} per rank")
    write_status(run_dir, "running")
    try:
        results = _train_and_probe(model, tokenizer, prepared, cfg, run_dir, checkpoint, on_report, *probes, stop,
                                   world)
    except KeyboardInterrupt:
        write_status(run_dir, "stopped", error="interrupted")
        raise
    except OSError as exc:
        raise _write_failed(run_dir, exc, checkpoint) from None
    except BaseException as exc:
        write_status(run_dir, "failed", error=str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}")
        raise
    write_status(run_dir, "stopped" if results["summary"]["stopped"] else "finished",
                 step=results["summary"]["step"])
    return results


def _write_failed(run_dir: Path, exc: OSError, resumed_from) -> UserError:
    """A write that failed mid-run (a full disk, most often): the run is marked failed where that
    is still possible, and the error says what is intact."""
    last = latest_checkpoint(run_dir)
    kept = f"the last checkpoint (step {last.step}) is intact" if last else "no checkpoint was written yet"
    what = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
    message = f"{run_dir}: writing {exc.filename or 'the run'} failed: {what}; {kept}. " + (
        f"Free space, then: derta-mlx train --resume {run_dir}" if last else "Free space and start it again")
    try:
        write_status(run_dir, "failed", error=message)
    except OSError:
        pass  # the lock is gone with this process: the run reads as failed anyway
    return UserError(message)


def _train_and_probe(model, tokenizer, prepared, cfg, run_dir, checkpoint, on_report, probe, checkpoint_probe,
                     stop, world):
    """run_training's middle: adapters on, probe before, train (probing checkpoints), probe after."""
    run_fingerprint = fingerprint(resolved_settings(prepared))
    facts = prepare_model(model, cfg)
    model = facts["model"]
    results = {"run_dir": str(run_dir), "model_path": str(prepared.model_path),
               "facts": {k: v for k, v in facts.items() if k != "model"}}
    every = probe_every_steps(cfg)
    during = checkpoint_probe(tokenizer, prepared) if checkpoint_probe and every and world.main else None
    if probe and checkpoint is None and prepared.probe_examples:
        results["before"] = probe(model, tokenizer, prepared, "before")
    with accel.training():
        summary = train(model, prepared.train_set, prepared.val_set, cfg, run_dir, cfg.model or "default",
                        resume=checkpoint, on_report=on_report, stop_requested=stop or (lambda: False), world=world,
                        fingerprint=run_fingerprint, probe=during, probe_every=every)
    results["summary"] = summary
    if probe and not summary["stopped"] and prepared.probe_examples:
        results["after"] = probe(model, tokenizer, prepared, "after")
    if cfg.test and not summary["stopped"]:
        results["test"] = run_test(model, tokenizer, prepared, probe)
    return results


def run_test(model, tokenizer, prepared: Prepared, probe=None) -> dict:
    """mlx-lm's --test: the loss on the test split (--test-batches batches), and, when the run probes,
    the refusal probe on the test split's safety triples; written to RUN/test.json."""
    cfg = prepared.cfg
    found = evaluate(model, prepared.test_set, replace(cfg, val_batches=cfg.test_batches))
    report = {"test_loss": found.get("val_loss"), "test_mle": found.get("val_mle"), "test_rto": found.get("val_rto"),
              "instances": len(prepared.test_set)}
    if report["test_loss"] is not None:
        print(f"Test loss {report['test_loss']:.3f}, Test ppl {math.exp(min(report['test_loss'], 50)):.3f}")
    if probe and prepared.test_examples:
        report["probe"] = probe(model, tokenizer, replace(prepared, probe_examples=prepared.test_examples), "test")
    write_json(prepared.run_dir / "test.json", report)
    return report
