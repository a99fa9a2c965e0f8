"""The tokenizer of a GGUF file as a Hugging Face tokenizer.json: byte-level BPE ('gpt2') with
llama.cpp's pre-tokenizer for the file's `tokenizer.ggml.pre`, or SentencePiece BPE ('llama',
LLaMA-2 and Mistral) from the scores."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import mlx.core as mx
import numpy as np

from derta_mlx.common.bpe import split_merges
from derta_mlx.models.gguf.header import GGUFError, metadata_value

# llama.cpp's token types (tokenizer.ggml.token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Byte-level BPE pre-tokenizers by llama.cpp's `tokenizer.ggml.pre` name: the regexes llama.cpp
# splits the text with, one after the other (both matches and the text between are kept), whether
# a pre-token that is a whole vocabulary entry skips the merges, and whether BOS is added when
# the file does not say.
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEKKEN_PATTERN = (  # Mistral-Nemo's tokenizer.json
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEFAULT_PATTERNS = (r"[\p{P}\$\+<=>\^~\|]+", GPT2_PATTERN, r"\p{N}+", r"[0-9][0-9][0-9]")


@dataclass(frozen=True)
class PreTokenizer:
    patterns: tuple
    ignore_merges: bool = False
    add_bos: bool = False


PRE_TOKENIZERS = {
    **dict.fromkeys(("gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais"), PreTokenizer((GPT2_PATTERN,))),
    **dict.fromkeys(  # every digit on its own, then GPT-2's split (SmolLM2, StarCoder)
        ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"),
        PreTokenizer((r"\p{N}", GPT2_PATTERN)),
    ),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3"), PreTokenizer((LLAMA3_PATTERN,), True, True)),
    **dict.fromkeys(("dbrx", "smaug-bpe"), PreTokenizer((LLAMA3_PATTERN,))),
    "tekken": PreTokenizer((TEKKEN_PATTERN,), True, True),
    # No pre-tokenizer recorded (GGUFs from before May 2024): llama.cpp's fallback, with a warning.
    "default": PreTokenizer(_DEFAULT_PATTERNS),
}


# --- tokenizer -----------------------------------------------------------------------------


def _token_types(metadata: dict, n_tokens: int) -> list:
    types = metadata.get("tokenizer.ggml.token_type")
    return types.tolist() if types is not None else [NORMAL] * n_tokens


def _byte_level_model(metadata: dict, tokens: list, path: Path):
    from tokenizers import Regex, decoders, models, pre_tokenizers

    name = metadata.get("tokenizer.ggml.pre", "default")
    if name not in PRE_TOKENIZERS:
        known = ", ".join(sorted(PRE_TOKENIZERS))
        raise GGUFError(f"{path}: pre-tokenizer {name!r} is not supported (supported: {known})")
    pre = PRE_TOKENIZERS[name]
    if pre.patterns == (GPT2_PATTERN,):  # ByteLevel's own regex is GPT-2's
        pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre.patterns == (r"\p{N}", GPT2_PATTERN):  # as SmolLM2's own tokenizer.json says it
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        splits = [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in pre.patterns]
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        pre_tokenizer = pre_tokenizers.Sequence([*splits, byte_level])
    vocab = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
    model = models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=pre.ignore_merges)
    return model, None, pre_tokenizer, decoders.ByteLevel(), pre.add_bos


def _sentencepiece_model(metadata: dict, tokens: list, types: list, unk: Optional[str], path: Path):
    from tokenizers import decoders, models, normalizers

    if "tokenizer.ggml.scores" not in metadata:
        raise GGUFError(f"{path}: a SentencePiece ('llama') vocabulary without tokenizer.ggml.scores")
    scores = np.array(metadata["tokenizer.ggml.scores"].astype(mx.float32))
    vocab = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    # SentencePiece BPE merges the adjacent pair whose concatenation scores highest; only normal
    # pieces take part.
    normal = {token: i for i, token in enumerate(tokens) if types[i] == NORMAL}
    merges = split_merges(normal, lambda piece, left, right: (-scores[normal[piece]], normal[piece]))
    model = models.BPE(
        vocab=vocab, merges=merges,
        unk_token=unk, fuse_unk=True, byte_fallback=True,
    )  # fmt: skip
    # llama.cpp replaces spaces by "▁" and, with add_space_prefix (default on), puts one before
    # the text and after every special token: the "legacy" normaliser of LLaMA-2's tokenizer.json.
    prefix = bool(metadata_value(metadata, "tokenizer.ggml.add_space_prefix", path, default=True))
    steps = [normalizers.Prepend("▁")] if prefix else []
    normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
    decode = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    decoder = decoders.Sequence(decode + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    return model, normalizer, None, decoder, True  # llama.cpp adds BOS for SentencePiece by default


def build_tokenizer(metadata: dict, path: Union[str, Path] = "<gguf>"):
    """A `tokenizers.Tokenizer` and its tokenizer_config.json dict from GGUF metadata."""
    from tokenizers import AddedToken, Tokenizer, processors

    path = Path(path)
    kind = metadata_value(metadata, "tokenizer.ggml.model", path)
    if "tokenizer.ggml.tokens" not in metadata:
        raise GGUFError(f"{path}: the GGUF has no vocabulary (tokenizer.ggml.tokens)")
    tokens = list(metadata["tokenizer.ggml.tokens"])
    types = _token_types(metadata, len(tokens))

    def token(key: str) -> Optional[str]:
        index = metadata.get(f"tokenizer.ggml.{key}_token_id")
        if index is None:
            return None
        index = int(index.item() if isinstance(index, mx.array) else index)
        if not 0 <= index < len(tokens):
            raise GGUFError(f"{path}: tokenizer.ggml.{key}_token_id {index} is outside the vocabulary")
        return tokens[index]

    bos, eos, unk, pad = token("bos"), token("eos"), token("unknown"), token("padding")
    if kind == "gpt2":
        model, normalizer, pre_tokenizer, decoder, default_bos = _byte_level_model(metadata, tokens, path)
    elif kind == "llama":
        parts = _sentencepiece_model(metadata, tokens, types, unk, path)
        model, normalizer, pre_tokenizer, decoder, default_bos = parts
    else:
        raise GGUFError(
            f"{path}: tokenizer model {kind!r} is not supported (only 'gpt2', byte-level BPE, and "
            "'llama', SentencePiece BPE)"
        )

    tokenizer = Tokenizer(model)
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    if pre_tokenizer is not None:
        tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoder
    # Control and unknown tokens are special (matched in text, skipped by decode(skip_special_tokens));
    # user-defined ones are matched whole in text, as llama.cpp does, but are ordinary text.
    specials = [t for t, k in zip(tokens, types) if k in (CONTROL, UNKNOWN)]
    user = [t for t, k in zip(tokens, types) if k == USER_DEFINED]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])

    # transformers 5 ignores add_bos_token for PreTrainedTokenizerFast: BOS/EOS must be added
    # by the tokenizer.json post-processor to be added at all.
    wants_bos = bool(metadata_value(metadata, "tokenizer.ggml.add_bos_token", path, default=default_bos))
    add_bos = wants_bos and bos is not None
    add_eos = bool(metadata_value(metadata, "tokenizer.ggml.add_eos_token", path, default=False)) and eos is not None
    steps = [processors.ByteLevel(trim_offsets=False)] if kind == "gpt2" else []
    if add_bos or add_eos:
        single = " ".join([bos] * add_bos + ["$A"] + [eos] * add_eos)
        pair = " ".join([single, *([bos] * add_bos), "$B", *([eos] * add_eos)])
        ids = [(t, tokenizer.token_to_id(t)) for t in dict.fromkeys([bos] * add_bos + [eos] * add_eos)]
        steps.append(processors.TemplateProcessing(single=single, pair=pair, special_tokens=ids))
    if steps:
        tokenizer.post_processor = processors.Sequence(steps)

    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for key, value in (("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)):
        if value is not None:
            config[key] = value
    config.update(
        add_bos_token=add_bos,
        add_eos_token=add_eos,
        clean_up_tokenization_spaces=False,
        model_max_length=int(metadata_value(metadata, "llama.context_length", path, default=2048)),
    )
    if "tokenizer.chat_template" in metadata:
        config["chat_template"] = metadata["tokenizer.chat_template"]
    return tokenizer, config
