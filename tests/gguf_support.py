"""A minimal GGUF writer for the tests: small files built by hand, so every case is checked against
numbers the test itself chose (the format is a short header and raw blocks)."""

import struct

import numpy as np

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
