"""GGUF -> mlx-lm conversion of small GGUF files built by hand (tests/gguf_support.py): the
quantised layouts, the q/k permutation, RoPE scaling and every refusal, each checked against numbers
the test itself chose. The tokenizers read from GGUF vocabularies: tests/test_gguf_vocab.py.
"""

import json

import mlx.core as mx
import numpy as np
import pytest
from gguf_support import (
    F32,
    FFN,
    HEAD_DIM,
    HIDDEN,
    KV_HEADS,
    LAYERS,
    Q5_K,
    TQ1_0,
    byte_level_vocab,
    llama_cpp_permute,
    tiny_llama,
    tiny_metadata,
)

from derta_mlx.models.gguf import convert as gguf
from derta_mlx.models.gguf.convert import (
    GGUFError,
    convert_gguf,
    permute_rows,
    unpermute_rows,
)

# --- the q/k permutation -------------------------------------------------------------------


def test_unpermute_inverts_llama_cpp_permutation():
    rng = np.random.default_rng(0)
    for heads, head_dim in ((3, 64), (9, 64), (2, 8)):
        rows = heads * head_dim
        for shape in ((rows, 12), (rows,), (rows, 5, 2)):  # weights/scales, biases, anything
            original = rng.standard_normal(shape).astype(np.float32)
            permuted = llama_cpp_permute(original, heads)
            assert not np.array_equal(permuted, original)
            assert np.array_equal(np.array(unpermute_rows(mx.array(permuted), heads)), original)
            assert np.array_equal(np.array(permute_rows(mx.array(original), heads)), permuted)


def test_unpermuted_rows_give_the_same_rope_as_llama_cpp():
    """Why the rows are permuted: llama.cpp rotates adjacent pairs, mlx-lm (like HF) halves.
    Rotating the permuted projection the llama.cpp way equals the mlx-lm way on the original."""
    heads, head_dim, dim, length = 3, 16, 24, 5
    rng = np.random.default_rng(1)
    w = rng.standard_normal((heads * head_dim, dim)).astype(np.float32)
    x = mx.array(rng.standard_normal((1, length, dim)).astype(np.float32))

    def rope(weight, traditional):
        q = (x @ mx.array(weight).T).reshape(1, length, heads, head_dim).transpose(0, 2, 1, 3)
        return mx.fast.rope(q, head_dim, traditional=traditional, base=10000.0, scale=1.0, offset=0)

    hf = rope(w, traditional=False)
    llama_cpp = rope(llama_cpp_permute(w, heads), traditional=True)  # per head: permuted row order
    back = unpermute_rows(llama_cpp.transpose(0, 2, 1, 3).reshape(length, heads * head_dim).T, heads)
    back = back.T.reshape(1, length, heads, head_dim).transpose(0, 2, 1, 3)
    assert np.allclose(np.array(back), np.array(hf), atol=1e-5)


# --- a synthetic model end to end -----------------------------------------------------------


def _logits(model, ids):
    return np.array(model(mx.array([ids])).astype(mx.float32))[0]


def assert_same_model(out, reference):
    """The converted model computes what mlx-lm's LLaMA computes with the float weights."""
    from mlx_lm import load
    from mlx_lm.models import llama

    model, tokenizer = load(str(out))
    config = json.loads((out / "config.json").read_text())
    expected = llama.Model(llama.ModelArgs.from_dict(config))
    expected.load_weights([(k, mx.array(v)) for k, v in reference.items()])
    ids = [1, 80, 90, 100, 120, 140, 2]
    got, want = _logits(model, ids), _logits(expected, ids)
    # Quantised matmuls run with float16 scales: compare loosely, but the ranking must agree.
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    assert (got.argmax(-1) == want.argmax(-1)).all()
    return model, tokenizer


def test_synthetic_llama_matches_its_float_weights(tmp_path):
    reference = tiny_llama(tmp_path / "tiny.gguf")
    out = convert_gguf(tmp_path / "tiny.gguf", tmp_path / "tiny")
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {
        "group_size": 32, "bits": 4, "model.embed_tokens": {"group_size": 32, "bits": 8},
        **{f"model.layers.{i}.self_attn.v_proj": {"group_size": 32, "bits": 8} for i in range(LAYERS)},
    }  # fmt: skip
    assert config["tie_word_embeddings"] is False and config["head_dim"] == HEAD_DIM
    assert config["rope_theta"] == 500000.0 and config["rms_norm_eps"] == 1e-5 and "rope_scaling" not in config
    assert config["num_key_value_heads"] == KV_HEADS and config["vocab_size"] == len(byte_level_vocab()[0])

    _, tokenizer = assert_same_model(out, reference)
    tokens = byte_level_vocab()[0]
    assert tokenizer.encode("hello world") == [tokens.index(t) for t in ("hell", "o", "Ġworld")]


def test_llama3_rope_scaling_is_recovered_from_rope_freqs(tmp_path):
    from mlx_lm import load

    # LLaMA-3.1-8B's rope_freqs (head size 128, base 500000) gives back its published parameters.
    published = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192}  # fmt: skip
    factors = mx.array(gguf._llama3_factors(500000.0, 128, 8.0, 1.0, 4.0, 8192).astype(np.float32))
    assert gguf._rope_scaling({}, factors, 500000.0, 128, "x.gguf") == published

    # In the tiny model (head size 64) several parameter sets give the same frequencies; any
    # will do as long as mlx-lm's rope then uses exactly the file's.
    factors = gguf._llama3_factors(500000.0, HEAD_DIM, 32.0, 1.0, 4.0, 8192).astype(np.float32)
    assert len(set(np.round(factors, 4))) > 2  # kept, smoothed and divided frequencies
    extra = {"rope_freqs.weight": (F32, None, HEAD_DIM // 2, factors.tobytes())}
    tiny_llama(tmp_path / "tiny.gguf", extra_tensors=extra)
    out = convert_gguf(tmp_path / "tiny.gguf", tmp_path / "tiny")
    config = json.loads((out / "config.json").read_text())
    assert config["rope_scaling"]["rope_type"] == "llama3" and config["rope_scaling"]["factor"] == 32.0
    model, _ = load(str(out))
    base_periods = 500000.0 ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM)
    assert np.allclose(np.array(model.model.layers[0].self_attn.rope._freqs), base_periods * factors, rtol=1e-4)


def test_extensionless_file_and_overwrite(tmp_path):
    """Ollama keeps GGUFs as sha256-named blobs without a suffix."""
    blob = tmp_path / "sha256-0123abcd"
    tiny_llama(blob)
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"old")
    with pytest.raises(GGUFError, match="already exists and is not empty.*--overwrite"):
        convert_gguf(blob, out)
    assert (out / "model.safetensors").read_bytes() == b"old"
    assert convert_gguf(blob, out, overwrite=True) == out  # a model folder: replaced
    assert sorted(p.name for p in out.iterdir()) == [
        ".derta-mlx-model", "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", blob.name]  # no temporaries left
    # A folder that holds the GGUF itself is never replaced.
    (out / blob.name).write_bytes(blob.read_bytes())
    with pytest.raises(GGUFError, match="holds the input .*replacing it would delete the input"):
        convert_gguf(out / blob.name, out, overwrite=True)


def test_a_failed_write_keeps_the_old_directory(tmp_path, monkeypatch):
    tiny_llama(tmp_path / "tiny.gguf")
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.mx, "save_safetensors", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_gguf(tmp_path / "tiny.gguf", out, overwrite=True)
    assert (out / "model.safetensors").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "tiny.gguf"]


# --- bad input -----------------------------------------------------------------------------


def _refused(path, out, match):
    with pytest.raises(GGUFError, match=match) as caught:
        convert_gguf(path, out)
    assert str(path) in str(caught.value)
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    return str(caught.value)


def test_missing_junk_and_truncated_files_are_refused(tmp_path):
    out = tmp_path / "out"
    _refused(tmp_path / "absent.gguf", out, "no such file")
    (tmp_path / "empty.gguf").write_bytes(b"")
    _refused(tmp_path / "empty.gguf", out, "not a GGUF file")
    (tmp_path / "junk.gguf").write_bytes(np.random.default_rng(0).bytes(4096))
    _refused(tmp_path / "junk.gguf", out, "not a GGUF file")

    tiny_llama(tmp_path / "tiny.gguf")
    whole = (tmp_path / "tiny.gguf").read_bytes()
    # llama.cpp's reader maps the tensor data too, so a file cut inside it is refused before MLX reads it
    for cut in (6, 2000, len(whole) - 100):
        match = "header is truncated or corrupt"
        (tmp_path / "cut.gguf").write_bytes(whole[:cut])
        _refused(tmp_path / "cut.gguf", out, match)


def test_unsupported_models_are_refused_with_the_reason(tmp_path):
    out = tmp_path / "out"
    cases = [
        (tiny_metadata(**{"general.architecture": "qwen2"}), None, "architecture 'qwen2' is not supported"),
        (tiny_metadata(**{"tokenizer.ggml.model": "bert"}), None, "tokenizer model 'bert' is not supported"),
        (tiny_metadata(**{"tokenizer.ggml.model": None}), None, "has no tokenizer"),
        (tiny_metadata(**{"tokenizer.ggml.pre": "qwen2"}), None, "pre-tokenizer 'qwen2' is not supported"),
        (tiny_metadata(**{"llama.expert_count": 8}), None, "mixture-of-experts"),
        (None, {"blk.0.ffn_up.weight": (Q5_K, FFN, HIDDEN, bytes(FFN * 176))},
         r"cannot read the quantisation Q5_K .*blk\.0\.ffn_up"),
        # MLX would silently drop a tensor of a type it does not know.
        (None, {"blk.0.ffn_up.weight": (TQ1_0, FFN, HIDDEN, bytes(FFN * 54))}, "cannot read the quantisation TQ1_0"),
        (None, {"blk.0.attn_mystery.weight": (F32, None, 4, bytes(16))},
         "unexpected tensor 'blk.0.attn_mystery.weight'"),
        (None, {"blk.1.ffn_norm.weight": (F32, None, 8, bytes(32))},
         r"blk.1.ffn_norm.weight has shape \(8,\), expected \(256,\)"),
        (tiny_metadata(**{"llama.block_count": 3}), None, "tensors are missing: blk.2.attn_norm.weight"),
    ]  # fmt: skip
    for i, (metadata, extra, match) in enumerate(cases):
        path = tmp_path / f"case{i}.gguf"
        tiny_llama(path, metadata=metadata, extra_tensors=extra)
        _refused(path, out, match)


def test_k_quants_are_dequantised_to_float16(tmp_path):
    from mlx import nn

    reference = tiny_llama(tmp_path / "k.gguf", k_quant=True)
    with pytest.warns(UserWarning, match="2 tensors in Q4_K are dequantised to float16"):
        out = convert_gguf(tmp_path / "k.gguf", tmp_path / "out")
    config = json.loads((out / "config.json").read_text())
    assert "model.layers.0.mlp.up_proj" not in config["quantization"]
    model, _ = assert_same_model(out, reference)
    up = model.model.layers[0].mlp.up_proj
    assert type(up) is nn.Linear and up.weight.dtype == mx.float16
    assert np.array_equal(np.array(up.weight.astype(mx.float32)), reference["model.layers.0.mlp.up_proj.weight"])
