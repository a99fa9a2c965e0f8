"""Tiny random-init models with the real LLaMA-3 and Mistral-7B-v0.1 tokenizers (tokenizers.py).

They are mlx-lm model directories (`mlx_lm.load(dir)` reads them) built locally in about a
second, for tests and benchmarks that need a model whose token ids are those of the real
family ("Sorry" is 19701 in LLaMA-3, 23166 in Mistral) without downloading gigabytes.
"""

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from derta_mlx.testing.tokenizers import (
    BUILD_VERSION,
    FAMILIES,
    cache_root,
    sha256_of,
    tokenizer_source,
    unique_tmp,
    vocab_size,
    write_tokenizer,
)


@dataclass
class TinySpec:
    family: str  # "llama3" | "mistral"
    hidden_size: int = 64
    num_hidden_layers: int = 2
    intermediate_size: int = 128
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    rope_theta: Optional[float] = None  # None: the family's (500000 llama3, 10000 mistral)
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    instruct: bool = False
    quantize_bits: Optional[int] = None  # 4 or 8: mlx affine quantisation
    group_size: int = 64  # must divide hidden_size and intermediate_size
    seed: int = 0
    init_std: Optional[float] = None  # None: 1/sqrt(fan-in) per matrix (see init_weights)
    dtype: str = "float32"

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown tiny model family {self.family!r}; choose one of {FAMILIES}")
        if self.rope_theta is None:
            self.rope_theta = 500000.0 if self.family == "llama3" else 10000.0
        if self.quantize_bits is not None:
            for dim in (self.hidden_size, self.intermediate_size):
                if dim % self.group_size:
                    raise ValueError(f"group_size {self.group_size} does not divide {dim}")


def model_config(spec: TinySpec, n_vocab: int) -> dict:
    """config.json of a tiny model, in the shape of the real family's."""
    if spec.family == "llama3":
        bos, eos = 128000, ([128001, 128009] if spec.instruct else 128001)
        model_type, architecture = "llama", "LlamaForCausalLM"
    else:
        bos, eos = 1, 2
        model_type, architecture = "mistral", "MistralForCausalLM"  # mlx-lm maps mistral to llama
    config = {
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "intermediate_size": spec.intermediate_size,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "rope_theta": spec.rope_theta,
        "rms_norm_eps": spec.rms_norm_eps,
        "vocab_size": n_vocab,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": spec.dtype,
        # What built it, for people and for the cache; mlx-lm ignores unknown keys.
        "derta_mlx_tiny": {**asdict(spec), "build_version": BUILD_VERSION},
    }
    return config


def init_weights(spec: TinySpec, config: dict):
    """Random weights, from numpy's generator so a seed gives the same model everywhere.

    Each matrix is N(0, 1/fan_in) unless spec.init_std is set: activations keep unit scale
    and the logits spread (std about 1) like a real model's, so a few LoRA steps can move a
    token's probability by orders of magnitude. With HF's 0.02 the logits of a 64-wide model
    span only about +-1, which caps what training can show.
    """
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm.models import (
        llama,  # both families are LLaMA-shaped (mlx-lm maps mistral to it)
    )
    from mlx_lm.utils import quantize_model

    model = llama.Model(llama.ModelArgs.from_dict(config))
    rng = np.random.default_rng(spec.seed)
    dtype = getattr(mx, spec.dtype)
    params = []
    for name, value in sorted(tree_flatten(model.parameters())):
        if name.endswith("norm.weight"):
            array = np.ones(value.shape, dtype=np.float32)
        else:
            std = spec.init_std if spec.init_std is not None else value.shape[-1] ** -0.5
            array = rng.standard_normal(value.shape, dtype=np.float32) * np.float32(std)
        params.append((name, mx.array(array).astype(dtype)))
    model.update(tree_unflatten(params))
    if spec.quantize_bits:  # mlx-lm's own quantiser, which also records it in the config
        model, config = quantize_model(model, config, spec.group_size, spec.quantize_bits)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    return weights, config


def _install(tmp: Path, out_dir: Path, replace: bool) -> bool:
    """Move a finished build into place; False when another build got there first."""
    try:
        os.rename(tmp, out_dir)  # also replaces an empty directory
        return True
    except OSError:
        if not out_dir.is_dir():
            raise
    if not (out_dir / "config.json").is_file():
        raise FileExistsError(f"{out_dir} exists and is not a model directory; not replacing it")
    if not replace:
        return False
    old = unique_tmp(out_dir)
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return True


def _build(spec: TinySpec, out_dir, replace: bool) -> Path:
    import mlx.core as mx
    from mlx_lm.utils import save_config

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(out_dir)
    try:
        write_tokenizer(spec.family, tmp, instruct=spec.instruct)
        weights, config = init_weights(spec, model_config(spec, vocab_size(spec.family)))
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
        save_config(config, tmp / "config.json")
        _install(tmp, out_dir, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def build_tiny_model(spec: TinySpec, out_dir) -> Path:
    """Write config.json, model.safetensors and the tokenizer files into out_dir (replacing a
    model already there), all at once: the directory is built aside and renamed into place."""
    return _build(spec, out_dir, replace=True)


def tiny_model_dir(family: str, quantize_bits: Optional[int] = None, instruct: bool = False, root=None) -> Path:
    """A tiny model of the default spec, built once into a cache directory and reused."""
    spec = TinySpec(family=family, quantize_bits=quantize_bits, instruct=instruct)
    root = Path(root) if root else cache_root() / "tiny"
    bits = f"q{quantize_bits}g{spec.group_size}" if quantize_bits else "fp"
    flavour = "instruct" if instruct else "base"
    key = sha256_of(tokenizer_source(family))[:12]
    out_dir = root / f"{family}-{bits}-{flavour}-s{spec.seed}-{key}-v{BUILD_VERSION}"
    if not (out_dir / "config.json").is_file():
        _build(spec, out_dir, replace=False)
    return out_dir
