"""train_speed.py --profile: one training step on a fixed batch, piece by piece, for both trainers."""

import statistics
import time

from train_setup import ModelChoice, Variant, load_prepared, mlx_lm_batch


def profile_step(model: ModelChoice, instances, cfg, reps: int) -> dict:
    """Median seconds of the parts of one training step on one fixed batch, on the float32 base
    (as built, or dequantised): where the time goes, and what mx.compile of the step changes for
    each trainer (mlx-lm compiles its step; derta-mlx's loop does not)."""
    from functools import partial

    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.trainer import default_loss

    from derta_mlx.data.batches import BatchOrder, pad_batch
    from derta_mlx.train.loss import (
        LossConfig,
        batch_loss,
        count_targets,
        supervised,
        term_scales,
    )
    from derta_mlx.train.trainer import make_optimizer

    rows = [instances[i] for i in BatchOrder(len(instances), cfg.batch_size, cfg.seed).indices(0)]
    batch = pad_batch(rows)
    inputs, targets = mx.array(batch.inputs), mx.array(batch.targets)
    picked = tuple(map(mx.array, supervised(batch.targets, batch.terms)))  # as the trainer's _to_mx
    scales = mx.array(term_scales(count_targets(batch.terms), LossConfig()), dtype=mx.float32)
    theirs = mlx_lm_batch(batch, rows)
    variant = Variant("derta-mlx", "float32", "yes" if model.quantised else "no")

    def fresh():
        net = load_prepared(model, variant, cfg)[0]
        net.train()
        return net, make_optimizer(cfg)

    def forward(net, opt):
        return lambda: mx.eval(net(inputs))

    def cross_entropy(net, opt):  # the loss alone, on fixed logits
        logits = net(inputs)
        mx.eval(logits)
        return lambda: mx.eval(nn.losses.cross_entropy(logits, mx.maximum(targets, 0), reduction="none"))

    def forward_and_loss(net, opt):
        return lambda: mx.eval(batch_loss(net, inputs, *picked, scales)[0])

    def derta_step(net, opt):  # the body of derta_mlx.train.trainer.train for one micro-batch
        loss_and_grad = nn.value_and_grad(net, batch_loss)

        def run():
            (loss, (mle, rto)), grads = loss_and_grad(net, inputs, *picked, scales)
            mx.eval(grads, loss, mle, rto)
            loss.item(), mle.item(), rto.item()
            opt.update(net, grads)
            mx.eval(net.trainable_parameters(), opt.state)

        return run

    def compiled(loss_fn, args):  # as mlx_lm.tuner.trainer.train compiles its step
        def make(net, opt):
            loss_and_grad = nn.value_and_grad(net, loss_fn)
            state = [net.state, opt.state, mx.random.state]

            @partial(mx.compile, inputs=state, outputs=state)
            def step(*args):
                value, grads = loss_and_grad(net, *args)
                opt.update(net, grads)
                return value

            return lambda: mx.eval(state, step(*args))

        return make

    def plain(loss_fn, args):
        def make(net, opt):
            loss_and_grad = nn.value_and_grad(net, loss_fn)

            def run():
                value, grads = loss_and_grad(net, *args)
                opt.update(net, grads)
                mx.eval(net.trainable_parameters(), opt.state, value)

            return run

        return make

    ours = (inputs, *picked, scales)
    parts = {
        "forward (logits)": forward,
        "cross-entropy over the vocabulary (fixed logits)": cross_entropy,
        "forward + DeRTa loss": forward_and_loss,
        "derta-mlx step (trainer.train's loop body)": derta_step,
        "derta-mlx step, one mx.eval": plain(batch_loss, ours),
        "derta-mlx step, mx.compile (as mlx-lm)": compiled(batch_loss, ours),
        "mlx-lm step, not compiled": plain(default_loss, theirs),
        "mlx-lm step (its mx.compile)": compiled(default_loss, theirs),
    }
    runs = {name: make(*fresh()) for name, make in parts.items()}
    times = {name: [] for name in parts}
    for _ in range(reps):  # interleaved; each timed after a call of its own, which refills the
        for name, run in runs.items():  # allocator's cache with its buffer sizes (and compiles)
            run()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {"model": model.name, "batch_shape": list(batch.inputs.shape), "tokens": batch.tokens,
            "seconds": {name: statistics.median(t) for name, t in times.items()}, "runs": times}


def format_profile(profile: dict) -> str:
    shape = "x".join(map(str, profile["batch_shape"]))
    lines = [f"{profile['model']}: one step on a fixed {shape} batch ({profile['tokens']} real tokens), "
             f"float32 base, median seconds"]
    step = profile["seconds"]["derta-mlx step (trainer.train's loop body)"]
    for name, seconds in profile["seconds"].items():
        lines.append(f"  {name:<50} {seconds:7.3f}  {seconds / step:6.0%} of derta-mlx's step")
    return "\n".join(lines)
