"""GGUF -> mlx-lm conversion: the embedded SmolLM2 answers "Paris"; bad files are refused."""

import json

import mlx.core as mx
import numpy as np
import pytest

from derta_mlx.assets import SMOLLM2_GGUF, asset_path
from derta_mlx.gguf import GGUFError, convert_gguf, permute_rows, unpermute_rows


def test_unpermute_inverts_llama_cpp_permutation():
    original = mx.arange(12 * 64 * 3).reshape(12 * 64 // 4, 12)  # 192 rows
    for heads in (3, 6, 12):
        permuted = permute_rows(original, heads)
        assert not np.array_equal(np.array(permuted), np.array(original))
        assert np.array_equal(np.array(unpermute_rows(permuted, heads)), np.array(original))


def test_bad_files_are_refused_and_leave_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(GGUFError, match="no such file"):
        convert_gguf(tmp_path / "absent.gguf", out)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(GGUFError, match="not a GGUF file"):
        convert_gguf(junk, out)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(asset_path(SMOLLM2_GGUF).read_bytes()[:100_000])
    with pytest.raises(GGUFError, match="cannot read it as GGUF"):
        convert_gguf(truncated, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.gguf", "truncated.gguf"]  # no output left


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GGUFError, match="--overwrite"):
        convert_gguf(asset_path(SMOLLM2_GGUF), out)
    assert (out / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_gguf(asset_path(SMOLLM2_GGUF), tmp_path_factory.mktemp("gguf") / "smollm2")


@pytest.mark.slow
def test_mlx_lm_loads_it_and_answers_paris(converted):
    from mlx_lm import generate, load

    config = json.loads((converted / "config.json").read_text())
    assert config["quantization"]["bits"] == 4 and config["tie_word_embeddings"] is True
    model, tokenizer = load(str(converted))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    assert "Paris" in generate(model, tokenizer, prompt, max_tokens=20)


@pytest.mark.slow
def test_tokenizer_matches_the_gguf_vocabulary(converted):
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(converted)
    _, metadata = mx.load(str(asset_path(SMOLLM2_GGUF)), return_metadata=True)
    vocab = metadata["tokenizer.ggml.tokens"]
    assert tokenizer.encode("123") == [vocab.index("1"), vocab.index("2"), vocab.index("3")]
    assert tokenizer.encode("<|im_start|>user") == [1, vocab.index("user")]
    for text in ["Hello  world\n\ttabs", "caf\u00e9 \u00fcber \U0001F600", "x = [1, 22, 333]"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.eos_token_id == 2 and tokenizer.encode(" sorry") == [22657]
