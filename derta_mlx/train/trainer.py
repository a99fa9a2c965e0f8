"""The LoRA/DoRA training loop, on mlx-lm's model classes, LoRA layers and schedules.

mlx-lm's own `train()` cannot take two loss terms, batch-wide denominators or an exact resume,
so the loop is ours; everything it trains (LoRALinear/DoRALinear from
`mlx_lm.tuner.utils.linear_to_lora_layers`), the schedules (`build_schedule`) and gradient
checkpointing (`mlx_lm.tuner.trainer.grad_checkpoint`) are mlx-lm's, and the adapters it writes
are the files mlx-lm's `load_adapters` reads.

The loop reports through a callback and writes nothing but the run directory.
"""

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map

from derta_mlx import accel
from derta_mlx.common.atomic import save_safetensors, write_json
from derta_mlx.common.errors import UserError
from derta_mlx.common.safe_paths import open_own
from derta_mlx.data.batches import BatchOrder, pad_batch
from derta_mlx.data.instances import Instance
from derta_mlx.train.best import beats, best_record, save_best
from derta_mlx.train.checkpoint import ResumeState, check_same_tree, restore, save_checkpoint
from derta_mlx.train.config import TrainConfig
from derta_mlx.train.distributed import World, check_batch, current_world
from derta_mlx.train.settings import optimizer_class
from derta_mlx.train.loss import (
    Counts,
    LossConfig,
    batch_loss,
    count_targets,
    keep_rto_targets,
    supervised,
    term_scales,
)


class NonFiniteLoss(UserError):
    def __init__(self, loss: float, step: int, learning_rate: float, saved_step: Optional[int]):
        kept = (f"the last good checkpoint (step {saved_step}) and adapters.safetensors are kept"
                if saved_step else "no checkpoint had been written yet")
        super().__init__(f"the loss became {loss} at step {step} (learning rate {learning_rate:.3g}): training "
                         f"stopped there and {kept}. Lower --learning-rate (or check the data) and start again")


@dataclass
class Report:
    """One progress event: kind is "train", "val", "probe", "save" or "done"."""

    kind: str
    step: int
    iters: int
    values: dict


def adapter_config(cfg: TrainConfig, model_spec: str) -> dict:
    """adapter_config.json as mlx-lm's load_adapters reads it (extra keys are ours)."""
    lora = {"rank": cfg.lora_rank, "scale": cfg.lora_scale, "dropout": cfg.lora_dropout}
    if cfg.lora_keys:
        lora["keys"] = list(cfg.lora_keys)
    return {
        "fine_tune_type": cfg.fine_tune_type,
        "num_layers": cfg.num_layers,
        "lora_parameters": lora,
        "model": model_spec,
        "derta": {"method": cfg.method, "seed": cfg.seed},
    }


def prepare_model(model, cfg: TrainConfig) -> dict:
    """Freeze the base, optionally dequantise it, and add LoRA/DoRA layers. Returns facts."""
    from mlx_lm.tuner.trainer import grad_checkpoint
    from mlx_lm.tuner.utils import linear_to_lora_layers

    if cfg.fine_tune_type == "full":  # the CLI refuses it earlier, naming the memory it would need
        raise UserError("fine_tune_type full: derta-mlx trains LoRA or DoRA adapters")
    quantised = accel.is_quantised(model)
    model, dequantised = accel.dequantised(model, cfg.dequantize)  # float32 values on a CPU
    model.freeze()
    mx.random.seed(cfg.seed)  # LoRA's random initialisation of lora_a
    lora = {"rank": cfg.lora_rank, "scale": cfg.lora_scale, "dropout": cfg.lora_dropout}
    if cfg.lora_keys:
        lora["keys"] = list(cfg.lora_keys)
    linear_to_lora_layers(model, cfg.num_layers, lora, use_dora=cfg.fine_tune_type == "dora")
    if cfg.resume_adapter_file:
        load_adapter_weights(model, cfg.resume_adapter_file)
    if cfg.grad_checkpoint:
        grad_checkpoint(model.layers[0])
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    total = sum(v.size for _, v in tree_flatten(model.parameters()))
    return {"model": model, "quantised": quantised, "dequantised": dequantised,
            "trainable_params": trainable, "total_params": total}


def load_adapter_weights(model, path: str) -> None:
    """mlx-lm's --resume-adapter-file: the LoRA weights of an earlier adapter, every one present and
    of this model's shapes (the optimizer starts afresh, as in mlx-lm)."""
    try:
        weights = mx.load(path)
    except (RuntimeError, ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot read the adapter: {exc}") from None
    check_same_tree("adapter weights", Path(path), weights, dict(tree_flatten(model.trainable_parameters())))
    model.load_weights(list(weights.items()), strict=False)


def make_optimizer(cfg: TrainConfig):
    from mlx_lm.tuner.utils import build_schedule

    if isinstance(cfg.lr_schedule, dict):  # mlx-lm's own form: its first argument is the initial rate
        return _optimizer(cfg, build_schedule(cfg.lr_schedule))
    decay_steps = cfg.iters - cfg.warmup
    lr = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        schedule = {"name": "cosine_decay", "arguments": [lr, decay_steps, 0.0]}
    elif cfg.lr_schedule == "linear":
        schedule = {"name": "linear_schedule", "arguments": [lr, 0.0, decay_steps]}
    else:
        schedule = {"name": "linear_schedule", "arguments": [lr, lr, 1]}
    schedule["warmup"] = cfg.warmup
    return _optimizer(cfg, build_schedule(schedule))


def _optimizer(cfg: TrainConfig, schedule):
    """cfg.optimizer with its optimizer_config; --weight-decay goes to those that take one."""
    import inspect

    cls = optimizer_class(cfg.optimizer)
    kwargs = dict(cfg.optimizer_config.get(cfg.optimizer, {}))
    if "weight_decay" in inspect.signature(cls).parameters:
        kwargs.setdefault("weight_decay", cfg.weight_decay)
    return cls(learning_rate=schedule, **kwargs)


def _to_mx(batch, terms):
    """batch_loss's arrays: the inputs and the supervised positions' targets and terms."""
    return (mx.array(batch.inputs), *map(mx.array, supervised(batch.targets, terms)))


def evaluate(model, instances: List[Instance], cfg: TrainConfig) -> dict:
    """Validation loss in a fixed order: per-term means and the training objective."""
    if not instances:
        return {}
    model.eval()
    n = len(instances) if cfg.val_batches < 0 else min(len(instances), cfg.val_batches * cfg.batch_size)
    mle = rto = 0.0
    counts = Counts(0, 0)
    for start in range(0, n, cfg.batch_size):
        batch = pad_batch(instances[start : min(start + cfg.batch_size, n)])
        m, r = batch_loss(model, *_to_mx(batch, batch.terms), mx.ones((2,)))[1]
        mle += m.item()
        rto += r.item()
        c = count_targets(batch.terms)
        counts = Counts(counts.mle + c.mle, counts.rto + c.rto)
    model.train()
    a, b = term_scales(counts, LossConfig(cfg.rto_weight, 1.0, cfg.reduction))
    return {"val_loss": a * mle + b * rto, "val_mle": mle / max(counts.mle, 1), "val_rto": rto / max(counts.rto, 1)}


def probe_checkpoint(model, probe: Callable[[object], dict], run_dir: Path, step: int) -> dict:
    """The probe's record at `step`, marked best (and its adapter kept) when it beats the kept one."""
    model.eval()
    try:
        record = probe(model)
    finally:
        model.train()
    record["best"] = beats(record, best_record(run_dir))
    if record["best"]:
        save_best(run_dir, step, model, record)
    return record


def train(
    model,
    train_set: List[Instance],
    val_set: List[Instance],
    cfg: TrainConfig,
    run_dir: Path,
    model_spec: str,
    resume: Optional[ResumeState] = None,
    on_report: Callable[[Report], None] = lambda report: None,
    stop_requested: Callable[[], bool] = lambda: False,
    world: Optional[World] = None,
    fingerprint: Optional[dict] = None,
    probe: Optional[Callable[[object], dict]] = None,
    probe_every: int = 0,
) -> dict:
    """Train `model` (already prepared) and write adapters, checkpoints and metrics to run_dir.

    Under `mlx.launch` (see distributed.py) each rank trains on its share of every batch, the
    gradients are summed across ranks, and only rank 0 writes or reports. A loss that is not a
    finite number stops the run (NonFiniteLoss) before the step is applied, so the last
    checkpoint and adapters.safetensors stay the last good ones. `fingerprint` goes into every
    checkpoint (see fingerprint.py). `probe(model)` (--probe-every, rank 0 only) runs every
    `probe_every` steps and at the end: its record goes into metrics.jsonl and the best one's
    adapter into checkpoints/best (best.py).
    """
    world = world or current_world()
    check_batch(cfg.batch_size, world)
    loss_config = LossConfig(cfg.rto_weight, cfg.rto_keep, cfg.reduction)
    lengths = tuple(len(x) for x in train_set) if cfg.length_bucketing else None
    order = BatchOrder(len(train_set), cfg.batch_size, cfg.seed, lengths)
    optimizer = make_optimizer(cfg)
    step, micro, tokens_total = 0, 0, 0
    if resume:
        restore(resume, model, optimizer)
        step, micro, tokens_total = resume.step, resume.micro_batch, resume.tokens
    model.train()
    loss_and_grad = nn.value_and_grad(model, batch_loss)
    if world.main:
        write_json(run_dir / "adapter_config.json", adapter_config(cfg, model_spec))
    else:
        on_report = lambda report: None  # noqa: E731  (rank 0 reports for all)

    saved_step = resume.step if resume else None

    def save(at_step: int) -> None:
        nonlocal saved_step
        if not world.main or at_step == saved_step:  # a stop right after a save: nothing new to write
            return
        # the adapter first: a kill between the two leaves the checkpoint behind, and resuming
        # from it rewrites both, so the final adapter always equals the last checkpoint
        save_safetensors(run_dir / "adapters.safetensors", dict(tree_flatten(model.trainable_parameters())))
        save_checkpoint(run_dir, at_step, micro, tokens_total, model, optimizer, window, fingerprint)
        saved_step = at_step

    window = {"loss": 0.0, "mle": 0.0, "rto": 0.0, "n_mle": 0, "n_rto": 0, "tokens": 0, "steps": 0}
    if resume:
        window.update(resume.window)
    window_start = time.perf_counter()
    mx.reset_peak_memory()
    stopped = False
    with open_own(run_dir / "metrics.jsonl") if world.main else open(os.devnull, "a") as log:

        def write(row: dict) -> None:
            log.write(json.dumps(row) + "\n")
            log.flush()

        while step < cfg.iters:
            if world.any(stop_requested()):
                stopped = True
                break
            mx.random.seed(cfg.seed * 1_000_003 + step)  # LoRA dropout noise: a function of the step
            batches = []
            for _ in range(cfg.grad_accumulation_steps):
                rows = [train_set[i] for i in order.indices(micro)]
                # The RTO keep mask and the target counts come from the global batch, so every
                # rank scales its loss alike; each rank then computes only its rows.
                whole = pad_batch(rows)
                kept = keep_rto_targets(whole.terms, cfg.rto_keep, cfg.seed, micro)
                mine = world.shard(rows)
                batch = whole if world.size == 1 else pad_batch(rows[mine])
                batches.append((batch, kept[mine, : batch.inputs.shape[1]], kept))
                tokens_total += whole.tokens
                window["tokens"] += whole.tokens
                micro += 1
            counts = count_targets(np.concatenate([k.reshape(-1) for _, _, k in batches]))
            scales = mx.array(term_scales(counts, loss_config), dtype=mx.float32)
            grads, sums = None, mx.zeros((3,))
            for batch, terms, _ in batches:
                (loss, (m, r)), g = loss_and_grad(model, *_to_mx(batch, terms), scales)
                grads = g if grads is None else tree_map(mx.add, grads, g)
                sums = sums + mx.stack([loss, m, r])
                mx.eval(grads, sums)
            grads = world.sum_tree(grads)
            loss_value, mle_sum, rto_sum = world.sum(sums).tolist()
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(loss_value, step + 1, float(optimizer.learning_rate.item()), saved_step)
            optimizer.update(model, grads)
            mx.eval(model.trainable_parameters(), optimizer.state)
            step += 1
            window["loss"] += loss_value
            window["mle"] += mle_sum
            window["rto"] += rto_sum
            window["n_mle"] += counts.mle
            window["n_rto"] += counts.rto
            window["steps"] += 1

            if step % cfg.steps_per_report == 0 or step == cfg.iters:
                elapsed = time.perf_counter() - window_start
                row = {
                    "step": step,
                    "loss": window["loss"] / window["steps"],
                    "mle": window["mle"] / window["n_mle"] if window["n_mle"] else None,
                    "rto": window["rto"] / window["n_rto"] if window["n_rto"] else None,
                    "learning_rate": float(optimizer.learning_rate.item()),
                    "tokens_per_sec": window["tokens"] / max(elapsed, 1e-9),
                    "seconds_per_step": elapsed / window["steps"],
                    "peak_memory_gb": mx.get_peak_memory() / 1e9,
                    "trained_tokens": tokens_total,
                }
                if world.size > 1:  # tokens/s is already global: tokens count the whole batch
                    per_rank = world.gather(row["peak_memory_gb"])
                    row.update(peak_memory_gb=max(per_rank), peak_memory_gb_per_rank=per_rank, ranks=world.size)
                write(row)
                on_report(Report("train", step, cfg.iters, row))
                window = dict.fromkeys(window, 0)
                window["loss"] = window["mle"] = window["rto"] = 0.0
                window_start = time.perf_counter()
            paused = time.perf_counter()  # validation and probes are not training: tokens/s leaves them out
            if world.main and val_set and (step % cfg.steps_per_eval == 0 or step == cfg.iters):
                row = {"step": step, **evaluate(model, val_set, cfg)}
                write(row)
                on_report(Report("val", step, cfg.iters, row))
            if probe and (step % probe_every == 0 or step == cfg.iters):
                row = {"step": step, "probe": probe_checkpoint(model, probe, run_dir, step)}
                write(row)
                on_report(Report("probe", step, cfg.iters, row))
            window_start += time.perf_counter() - paused
            if step % cfg.save_every == 0 or step == cfg.iters:
                log.flush()
                save(step)
                on_report(Report("save", step, cfg.iters, {"checkpoint": step}))
        if stopped and step > 0:
            log.flush()
            save(step)
    if world.main and resume and resume.step >= cfg.iters:  # completing a run killed after its last checkpoint
        save_safetensors(run_dir / "adapters.safetensors", dict(tree_flatten(model.trainable_parameters())))
    world.barrier()  # no rank may exit (mlx.launch would end the rest) before rank 0 has saved
    result = {"step": step, "stopped": stopped, "trained_tokens": tokens_total}
    on_report(Report("done", step, cfg.iters, result))
    return result
