"""llama.cpp GGUF (LLaMA architecture) -> an mlx-lm model directory, keeping the quantisation.

MLX reads GGUF itself (`mx.load(path, return_metadata=True)`): Q4_0, Q4_1 and Q8_0 blocks come
back as MLX affine-quantised weight/scales/biases with group size 32, F16/F32 as arrays.
This module renames the tensors to mlx-lm's names, undoes llama.cpp's q/k row permutation,
writes config.json with the (per-layer) quantisation, and rebuilds a Hugging Face
tokenizer.json from the GGUF vocabulary and merges. The result is written to a temporary
sibling folder and renamed into place, so a failure leaves nothing behind.
"""

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Union

import mlx.core as mx

GGUF_GROUP = 32  # every block quantisation MLX reads from GGUF has 32 weights per block

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


class GGUFError(ValueError):
    """A GGUF file that cannot be converted; the message names the file and the reason."""


def _scalar(metadata: dict, key: str, path, default=None):
    if key not in metadata:
        if default is not None:
            return default
        raise GGUFError(f"{path}: metadata key {key!r} is missing")
    value = metadata[key]
    return value.item() if hasattr(value, "item") else value


def unpermute_rows(array: mx.array, n_head: int) -> mx.array:
    """Invert llama.cpp's permutation of q/k rows (it interleaves the two rotary halves)."""
    rows = array.shape[0]
    rest = array.shape[1:]
    return array.reshape(n_head, rows // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


def permute_rows(array: mx.array, n_head: int) -> mx.array:
    """llama.cpp's permutation itself (used by the tests to check the inverse)."""
    rows = array.shape[0]
    rest = array.shape[1:]
    return array.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


def _mlx_name(name: str, path) -> str:
    base, _, leaf = name.rpartition(".")
    if base.startswith("blk."):
        _, index, kind = base.split(".", 2)
        if kind not in _LAYER_NAMES:
            raise GGUFError(f"{path}: unexpected tensor {name!r} for a LLaMA model")
        return f"model.layers.{index}.{_LAYER_NAMES[kind]}.{leaf}"
    if base not in _TOP_NAMES:
        raise GGUFError(f"{path}: unexpected tensor {name!r} for a LLaMA model")
    return f"{_TOP_NAMES[base]}.{leaf}"


def _quantisation(weights: dict) -> dict:
    """mlx-lm's `quantization` config: the common bits, and the layers that differ."""
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


def _tokenizer_files(metadata: dict, path) -> dict:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json from the GGUF vocab."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = _scalar(metadata, "tokenizer.ggml.model", path)
    if kind != "gpt2":
        raise GGUFError(f"{path}: tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
    tokens = list(metadata["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
    token_types = metadata.get("tokenizer.ggml.token_type")
    types = token_types.tolist() if token_types is not None else [1] * len(tokens)
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    pre = _scalar(metadata, "tokenizer.ggml.pre", path, default="default")
    if pre in ("smollm", "starcoder", "refact", "codeshell"):
        # llama.cpp splits every digit on its own before the GPT-2 regex for these.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("gpt2", "default"):
        tokenizer.pre_tokenizer = byte_level
    else:
        raise GGUFError(f"{path}: pre-tokenizer {pre!r} is not supported (supported: smollm, starcoder, gpt2)")
    tokenizer.decoder = decoders.ByteLevel()
    specials = [tokens[i] for i, t in enumerate(types) if t == 3]  # CONTROL tokens
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])

    def token(key):
        index = metadata.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[int(index.item())] if index is not None else None

    special_map = {k: v for k, v in (("bos_token", token("bos")), ("eos_token", token("eos")),
                                     ("unk_token", token("unknown")), ("pad_token", token("padding"))) if v}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_map,
        "add_bos_token": bool(_scalar(metadata, "tokenizer.ggml.add_bos_token", path, default=False)),
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(_scalar(metadata, "llama.context_length", path, default=2048)),
    }
    if "tokenizer.chat_template" in metadata:
        config["chat_template"] = metadata["tokenizer.chat_template"]
    return {"tokenizer.json": tokenizer.to_str(), "tokenizer_config.json": json.dumps(config, indent=2),
            "special_tokens_map.json": json.dumps(special_map, indent=2)}


def convert_gguf(gguf_path: Union[str, Path], out_dir: Union[str, Path], *, overwrite: bool = False) -> Path:
    path, out_dir = Path(gguf_path), Path(out_dir)
    if not path.is_file():
        raise GGUFError(f"{path}: no such file")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file (no 'GGUF' magic at the start)")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise GGUFError(f"{out_dir} already exists and is not empty (use --overwrite to replace it)")
    try:
        weights, metadata = mx.load(str(path), return_metadata=True)
    except Exception as exc:  # MLX raises several types for truncated or unsupported files
        raise GGUFError(f"{path}: cannot read it as GGUF: {exc}") from None
    arch = _scalar(metadata, "general.architecture", path)
    if arch != "llama":
        raise GGUFError(f"{path}: architecture {arch!r} is not supported (only 'llama': LLaMA, Mistral, SmolLM)")

    n_head = int(_scalar(metadata, "llama.attention.head_count", path))
    n_kv = int(_scalar(metadata, "llama.attention.head_count_kv", path, default=n_head))
    hidden = int(_scalar(metadata, "llama.embedding_length", path))
    converted = {}
    for name, array in weights.items():
        target = _mlx_name(name, path)
        if ".self_attn.q_proj." in target:
            array = unpermute_rows(array, n_head)
        elif ".self_attn.k_proj." in target:
            array = unpermute_rows(array, n_kv)
        converted[target] = array
    vocab = len(metadata["tokenizer.ggml.tokens"])
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": int(_scalar(metadata, "llama.block_count", path)),
        "intermediate_size": int(_scalar(metadata, "llama.feed_forward_length", path)),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": int(_scalar(metadata, "llama.rope.dimension_count", path, default=hidden // n_head)),
        "rms_norm_eps": float(_scalar(metadata, "llama.attention.layer_norm_rms_epsilon", path)),
        "rope_theta": float(_scalar(metadata, "llama.rope.freq_base", path, default=10000.0)),
        "max_position_embeddings": int(_scalar(metadata, "llama.context_length", path, default=2048)),
        "vocab_size": int(_scalar(metadata, "llama.vocab_size", path, default=vocab)),
        "tie_word_embeddings": "lm_head.weight" not in converted,
        "bos_token_id": int(_scalar(metadata, "tokenizer.ggml.bos_token_id", path, default=1)),
        "eos_token_id": int(_scalar(metadata, "tokenizer.ggml.eos_token_id", path, default=2)),
    }
    quantization = _quantisation(converted)
    if quantization:
        config["quantization"] = quantization
        config["quantization_config"] = quantization
    files = _tokenizer_files(metadata, path)

    tmp = out_dir.with_name(f".{out_dir.name}.converting-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        mx.save_safetensors(str(tmp / "model.safetensors"), converted, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for name, text in files.items():
            (tmp / name).write_text(text)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
