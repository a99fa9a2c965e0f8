"""The optimised training step (logits at supervised positions only, one-exp cross-entropy, the
polynomial exp on the CPU) gives the loss and gradients of the plain one: full logits and
mlx's own nn.losses.cross_entropy."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from derta_mlx.accel.kernels import _exp_nonpositive, training_kernels
from derta_mlx.data.instances import IGNORE, MLE, RTO
from derta_mlx.models.logits import head_splits
from derta_mlx.train.config import TrainConfig
from derta_mlx.train.cross_entropy import cross_entropy
from derta_mlx.train.loss import batch_loss, supervised
from derta_mlx.train.trainer import prepare_model


def plain_loss(model, inputs, targets, terms, scales):
    """The step before optimisation: every logit, mlx's cross-entropy, masks."""
    ce = nn.losses.cross_entropy(model(inputs).astype(mx.float32), mx.maximum(targets, 0), reduction="none")
    ce = mx.where(targets == IGNORE, 0.0, ce)
    return scales[0] * (ce * (terms == MLE)).sum() + scales[1] * (ce * (terms == RTO)).sum()


def fast_loss(model, inputs, positions, targets, terms, scales):
    return batch_loss(model, inputs, positions, targets, terms, scales)[0]


def small_model(kind: str, tied: bool):
    if kind == "mixtral":
        from mlx_lm.models import mixtral as module

        extra = dict(num_local_experts=4, num_experts_per_tok=2)
    else:
        from mlx_lm.models import llama as module

        extra = dict(rms_norm_eps=1e-5)
    args = module.ModelArgs(model_type=kind, vocab_size=3000, hidden_size=64, intermediate_size=128,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            tie_word_embeddings=tied, **extra)
    mx.random.seed(1)
    return module.Model(args)


def a_batch(vocab: int, seed: int = 0):
    """Two rows: a prompt (unsupervised), MLE and RTO targets, and right padding on one row."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, vocab, (2, 24)).astype(np.int32)
    targets = rng.integers(0, vocab, (2, 24)).astype(np.int32)
    terms = np.zeros((2, 24), np.int8)
    terms[0, 5:15], terms[0, 15:20] = MLE, RTO
    terms[1, 3:12] = RTO  # row 1 ends at 12: the rest is padding
    targets[terms == 0] = IGNORE
    return inputs, targets, terms


@pytest.mark.parametrize("kind, tied", [("llama", False), ("llama", True), ("mixtral", False)])
def test_fast_step_matches_plain_step(kind, tied):
    model = small_model(kind, tied)
    assert head_splits(model)
    prepare_model(model, TrainConfig(num_layers=-1, lora_rank=4, seed=3))
    # LoRA's B starts at zero; move it so that the LoRA gradients flow through both factors
    model.update(tree_map(lambda p: p + 0.01, model.trainable_parameters()))
    inputs, targets, terms = a_batch(model.args.vocab_size)
    scales = mx.array([1 / 19, 0.7 / 19])
    plain_value, plain_grads = nn.value_and_grad(model, plain_loss)(
        model, mx.array(inputs), mx.array(targets), mx.array(terms), scales)
    with training_kernels(model) as swapped:
        assert swapped == (kind == "llama")  # the CPU kernels are swapped into mlx-lm's LLaMA only
        fast_value, fast_grads = nn.value_and_grad(model, fast_loss)(
            model, mx.array(inputs), *map(mx.array, supervised(targets, terms)), scales)
    assert fast_value.item() == pytest.approx(plain_value.item(), rel=1e-5)
    plain_grads, fast_grads = dict(tree_flatten(plain_grads)), dict(tree_flatten(fast_grads))
    assert plain_grads.keys() == fast_grads.keys() and len(plain_grads) > 0
    for name, grad in plain_grads.items():
        assert np.abs(np.array(grad)).max() > 0, name
        np.testing.assert_allclose(np.array(fast_grads[name]), np.array(grad), rtol=2e-4, atol=2e-7, err_msg=name)


def test_cross_entropy_matches_mlx_in_value_and_gradient():
    logits = mx.random.normal((3, 7, 500), key=mx.random.key(0)) * 4
    logits[0, 0, 7] = 60.0  # one confident row: exp(x - max) underflows for most columns
    targets = mx.random.randint(0, 500, (3, 7), key=mx.random.key(1))
    weights = mx.random.normal((3, 7), key=mx.random.key(2))

    def ours(x):
        return (cross_entropy(x, targets) * weights).sum()

    def theirs(x):
        return (nn.losses.cross_entropy(x, targets, reduction="none") * weights).sum()

    (v1, g1), (v2, g2) = mx.value_and_grad(ours)(logits), mx.value_and_grad(theirs)(logits)
    assert v1.item() == pytest.approx(v2.item(), rel=1e-5)
    np.testing.assert_allclose(np.array(g1), np.array(g2), rtol=1e-4, atol=1e-7)


def test_polynomial_exp_is_float32_accurate():
    x = mx.array(np.concatenate([-np.logspace(-6, 2, 20000), [0.0, -87.0, -200.0, -np.inf]]).astype(np.float32))
    ours, ref = np.array(mx.compile(_exp_nonpositive)(x)), np.array(mx.exp(x))
    normal = ref > 1e-37
    assert (np.abs(ours - ref)[normal] / ref[normal]).max() < 5e-7
    assert (np.abs(ours[~normal]) < 1e-37).all()  # underflow stays ~0, never inf or nan


def test_batch_without_supervised_positions_scores_zero():
    model = small_model("llama", False)
    inputs, targets, terms = a_batch(model.args.vocab_size)
    terms[:] = 0
    positions, t, k = supervised(targets, terms)
    loss, (mle, rto) = batch_loss(model, mx.array(inputs), mx.array(positions), mx.array(t), mx.array(k),
                                  mx.array([1.0, 1.0]))
    assert (loss.item(), mle.item(), rto.item()) == (0.0, 0.0, 0.0)


def test_attention_kernel_matches_mlx_lm():
    from mlx_lm.models.base import scaled_dot_product_attention as mlx_lm_attention

    from derta_mlx.accel.kernels import attention

    q = mx.random.normal((2, 4, 7, 8), key=mx.random.key(6))
    k, v = mx.random.normal((2, 2, 7, 8), key=mx.random.key(7)), mx.random.normal((2, 2, 7, 8), key=mx.random.key(8))
    window = mx.arange(7)[:, None] - mx.arange(7)[None] < 3
    additive = mx.random.normal((2, 4, 7, 7), key=mx.random.key(9))
    for mask in ("causal", None, window & (mx.arange(7)[:, None] >= mx.arange(7)[None]), additive):
        results = []
        for f in (attention, mlx_lm_attention):
            loss = lambda q, k, v, f=f: (f(q, k, v, None, 0.35, mask) * q).sum()  # noqa: E731
            results.append(mx.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v))
        (v1, g1), (v2, g2) = results
        assert v1.item() == pytest.approx(v2.item(), rel=1e-5, abs=1e-5)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-5)


def test_training_kernels_swap_in_on_the_cpu_and_back(tiny_dir):
    import mlx_lm.models.llama as llama
    from mlx_lm import load

    from derta_mlx.accel.kernels import training_kernels

    model, _ = load(str(tiny_dir("llama3")))
    before = llama.scaled_dot_product_attention
    inputs = mx.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    expected = model(inputs)
    with training_kernels(model) as swapped:
        assert swapped and llama.scaled_dot_product_attention is not before
        np.testing.assert_allclose(np.array(model(inputs)), np.array(expected), rtol=1e-4, atol=1e-5)
    assert llama.scaled_dot_product_attention is before


def test_cross_entropy_in_pieces_matches_one_piece(monkeypatch):
    import derta_mlx.train.cross_entropy as module

    logits = mx.random.normal((21, 500), key=mx.random.key(10)) * 3
    targets = mx.random.randint(0, 500, (21,), key=mx.random.key(11))
    weights = mx.random.normal((21,), key=mx.random.key(12))

    def value_and_grad():
        return mx.value_and_grad(lambda x: (cross_entropy(x, targets) * weights).sum())(logits)

    whole = value_and_grad()
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 2000)  # 4 rows a piece: 6 pieces, the last of 1
    pieces = value_and_grad()
    assert pieces[0].item() == pytest.approx(whole[0].item(), rel=1e-6)
    np.testing.assert_allclose(np.array(pieces[1]), np.array(whole[1]), rtol=1e-6, atol=1e-8)
    theirs = mx.grad(lambda x: (nn.losses.cross_entropy(x, targets, reduction="none") * weights).sum())(logits)
    np.testing.assert_allclose(np.array(pieces[1]), np.array(theirs), rtol=1e-4, atol=1e-7)
