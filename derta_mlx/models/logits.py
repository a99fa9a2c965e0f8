"""Logits only where the loss reads them.

The LM head and the cross-entropy over the vocabulary cost as much as several blocks (32k-128k
columns per token), yet DeRTa supervises only the responses: the prompt, the harmful prefix of
an MLE instance and the padding are read, never scored. So the loss runs the blocks on the whole
batch and the head on the supervised positions alone: the same logits there, and none elsewhere.

This needs the model's head apart from its blocks. mlx-lm's LLaMA (which also loads Mistral and
SmolLM2) and Mixtral classes are `self.model(...)` followed by the LM head or the tied
embeddings; any other class falls back to the full `model(inputs)` and a gather.
"""

import mlx.core as mx

_SPLIT_HEAD = ("mlx_lm.models.llama", "mlx_lm.models.mixtral")


def head_splits(model) -> bool:
    return type(model).__module__ in _SPLIT_HEAD and hasattr(model, "model")


def apply_head(model, hidden: mx.array) -> mx.array:
    """Logits of hidden states from `model.model` (only where head_splits(model))."""
    if model.args.tie_word_embeddings:
        return model.model.embed_tokens.as_linear(hidden)
    return model.lm_head(hidden)


def logits_at(model, inputs: mx.array, positions: mx.array, cache=None) -> mx.array:
    """(N, vocab) logits at `positions`, indices into the flattened (batch x length) inputs;
    `cache` (mlx-lm's per-layer KV caches) is filled on the way when given."""
    extra = {} if cache is None else {"cache": cache}
    if not head_splits(model):
        logits = model(inputs, **extra)
        return logits.reshape(-1, logits.shape[-1])[positions]
    hidden = model.model(inputs, **extra)
    return apply_head(model, hidden.reshape(-1, hidden.shape[-1])[positions])
