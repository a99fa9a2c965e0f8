"""GGUF -> mlx-lm conversion.

Fast tests build small GGUF files by hand (the format is a short header and raw blocks), so
that every case, including the quantised layouts and the q/k permutation, is checked against
numbers the test itself chose. The slow tests convert the embedded SmolLM2 (98 MB) once.
"""

import json
import struct

import mlx.core as mx
import numpy as np
import pytest

from derta_mlx.models.gguf import convert as gguf
from derta_mlx.models.gguf.convert import (
    GGUFError,
    convert_gguf,
    permute_rows,
    unpermute_rows,
)
from derta_mlx.models.gguf.tokenizer import LLAMA3_PATTERN, build_tokenizer

# --- a minimal GGUF writer ------------------------------------------------------------------

F32, F16, Q4_0, Q8_0, Q4_K, Q5_K, TQ1_0 = 0, 1, 2, 8, 12, 13, 34


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _value(value) -> bytes:
    """Type tag and payload of a metadata value."""
    if isinstance(value, bool):
        return struct.pack("<I?", 7, value)
    if isinstance(value, int):
        return struct.pack("<Ii", 5, value) if value < 0 else struct.pack("<II", 4, value)
    if isinstance(value, float):
        return struct.pack("<If", 6, value)
    if isinstance(value, str):
        return struct.pack("<I", 8) + _string(value)
    if isinstance(value, np.ndarray):
        kind = {np.dtype("float32"): 6, np.dtype("int32"): 5}[value.dtype]
        return struct.pack("<IIQ", 9, kind, value.size) + value.tobytes()
    if isinstance(value, list):  # of strings
        return struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_string(v) for v in value)
    raise TypeError(value)


def write_gguf(path, metadata: dict, tensors: dict) -> None:
    """tensors: name -> (ggml type, rows, cols, raw bytes); GGUF lists the innermost dim first."""
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    header += b"".join(_string(k) + _value(v) for k, v in metadata.items())
    data = b""
    for name, (kind, rows, cols, raw) in tensors.items():
        dims = (cols,) if rows is None else (cols, rows)
        header += _string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, kind, len(data))
        data += raw + b"\0" * (-len(raw) % 32)
    header += b"\0" * (-len(header) % 32)  # the data section is aligned to 32 bytes
    path.write_bytes(header + data)


def q8_0(rows: int, cols: int, rng):
    """Random Q8_0 blocks (f16 scale, 32 int8) and the float32 matrix they stand for."""
    d = rng.uniform(0.002, 0.02, (rows, cols // 32)).astype(np.float16)
    q = rng.integers(-127, 128, (rows, cols // 32, 32), dtype=np.int8)
    raw = b"".join(d[r, b].tobytes() + q[r, b].tobytes() for r in range(rows) for b in range(cols // 32))
    return raw, (q.astype(np.float32) * d[..., None].astype(np.float32)).reshape(rows, cols)


def q4_0(rows: int, cols: int, rng):
    """Random Q4_0 blocks: f16 scale, then 16 bytes whose low nibbles are weights 0..15 and
    high nibbles weights 16..31, each (q - 8) * scale."""
    d = rng.uniform(0.005, 0.05, (rows, cols // 32)).astype(np.float16)
    q = rng.integers(0, 16, (rows, cols // 32, 32), dtype=np.uint8)
    packed = q[..., :16] | (q[..., 16:] << 4)
    raw = b"".join(d[r, b].tobytes() + packed[r, b].tobytes() for r in range(rows) for b in range(cols // 32))
    return raw, ((q.astype(np.float32) - 8) * d[..., None].astype(np.float32)).reshape(rows, cols)


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute, as llama.cpp applies it to q and k."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --- a tiny synthetic LLaMA ----------------------------------------------------------------

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN = 256, 2, 4, 2, 64, 512  # K-quant rows need 256s
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_level_vocab():
    """A small byte-level BPE vocabulary: specials, the 256 byte symbols, a few merges."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    merges = ["h e", "l l", "he ll", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"]
    tokens = SPECIALS + chars + [m.replace(" ", "") for m in merges]
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    return tokens, types, merges


def tiny_metadata(**overrides) -> dict:
    tokens, types, merges = byte_level_vocab()
    metadata = {
        "general.architecture": "llama",
        "llama.block_count": LAYERS,
        "llama.context_length": 512,
        "llama.embedding_length": HIDDEN,
        "llama.feed_forward_length": FFN,
        "llama.attention.head_count": HEADS,
        "llama.attention.head_count_kv": KV_HEADS,
        "llama.rope.dimension_count": HEAD_DIM,
        "llama.rope.freq_base": 500000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array(types, np.int32),
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}",
    }
    metadata.update(overrides)
    return {k: v for k, v in metadata.items() if v is not None}


def q4_k_pattern(rows: int, cols: int):
    """Q4_K blocks (256 weights: f16 d, f16 dmin, 12 bytes of 6-bit sub-scales and mins, 128
    bytes of nibbles) chosen so that every weight is d * 1 * nibble: in each 64 weights, 32
    times the low nibble 1, then 32 times the high nibble 2."""
    d = np.float16(1 / 64)
    block = d.tobytes() + np.float16(0).tobytes() + bytes([1] * 12) + bytes([0x21] * 128)
    row = np.tile(np.repeat(np.float32([1, 2]), 32), cols // 64) * np.float32(d)
    return block * (rows * cols // 256), np.tile(row, (rows, 1))


def tiny_llama(path, seed: int = 0, metadata=None, extra_tensors=None, k_quant=False):
    """Write a 2-layer LLaMA GGUF the way llama.cpp would (q/k rows permuted, mixed types) and
    return the Hugging Face-layout float32 weights it stands for; k_quant: ffn_up in Q4_K."""
    rng = np.random.default_rng(seed)
    metadata = metadata or tiny_metadata()
    vocab = len(metadata["tokenizer.ggml.tokens"])
    tensors, reference = {}, {}

    def quantised(gguf_name, hf_name, rows, cols, kind, heads=None):
        raw, w = (q4_0 if kind == Q4_0 else q8_0)(rows, cols, rng)
        reference[hf_name] = w
        if heads:  # permute the rows (whole blocks) as llama.cpp's converter does
            row_bytes = len(raw) // rows
            blocks = np.frombuffer(raw, np.uint8).reshape(rows, row_bytes)
            raw = llama_cpp_permute(blocks, heads).tobytes()
        tensors[gguf_name] = (kind, rows, cols, raw)

    def plain(gguf_name, hf_name, shape, kind=F32):
        w = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        dtype = np.float32 if kind == F32 else np.float16
        reference[hf_name] = w.astype(dtype).astype(np.float32)
        rows, cols = (None, shape[0]) if len(shape) == 1 else shape
        tensors[gguf_name] = (kind, rows, cols, w.astype(dtype).tobytes())

    quantised("token_embd.weight", "model.embed_tokens.weight", vocab, HIDDEN, Q8_0)
    for i in range(LAYERS):
        blk, hf = f"blk.{i}.", f"model.layers.{i}."
        plain(blk + "attn_norm.weight", hf + "input_layernorm.weight", (HIDDEN,))
        quantised(blk + "attn_q.weight", hf + "self_attn.q_proj.weight", HEADS * HEAD_DIM, HIDDEN, Q4_0, HEADS)
        kv = KV_HEADS * HEAD_DIM
        quantised(blk + "attn_k.weight", hf + "self_attn.k_proj.weight", kv, HIDDEN, Q4_0, KV_HEADS)
        quantised(blk + "attn_v.weight", hf + "self_attn.v_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN, Q8_0)
        quantised(blk + "attn_output.weight", hf + "self_attn.o_proj.weight", HIDDEN, HEADS * HEAD_DIM, Q4_0)
        plain(blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight", (HIDDEN,))
        quantised(blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight", FFN, HIDDEN, Q4_0)
        quantised(blk + "ffn_up.weight", hf + "mlp.up_proj.weight", FFN, HIDDEN, Q4_0)
        if k_quant:
            raw, reference[hf + "mlp.up_proj.weight"] = q4_k_pattern(FFN, HIDDEN)
            tensors[blk + "ffn_up.weight"] = (Q4_K, FFN, HIDDEN, raw)
        plain(blk + "ffn_down.weight", hf + "mlp.down_proj.weight", (HIDDEN, FFN), F16)
    plain("output_norm.weight", "model.norm.weight", (HIDDEN,))
    plain("output.weight", "lm_head.weight", (vocab, HIDDEN), F16)
    tensors.update(extra_tensors or {})
    write_gguf(path, metadata, tensors)
    return reference


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
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GGUFError, match="already exists and is not empty.*--overwrite"):
        convert_gguf(blob, out)
    assert (out / "keep.txt").read_text() == "mine"
    assert convert_gguf(blob, out, overwrite=True) == out
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", blob.name]  # no temporaries left
    # A folder that holds the GGUF itself is never replaced.
    (out / blob.name).write_bytes(blob.read_bytes())
    with pytest.raises(GGUFError, match="replacing it would delete the GGUF file"):
        convert_gguf(out / blob.name, out, overwrite=True)


def test_a_failed_write_keeps_the_old_directory(tmp_path, monkeypatch):
    tiny_llama(tmp_path / "tiny.gguf")
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.mx, "save_safetensors", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_gguf(tmp_path / "tiny.gguf", out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
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


# --- tokenizers ----------------------------------------------------------------------------

TEXTS = [
    "Hello world", " leading space", "two  spaces\tand\ttabs\n\nnewlines", "x = [1, 22, 333] 4567",
    "caf\u00e9 \u00fcber na\u00efve", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "emoji \U0001F600!",
    "I'm sorry, I can't help with that.", "trailing   ",
]  # fmt: skip


def test_sentencepiece_vocabulary_encodes_like_sentencepiece():
    """A 'llama' (SentencePiece) GGUF vocabulary, made from Mistral-7B-v0.1's tokenizer.model."""
    import sentencepiece as spm

    from derta_mlx.common.assets import MISTRAL_SPM, asset_path

    sp = spm.SentencePieceProcessor(model_file=str(asset_path(MISTRAL_SPM)))
    size = sp.get_piece_size()

    def kind(i):  # llama.cpp's convert_hf_to_gguf token types
        checks = ((sp.is_unknown, 2), (sp.is_control, 3), (sp.is_byte, 6), (sp.is_unused, 5))
        return next((number for check, number in checks if check(i)), 1)

    metadata = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(size)],
        "tokenizer.ggml.scores": mx.array([sp.get_score(i) for i in range(size)]),
        "tokenizer.ggml.token_type": mx.array([kind(i) for i in range(size)]),
        "tokenizer.ggml.bos_token_id": mx.array(1), "tokenizer.ggml.eos_token_id": mx.array(2),
        "tokenizer.ggml.unknown_token_id": mx.array(0), "tokenizer.ggml.add_bos_token": mx.array(True),
    }  # fmt: skip
    tokenizer, config = build_tokenizer(metadata)
    assert config["bos_token"] == "<s>" and config["add_bos_token"] is True
    for text in TEXTS:
        assert tokenizer.encode(text).ids == [1] + sp.encode(text), text
        assert tokenizer.decode(tokenizer.encode(text).ids) == sp.decode(sp.encode(text)), text
    assert tokenizer.encode("</s>").ids == [1, 2]


def byte_level_gguf_vocab(ranks: dict):
    """Tokens and merges as llama.cpp writes a byte-level BPE vocabulary, from tiktoken ranks.

    Tokens are GPT-2's printable stand-ins for the bytes. tiktoken merges the adjacent pair whose
    concatenation has the lowest rank, so every split of every token, ranked by the token, is a merge.
    """
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    char = {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}

    def text(token: bytes) -> str:
        return "".join(char[b] for b in token)

    tokens = [text(token) for token, _ in sorted(ranks.items(), key=lambda item: item[1])]
    merges = sorted(
        (rank, ranks[token[:cut]], text(token[:cut]), text(token[cut:]))
        for token, rank in ranks.items()
        for cut in range(1, len(token))
        if token[:cut] in ranks and token[cut:] in ranks
    )
    return tokens, [f"{left} {right}" for _, _, left, right in merges]


@pytest.mark.slow
def test_llama3_vocabulary_encodes_like_tiktoken():
    """A 'gpt2' GGUF vocabulary with pre 'llama-bpe' (LLaMA-3), from llama-models' tiktoken file."""
    import tiktoken

    from derta_mlx.testing import tokenizers as tiny

    ranks = tiny.read_tiktoken_ranks(tiny.tokenizer_source("llama3"))
    tokens, merges = byte_level_gguf_vocab(ranks)
    specials = tiny.llama3_special_tokens()
    metadata = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
        "tokenizer.ggml.tokens": tokens + specials, "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.token_type": mx.array([1] * len(tokens) + [3] * len(specials)),
        "tokenizer.ggml.bos_token_id": mx.array(128000), "tokenizer.ggml.eos_token_id": mx.array(128009),
    }  # fmt: skip
    tokenizer, config = build_tokenizer(metadata)
    assert config["add_bos_token"] is True  # llama.cpp's default for LLaMA-3

    reference = tiktoken.Encoding("llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                  special_tokens={t: len(tokens) + i for i, t in enumerate(specials)})  # fmt: skip
    for text in TEXTS + ["<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"]:
        assert tokenizer.encode(text).ids == [128000] + reference.encode(text, allowed_special="all"), text
        assert tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=False) == "<|begin_of_text|>" + text


@pytest.mark.slow
def test_tekken_vocabulary_encodes_like_tiktoken():
    """A 'gpt2' GGUF vocabulary with pre 'tekken' (Mistral-Nemo), from mistral-common's tekken file."""
    import base64
    from importlib import metadata as distribution

    import tiktoken

    path = distribution.distribution("mistral-common").locate_file("mistral_common/data/tekken_240718.json")
    tekken = json.loads(path.read_text())
    n_special = tekken["config"]["default_num_special_tokens"]
    entries = tekken["vocab"][: tekken["config"]["default_vocab_size"] - n_special]
    ranks = {base64.b64decode(e["token_bytes"]): e["rank"] for e in entries}
    tokens, merges = byte_level_gguf_vocab(ranks)
    specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"] + [f"<SPECIAL_{i}>" for i in range(5, n_special)]
    metadata = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "tekken",
        "tokenizer.ggml.tokens": specials + tokens, "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.token_type": mx.array([3] * n_special + [1] * len(tokens)),
        "tokenizer.ggml.bos_token_id": mx.array(1), "tokenizer.ggml.eos_token_id": mx.array(2),
    }  # fmt: skip
    tokenizer, _ = build_tokenizer(metadata)
    pattern = tekken["config"]["pattern"]
    reference = tiktoken.Encoding("tekken", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    for text in TEXTS + ["Ünïcödé CamelCaseWords and snake_case/paths"]:
        assert tokenizer.encode(text).ids == [1] + [n_special + i for i in reference.encode(text)], text
    assert tokenizer.encode("[INST]Hi[/INST]").ids[:2] == [1, 3] and tokenizer.encode("[INST]Hi[/INST]").ids[-1] == 4


# --- the embedded SmolLM2 (slow) -----------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from derta_mlx.common.assets import SMOLLM2_GGUF, asset_path

    return convert_gguf(asset_path(SMOLLM2_GGUF), tmp_path_factory.mktemp("gguf") / "smollm2")


@pytest.mark.slow
def test_mlx_lm_loads_it_and_answers_paris(converted):
    from mlx_lm import generate, load

    config = json.loads((converted / "config.json").read_text())
    assert config["quantization"]["bits"] == 4 and config["tie_word_embeddings"] is True
    assert config["quantization"]["model.embed_tokens"]["bits"] == 8  # SmolLM2's token_embd is Q8_0
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["rope_theta"]) == (9, 3, 100000.0)
    tokenizer_config = json.loads((converted / "tokenizer_config.json").read_text())
    assert tokenizer_config["add_bos_token"] is False
    assert "<|im_start|>assistant" in tokenizer_config["chat_template"]
    assert json.loads((converted / "special_tokens_map.json").read_text())["eos_token"] == "<|im_end|>"
    model, tokenizer = load(str(converted))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )
    assert "Paris" in generate(model, tokenizer, prompt, max_tokens=20)


@pytest.mark.slow
def test_tokenizer_matches_the_gguf_vocabulary(converted):
    from mlx_lm.utils import load_tokenizer

    from derta_mlx.common.assets import SMOLLM2_GGUF, asset_path

    tokenizer = load_tokenizer(converted)
    _, metadata = mx.load(str(asset_path(SMOLLM2_GGUF)), return_metadata=True)
    vocab = {token: i for i, token in enumerate(metadata["tokenizer.ggml.tokens"])}
    assert tokenizer.encode("123") == [vocab["1"], vocab["2"], vocab["3"]]  # digits one by one
    assert tokenizer.encode(" 22") == [vocab["Ġ"], vocab["2"], vocab["2"]]
    assert tokenizer.encode("<|im_start|>user") == [1, vocab["user"]]
    assert tokenizer.encode(" sorry") == [vocab["Ġsorry"]]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 2)
    for text in TEXTS:
        assert tokenizer.decode(tokenizer.encode(text)) == text
