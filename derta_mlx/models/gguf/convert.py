"""llama.cpp GGUF (LLaMA architecture) -> an mlx-lm model directory, keeping the quantisation.

MLX reads GGUF itself (`mx.load(path, format="gguf", return_metadata=True)`):
  Q4_0, Q4_1, Q8_0       -> MLX affine-quantised weight/scales/biases, group size 32, kept as is
  F32, F16               -> plain arrays
  BF16, Q2_K, Q4_K, Q6_K -> dequantised by MLX to float16 (the output is larger than the GGUF)
  anything else          -> refused (MLX fails on some and silently drops others)
This module checks the header first (header.py: architecture, tokenizer, tensor types) so
that a file it cannot convert is refused before MLX reads gigabytes, renames the tensors to mlx-lm's names,
undoes llama.cpp's q/k row permutation, writes config.json with the (per-layer) quantisation
and rebuilds a Hugging Face tokenizer.json from the GGUF vocabulary (tokenizer.py): byte-level BPE ('gpt2')
with llama.cpp's pre-tokenizer for the file's `tokenizer.ggml.pre`, or SentencePiece BPE
('llama', LLaMA-2 and Mistral) from the scores. The result is written to a temporary sibling
folder and renamed into place, so a failure leaves nothing behind. No pickles are written.
"""

import json
import os
import secrets
import shutil
from collections import Counter
from pathlib import Path
from typing import Optional, Union

import mlx.core as mx
import numpy as np

from derta_mlx.common.errors import UserError
from derta_mlx.common.safe_paths import MARKER, check_replaceable_dir
from derta_mlx.models.gguf.header import (
    GGUFError,
    GGUFHeader,
    check_tensor_types,
    metadata_value,
    read_header,
)
from derta_mlx.models.gguf.tokenizer import build_tokenizer

GGUF_GROUP = 32  # every block quantisation MLX keeps from GGUF has 32 weights per block

_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

# --- weights -------------------------------------------------------------------------------


def unpermute_rows(array: mx.array, n_head: int) -> mx.array:
    """Invert llama.cpp's permutation of q/k rows.

    llama.cpp's converter interleaves the two rotary halves of every head (its rope rotates
    adjacent pairs); mlx-lm's LLaMA rotates halves, as Hugging Face does. Works on weights, on
    the rows of quantised weights, scales and biases, and on 1-D bias vectors alike.
    """
    rows, rest = array.shape[0], array.shape[1:]
    return array.reshape(n_head, rows // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


def permute_rows(array: mx.array, n_head: int) -> mx.array:
    """llama.cpp's permutation itself (convert_hf_to_gguf.py's `permute`), for the tests."""
    rows, rest = array.shape[0], array.shape[1:]
    return array.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


def _mlx_name(name: str, path: Path) -> str:
    base, _, leaf = name.rpartition(".")
    if base.startswith("blk."):
        _, index, kind = base.split(".", 2)
        if kind in _LAYER_NAMES:
            return f"model.layers.{index}.{_LAYER_NAMES[kind]}.{leaf}"
    elif base in _TOP_NAMES:
        return f"{_TOP_NAMES[base]}.{leaf}"
    raise GGUFError(f"{path}: unexpected tensor {name!r} for a LLaMA model")


def _quantisation(weights: dict) -> dict:
    """mlx-lm's `quantization` config: the most common bits, and the layers that differ."""
    bits_of = {}
    for name, scales in weights.items():
        if name.endswith(".scales"):
            layer = name[: -len(".scales")]
            in_dims = scales.shape[-1] * GGUF_GROUP
            bits_of[layer] = weights[f"{layer}.weight"].shape[-1] * 32 // in_dims
    if not bits_of:
        return {}
    common = Counter(bits_of.values()).most_common(1)[0][0]
    config = {"group_size": GGUF_GROUP, "bits": common}
    for layer, bits in sorted(bits_of.items()):
        if bits != common:
            config[layer] = {"group_size": GGUF_GROUP, "bits": bits}
    return config


def _llama3_factors(base: float, dims: int, factor: float, low: float, high: float, old: int) -> np.ndarray:
    """The per-frequency divisors of LLaMA-3.1's rope scaling (what llama.cpp stores in rope_freqs)."""
    wavelen = 2 * np.pi * base ** (np.arange(0, dims, 2) / dims)
    smooth = (old / wavelen - low) / (high - low)
    medium = 1 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < old / high, 1.0, np.where(wavelen > old / low, factor, medium))


def _rope_scaling(metadata: dict, rope_freqs: Optional[mx.array], base: float, dims: int, path: Path):
    """rope_scaling for config.json: linear from the metadata, or LLaMA-3.1's from rope_freqs.

    GGUF keeps LLaMA-3.1's scaling only as the tensor of divisors, not its parameters, so the
    parameters are found by trying the published ones and keeping those that reproduce it.
    """
    kind = metadata_value(metadata, "llama.rope.scaling.type", path, default="none")
    if kind == "linear":
        return {"type": "linear", "factor": float(metadata_value(metadata, "llama.rope.scaling.factor", path))}
    if kind != "none":
        raise GGUFError(f"{path}: rope scaling {kind!r} is not supported (only linear and LLaMA-3's)")
    if rope_freqs is None:
        return None
    factors = np.array(rope_freqs.astype(mx.float32))
    if factors.shape != (dims // 2,):
        raise GGUFError(f"{path}: rope_freqs.weight has shape {factors.shape}, expected ({dims // 2},)")
    if np.allclose(factors, 1.0):
        return None
    factor = float(factors.max())
    for old in (8192, 4096, 2048, 16384, 32768, 65536, 131072):
        for low in (1.0, 2.0, 0.5):
            for high in (4.0, 2.0, 8.0, 1.0):
                candidate = _llama3_factors(base, dims, factor, low, high, old) if high > low else None
                if candidate is not None and np.allclose(candidate, factors, rtol=1e-3):
                    return {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                            "high_freq_factor": high, "original_max_position_embeddings": old}  # fmt: skip
    raise GGUFError(f"{path}: rope_freqs.weight does not match LLaMA-3's rope scaling; it is not supported")


# --- conversion ----------------------------------------------------------------------------


def _check_out_dir(out_dir: Path, overwrite: bool, gguf_path: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise GGUFError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise GGUFError(f"{out_dir} already exists and is not empty (use --overwrite to replace it)")
        try:
            check_replaceable_dir(out_dir, [gguf_path])
        except UserError as exc:
            raise GGUFError(str(exc)) from None


def _heads(metadata: dict, path: Path) -> tuple:
    """(query heads, key/value heads, head size) from the llama.* metadata."""
    n_head = int(metadata_value(metadata, "llama.attention.head_count", path))
    n_kv = int(metadata_value(metadata, "llama.attention.head_count_kv", path, default=n_head))
    hidden = int(metadata_value(metadata, "llama.embedding_length", path))
    return n_head, n_kv, int(metadata_value(metadata, "llama.attention.key_length", path, default=hidden // n_head))


def _config(metadata: dict, weights: dict, path: Path) -> dict:
    n_head, n_kv, head_dim = _heads(metadata, path)
    hidden = int(metadata_value(metadata, "llama.embedding_length", path))
    if int(metadata_value(metadata, "llama.attention.value_length", path, default=head_dim)) != head_dim:
        raise GGUFError(f"{path}: key and value head sizes differ; not supported")
    if int(metadata_value(metadata, "llama.rope.dimension_count", path, default=head_dim)) != head_dim:
        raise GGUFError(f"{path}: rope over part of each head is not supported")
    layers = int(metadata_value(metadata, "llama.block_count", path))
    base = float(metadata_value(metadata, "llama.rope.freq_base", path, default=10000.0))
    eos = []
    for key in ("eos", "eot", "eom"):  # LLaMA-3 instruct ends turns with <|eot_id|> (and <|eom_id|>)
        index = metadata.get(f"tokenizer.ggml.{key}_token_id")
        if index is not None and int(index.item()) not in eos:
            eos.append(int(index.item()))
    embed = weights["model.embed_tokens.weight"]
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": int(metadata_value(metadata, "llama.feed_forward_length", path)),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": float(metadata_value(metadata, "llama.attention.layer_norm_rms_epsilon", path)),
        "rope_theta": base,
        "rope_scaling": _rope_scaling(metadata, weights.get("rope_freqs.weight"), base, head_dim, path),
        "max_position_embeddings": int(metadata_value(metadata, "llama.context_length", path, default=2048)),
        "vocab_size": embed.shape[0],
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "attention_bias": any(".self_attn." in k and k.endswith(".bias") for k in weights),
        "mlp_bias": any(".mlp." in k and k.endswith(".bias") for k in weights),
    }
    if "tokenizer.ggml.bos_token_id" in metadata:
        config["bos_token_id"] = int(metadata["tokenizer.ggml.bos_token_id"].item())
    if eos:
        config["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    if config["rope_scaling"] is None:
        del config["rope_scaling"]
    return config


def _check_shapes(header: GGUFHeader, metadata: dict, path: Path) -> None:
    """Every tensor a LLaMA needs, each with the shape the llama.* metadata implies."""
    n_head, n_kv, head_dim = _heads(metadata, path)
    hidden = int(metadata_value(metadata, "llama.embedding_length", path))
    ffn = int(metadata_value(metadata, "llama.feed_forward_length", path))
    vocab = len(metadata.get("tokenizer.ggml.tokens", [])) or None
    q, kv = n_head * head_dim, n_kv * head_dim
    # (rows, columns); None where any size will do. GGUF lists the dimensions the other way.
    layer = {"attn_norm": (hidden,), "attn_q": (q, hidden), "attn_k": (kv, hidden), "attn_v": (kv, hidden),
             "attn_output": (hidden, q), "ffn_norm": (hidden,), "ffn_gate": (ffn, hidden),
             "ffn_up": (ffn, hidden), "ffn_down": (hidden, ffn)}  # fmt: skip
    expected = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,),
                "output.weight": (vocab, hidden), "rope_freqs.weight": (head_dim // 2,)}  # fmt: skip
    for i in range(int(metadata_value(metadata, "llama.block_count", path))):
        for kind, shape in layer.items():
            expected[f"blk.{i}.{kind}.weight"] = shape
            expected[f"blk.{i}.{kind}.bias"] = shape[:1]
    found = {t.name: t.shape[::-1] for t in header.tensors}
    for name, shape in found.items():
        if name not in expected:
            raise GGUFError(f"{path}: unexpected tensor {name!r} for a LLaMA model of this size")
        want = expected[name]
        if len(shape) != len(want) or any(w is not None and w != s for w, s in zip(want, shape)):
            raise GGUFError(f"{path}: tensor {name} has shape {shape}, expected {tuple(w or '?' for w in want)}")
    optional = ("output.weight", "rope_freqs.weight")
    missing = [n for n in expected if n.endswith(".weight") and n not in found and n not in optional]
    if missing:
        raise GGUFError(f"{path}: tensors are missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")


def _convert_weights(weights: dict, metadata: dict, path: Path) -> dict:
    """mlx-lm's names, and q/k rows back in Hugging Face's order."""
    n_head, n_kv, _ = _heads(metadata, path)
    converted = {}
    for name, array in weights.items():
        if name == "rope_freqs.weight":  # LLaMA-3.1's rope scaling; it goes into config.json
            converted[name] = array
            continue
        target = _mlx_name(name, path)
        if ".self_attn.q_proj." in target:
            array = unpermute_rows(array, n_head)
        elif ".self_attn.k_proj." in target:
            array = unpermute_rows(array, n_kv)
        converted[target] = array
    return converted


CONVERT_STEPS = 4  # checked, tensors read, converted, written: what `progress` counts


def convert_gguf(gguf_path: Union[str, Path], out_dir: Union[str, Path], *, overwrite: bool = False,
                 progress=None) -> Path:
    """Convert a LLaMA-architecture GGUF into an mlx-lm model directory at out_dir; return out_dir.

    Raises GGUFError, naming the file and the reason, for anything it cannot convert. out_dir
    must not exist or be empty unless overwrite; it is replaced only once the new one is complete.
    `progress(done, CONVERT_STEPS)` after each step (reading and writing are one MLX call each).
    """
    progress = progress or (lambda done, total: None)
    path, out_dir = Path(gguf_path), Path(out_dir)
    target = out_dir.absolute()  # so that "." or "models/x/" have a name to put a sibling beside
    header = read_header(path)
    _check_out_dir(target, overwrite, path)
    arch = header.metadata.get("general.architecture")
    if arch != "llama":
        raise GGUFError(f"{path}: architecture {arch!r} is not supported (only 'llama': LLaMA, Mistral, SmolLM)")
    if int(header.metadata.get("llama.expert_count", 0)) > 0:
        raise GGUFError(f"{path}: mixture-of-experts LLaMA models (Mixtral) are not supported")
    kind = header.metadata.get("tokenizer.ggml.model")
    if kind is None:
        raise GGUFError(f"{path}: the file has no tokenizer (no tokenizer.ggml.model)")
    if kind not in ("gpt2", "llama"):
        raise GGUFError(f"{path}: tokenizer model {kind!r} is not supported (only 'gpt2' and 'llama')")
    check_tensor_types(header, path)
    progress(1, CONVERT_STEPS)

    try:
        weights, metadata = mx.load(str(path), format="gguf", return_metadata=True)
    except Exception as exc:  # MLX raises RuntimeError/ValueError for truncated or odd files
        raise GGUFError(f"{path}: cannot read it as GGUF: {exc}") from None
    missing = sorted({t.name for t in header.tensors} - set(weights))
    if missing:  # MLX skips tensors of types it does not know; never convert half a model
        raise GGUFError(f"{path}: MLX did not load the tensors {missing[:5]}")

    _check_shapes(header, metadata, path)
    progress(2, CONVERT_STEPS)
    weights = _convert_weights(weights, metadata, path)
    config = _config(metadata, weights, path)
    weights.pop("rope_freqs.weight", None)
    quantization = _quantisation(weights)
    if quantization:
        config["quantization"] = quantization
        config["quantization_config"] = quantization
    tokenizer, tokenizer_config = build_tokenizer(metadata, path)
    special_map = {k: v for k, v in tokenizer_config.items() if k.endswith("_token") and isinstance(v, str)}
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id") if k in config}
    progress(3, CONVERT_STEPS)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.converting-{os.getpid()}-{secrets.token_hex(4)}")
    old = target.with_name(f".{target.name}.replaced-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        (tmp / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
        (tmp / MARKER).write_text(f"written by derta-mlx models convert from {path.name}\n")
        _check_out_dir(target, overwrite, path)  # again: something may have appeared meanwhile
        if target.exists():
            os.replace(target, old)  # moved aside, not deleted, until the new one is in place
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    progress(CONVERT_STEPS, CONVERT_STEPS)
    return out_dir
