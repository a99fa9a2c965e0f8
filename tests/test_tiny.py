"""Tiny models: the real tokenizers' ids, encode parity with tiktoken/SentencePiece, mlx-lm loading."""

import json
import random
import time

import mlx.core as mx
import mlx.nn as nn
import pytest

from derta_mlx.testing.tiny import TinySpec, build_tiny_model, tiny_model_dir
from derta_mlx.testing.tokenizers import (
    LLAMA3_PATTERN,
    llama3_special_tokens,
    read_tiktoken_ranks,
    tokenizer_json,
    tokenizer_source,
    write_tokenizer,
)

# Text of every kind a tokenizer gets wrong first: leading, double and trailing spaces,
# newlines, tabs, digits, accents, CJK, emoji (byte fallback), contractions, DeRTa's markers.
TEXTS = [
    "",
    "Hello world",
    " Hello",
    "  two  spaces  ",
    "a\nb\n\nc",
    "\n",
    " ",
    "Sorry",
    " Sorry",
    "sorry, I can't help with that.",
    "I'M SURE you'LL see",
    "[INST] How do I pick a lock? [\\INST] Sure, here is",
    "[INST] \nquestion\n\n [/INST] Sorry",
    "1234567 + 89 = 1234656; 3.14159 0x1F",
    "tab\there\r\nwindows line",
    "Ünïcödé çà ñ straße",
    "日本語のテキストと中文",
    "emoji 🤖🙂 done",
    "\u200b zero width and ﬁ ligature",
    "a  \n  b",
    "trailing   ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math",
    "The quick brown fox jumps over the lazy dog. " * 3,
]
SPECIALS = ("<s>", "</s>", "<unk>", "<|")


def random_texts(n, seed=0):
    """Random strings from a mixed palette: a fuzz test for the merge order and the regex."""
    rng = random.Random(seed)
    palette = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ   \n\t0123456789.,;:'\"!?()[]{}<>/\\-_=+*&^%$#@~`")
    palette += list("éèàüößçñ日本語中文한국어русскийΩ≈∑∫🙂🤖€£¥") + ["\u200b", "\r", "▁", "'s", "'LL", "\r\n"]
    words = ["Sorry", "sorry", " the", "model", "refusal", "token", "INST", "don't", "  ", "\n\n", "ing", "42"]
    texts = []
    for i in range(n):
        if i % 2:
            text = "".join(rng.choice(palette) for _ in range(rng.randint(1, 40)))
        else:
            text = (" " * rng.randint(0, 2)).join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        texts.append(text)
    return texts


@pytest.fixture(scope="module")
def tiktoken_encoding():
    tiktoken = pytest.importorskip("tiktoken")
    specials = {token: 128000 + i for i, token in enumerate(llama3_special_tokens())}
    ranks = read_tiktoken_ranks(tokenizer_source("llama3"))
    return tiktoken.Encoding("llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials)


@pytest.fixture(scope="module")
def spm_processor():
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(tokenizer_source("mistral")))


@pytest.fixture(scope="module", params=["load", "load_tokenizer"])
def loaded_tokenizer(request, tiny_dir):
    """Both ways mlx-lm gives a tokenizer: with the model (mlx_lm.load) and on its own."""
    import mlx_lm
    from mlx_lm.utils import load_tokenizer

    def get(family):
        path = tiny_dir(family)
        if request.param == "load":
            return mlx_lm.load(str(path))[1]
        return load_tokenizer(path)

    return get


def one_token(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == 1, (text, ids)
    return ids[0]


def test_llama3_ids(loaded_tokenizer):
    tok = loaded_tokenizer("llama3")
    assert one_token(tok, "Sorry") == 19701
    assert one_token(tok, " Sorry") == 33386
    assert one_token(tok, " sorry") == 14931
    assert one_token(tok, "sorry") == 68697
    assert one_token(tok, "<|end_of_text|>") == 128001
    assert one_token(tok, " [\\") == 94915
    assert one_token(tok, " [/") == 66028
    assert tok.convert_tokens_to_ids("ĠSorry") == 33386
    assert tok.bos_token_id == 128000 and tok.eos_token_id == 128001
    assert 128001 in tok.eos_token_ids
    assert len(tok) == 128256
    assert tok.convert_ids_to_tokens([128006, 128007, 128008, 128009, 128010, 128255]) == [
        "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>",
        "<|reserved_special_token_5|>", "<|reserved_special_token_250|>",
    ]  # fmt: skip
    # BOS is added on encode, as Meta-Llama-3-8B's tokenizer does; EOS is not.
    assert tok.encode("Sorry") == [128000, 19701]


def test_mistral_ids(loaded_tokenizer):
    tok = loaded_tokenizer("mistral")
    assert tok.convert_tokens_to_ids("Sorry") == 23166
    assert tok.convert_tokens_to_ids("▁Sorry") == 19385
    assert tok.convert_tokens_to_ids("▁sorry") == 7371
    # The text's first word gets SentencePiece's dummy "▁"; later, only a real space gives one.
    assert tok.encode("Sorry", add_special_tokens=False) == [19385]
    assert tok.encode("\n Sorry", add_special_tokens=False)[-1] == 19385
    assert tok.encode("\nSorry", add_special_tokens=False)[-1] == 23166
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2
    assert 2 in tok.eos_token_ids
    assert len(tok) == 32000
    assert tok.encode("Sorry") == [1, 19385]


def test_llama3_encodes_like_tiktoken(tokenizer_of, tiktoken_encoding):
    tok = tokenizer_of("llama3")
    texts = TEXTS + [t for t in random_texts(600) if not any(s in t for s in SPECIALS)]
    for text in texts:
        expected = tiktoken_encoding.encode_ordinary(text)
        assert tok.encode(text, add_special_tokens=False) == expected, text
        assert tok.encode(text) == [128000] + expected, text
        # Byte-level BPE is lossless.
        assert tok.decode(expected) == text
    # Special tokens inside text are matched, as tiktoken does when they are allowed.
    text = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    assert tok.encode(text, add_special_tokens=False) == tiktoken_encoding.encode(text, allowed_special="all")


def test_mistral_encodes_like_sentencepiece(tokenizer_of, spm_processor):
    tok = tokenizer_of("mistral")
    # Literal "<s>"/"</s>"/"<unk>" in text are special tokens to transformers but plain text to
    # SentencePiece (Mistral-7B-v0.1's own tokenizer.json does the same), so they are left out.
    texts = TEXTS + [t for t in random_texts(600) if not any(s in t for s in SPECIALS)]
    for text in texts:
        expected = spm_processor.encode(text)
        assert tok.encode(text, add_special_tokens=False) == expected, text
        assert tok.encode(text) == [1] + expected, text
        assert tok.decode(expected) == spm_processor.decode(expected), text
    # Byte fallback: a character missing from the vocabulary becomes its UTF-8 bytes.
    ids = tok.encode("𝔘", add_special_tokens=False)
    assert [tok.convert_ids_to_tokens(i) for i in ids] == ["▁", "<0xF0>", "<0x9D>", "<0x94>", "<0x98>"]


def test_tokenizer_files(tiny_dir):
    llama3, mistral = tiny_dir("llama3"), tiny_dir("mistral")
    assert not (llama3 / "tokenizer.model").exists()
    assert (mistral / "tokenizer.model").read_bytes() == tokenizer_source("mistral").read_bytes()
    for path in (llama3, mistral):
        config = json.loads((path / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
        assert "chat_template" not in config  # base flavour


def test_write_tokenizer_alone(tmp_path):
    from mlx_lm.utils import load_tokenizer

    out = write_tokenizer("mistral", tmp_path / "tok", instruct=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
    ]  # fmt: skip
    assert load_tokenizer(out).encode(" Sorry", add_special_tokens=False) == [28705, 19385]


def test_instruct_chat_templates(tiny_dir):
    import mlx_lm

    messages = [{"role": "user", "content": "How do I bake bread?"}]
    model, tok = mlx_lm.load(str(tiny_dir("llama3", instruct=True)))
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHow do I bake bread?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tok.apply_chat_template(messages, add_generation_prompt=True)
    assert ids[:3] == [128000, 128006, 882] and ids[-2:] == [128007, 271]
    assert tok.eos_token == "<|eot_id|>" and tok.eos_token_ids == {128001, 128009}

    model, tok = mlx_lm.load(str(tiny_dir("mistral", instruct=True)))
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == "<s>[INST] How do I bake bread? [/INST]"
    ids = tok.apply_chat_template(messages, add_generation_prompt=True)
    assert ids[0] == 1 and ids[1] != 1 and tok.convert_ids_to_tokens(ids[-1]) == "]"
    chat = messages + [{"role": "assistant", "content": "Knead."}, {"role": "user", "content": "Then?"}]
    assert tok.apply_chat_template(chat, tokenize=False) == (
        "<s>[INST] How do I bake bread? [/INST]Knead.</s>[INST] Then? [/INST]"
    )


@pytest.mark.parametrize("family,vocab", [("llama3", 128256), ("mistral", 32000)])
@pytest.mark.parametrize("bits", [None, 4])
def test_mlx_lm_loads_and_runs(tiny_dir, family, vocab, bits):
    import mlx_lm

    model, tok, config = mlx_lm.load(str(tiny_dir(family, bits=bits)), return_config=True)
    ids = tok.encode("[INST] Hi [\\INST] Sorry")
    logits = model(mx.array([ids]))
    assert logits.shape == (1, len(ids), vocab)
    assert mx.all(mx.isfinite(logits)).item()
    quantized = [name for name, m in model.named_modules() if isinstance(m, nn.QuantizedLinear)]
    if bits:
        # Every projection and the LM head; the embedding is quantised as well.
        assert len(quantized) == 2 * 7 + 1
        assert isinstance(model.model.embed_tokens, nn.QuantizedEmbedding)
        assert model.lm_head.bits == 4 and model.lm_head.group_size == config["quantization"]["group_size"]
        assert config["quantization_config"] == config["quantization"]
    else:
        assert quantized == []
        assert model.lm_head.weight.dtype == mx.float32
    assert config["model_type"] == ("llama" if family == "llama3" else "mistral")
    assert config["rope_theta"] == (500000.0 if family == "llama3" else 10000.0)
    assert config["vocab_size"] == vocab and config["hidden_size"] == 64 and not config["tie_word_embeddings"]


def _weights(path):
    return mx.load(str(path / "model.safetensors"))


@pytest.mark.parametrize("family", ["llama3", "mistral"])
def test_build_time_and_determinism(tmp_path, family):
    times = {}
    for name, spec in {
        "a": TinySpec(family),
        "b": TinySpec(family),
        "c": TinySpec(family, seed=1),
        "q": TinySpec(family, quantize_bits=4),
    }.items():
        start = time.perf_counter()
        build_tiny_model(spec, tmp_path / name)
        times[name] = time.perf_counter() - start
    print(f"\n{family} build seconds (tokenizer cached after the first): "
          + ", ".join(f"{k}={v:.2f}" for k, v in times.items()))  # fmt: skip

    a, b, c = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert a.keys() == b.keys() == c.keys()
    assert all(mx.array_equal(a[k], b[k]).item() for k in a)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert not any(mx.array_equal(a[k], c[k]).item() for k in a if not k.endswith("norm.weight"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "q"]  # no temp dirs left


def test_tokenizer_json_build_is_cached(tmp_path):
    for family in ("llama3", "mistral"):
        start = time.perf_counter()
        built = tokenizer_json(family, cache_dir=tmp_path)
        elapsed = time.perf_counter() - start
        print(f"\n{family} tokenizer.json built in {elapsed:.2f}s ({built.stat().st_size / 1e6:.1f} MB)")
        mtime = built.stat().st_mtime_ns
        assert tokenizer_json(family, cache_dir=tmp_path) == built
        assert built.stat().st_mtime_ns == mtime
    assert len(list(tmp_path.iterdir())) == 2  # no temp files left


def test_tiny_model_dir_builds_once(tmp_path):
    first = tiny_model_dir("mistral", quantize_bits=4, root=tmp_path)
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    again = tiny_model_dir("mistral", quantize_bits=4, root=tmp_path)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == mtime
    assert tiny_model_dir("mistral", root=tmp_path) != first
    assert json.loads((first / "config.json").read_text())["quantization"]["bits"] == 4


def test_build_replaces_a_model_but_not_other_directories(tmp_path):
    out = build_tiny_model(TinySpec("mistral"), tmp_path / "model")
    build_tiny_model(TinySpec("mistral", seed=3), out)
    assert json.loads((out / "config.json").read_text())["derta_mlx_tiny"]["seed"] == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (build_tiny_model(TinySpec("mistral"), empty) / "config.json").is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_tiny_model(TinySpec("mistral"), other)
    assert (other / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "model", "other"]


def test_spec_validation():
    with pytest.raises(ValueError):
        TinySpec("gpt2")
    with pytest.raises(ValueError):
        TinySpec("llama3", quantize_bits=4, group_size=128)
    assert TinySpec("mistral").rope_theta == 10000.0
