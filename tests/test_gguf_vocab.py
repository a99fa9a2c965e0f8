"""Tokenizers built from GGUF vocabularies (SentencePiece, LLaMA-3 and Tekken byte-level) encode
like the originals; the slow tests convert the embedded SmolLM2 (98 MB) once and load it in mlx-lm.
"""

import json

import mlx.core as mx
import pytest

from derta_mlx.models.gguf.convert import convert_gguf
from derta_mlx.models.gguf.tokenizer import LLAMA3_PATTERN, build_tokenizer

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
