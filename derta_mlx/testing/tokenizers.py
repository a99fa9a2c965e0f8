"""The real LLaMA-3 and Mistral-7B-v0.1 tokenizers as Hugging Face tokenizer.json files, from
files PyPI packages ship (see common/assets.py), encoding exactly like their sources:
  llama3   tiktoken BPE ranks -> byte-level BPE with LLaMA-3's split regex and its 256
           special tokens; BOS (<|begin_of_text|>) is added by the post-processor, as
           Meta-Llama-3-8B's tokenizer.json does.
  mistral  SentencePiece BPE model -> BPE with byte fallback and the "legacy" normaliser
           (prepend "▁", spaces to "▁") of Mistral-7B-v0.1's tokenizer.json; BOS <s> is
           added by the post-processor.
Both declare `tokenizer_class: PreTrainedTokenizerFast` so that transformers loads the
tokenizer.json as it is: transformers 5's LlamaTokenizer would rebuild the pipeline with a
Metaspace pre-tokenizer, which drops SentencePiece's extra "▁" before a leading space.
"""


import base64
import hashlib
import os
import secrets
import shutil
from pathlib import Path

from derta_mlx.common import atomic
from derta_mlx.common.assets import LLAMA3_TIKTOKEN, MISTRAL_SPM, asset_path
from derta_mlx.common.bpe import split_merges

FAMILIES = ("llama3", "mistral")

# Bump when the files written change, so that cached tokenizers and models are rebuilt.
BUILD_VERSION = 3

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_BOS, LLAMA3_EOS, LLAMA3_EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"

# LLaMA-3-Instruct's prompt format: a header per turn, each turn closed by <|eot_id|>.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{{ message['content'] | trim }}{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Mistral-Instruct's format: "[INST] user [/INST]" then the answer and </s>. A system
# message, which v0.1 has no slot for, is put before the first user message.
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set system = namespace(text='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set system.text = message['content'] + '\n\n' %}"
    "{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' + system.text + message['content'] + ' [/INST]' }}{% set system.text = '' %}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('roles are system, user and assistant') }}"
    "{% endif %}"
    "{% endfor %}"
)


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "derta-mlx"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def unique_tmp(final: Path) -> Path:
    # Unique per writer, so that concurrent builds (pytest-xdist) never share a temp name.
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = unique_tmp(dst)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


# --- tokenizer.json builders ----------------------------------------------------------------


def llama3_special_tokens() -> list:
    """Meta-Llama-3's 256 special tokens, in id order from 128000."""
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(251)]
    return [
        LLAMA3_BOS, LLAMA3_EOS, *reserved[0:4], "<|start_header_id|>", "<|end_header_id|>",
        reserved[4], LLAMA3_EOT, *reserved[5:],
    ]  # fmt: skip


def read_tiktoken_ranks(path) -> dict:
    """A tiktoken BPE file: one "base64(token) rank" per line."""
    ranks = {}
    for line in Path(path).read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _build_llama3(source: Path):
    from tokenizers import AddedToken, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    # transformers' converter: byte-level BPE whose merges follow tiktoken's ranks, the split
    # regex, the byte-level decoder. The special tokens and BOS are added here (its keyword for
    # them changed between transformers versions).
    tokenizer = TikTokenConverter(vocab_file=str(source), pattern=LLAMA3_PATTERN).converted()
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in llama3_special_tokens()])
    bos_id = tokenizer.token_to_id(LLAMA3_BOS)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{LLAMA3_BOS} $A",
                pair=f"{LLAMA3_BOS} $A {LLAMA3_BOS} $B",
                special_tokens=[(LLAMA3_BOS, bos_id)],
            ),
        ]
    )
    return tokenizer


def _build_mistral(source: Path):
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    sp = spm.SentencePieceProcessor(model_file=str(source))
    size = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(size)}

    # SentencePiece BPE merges the adjacent pair whose concatenation scores highest; only
    # normal pieces take part (not <unk>, <s>, </s> or the <0xNN> byte pieces).
    def normal(i):
        return not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i))

    pieces = {sp.id_to_piece(i): i for i in range(size) if normal(i)}
    merges = split_merges(pieces, lambda piece, left, right: (-sp.get_score(pieces[piece]), pieces[piece]))
    model = BPE(
        vocab=vocab,
        merges=merges,
        unk_token=sp.id_to_piece(sp.unk_id()),
        fuse_unk=True,
        byte_fallback=True,
    )

    tokenizer = Tokenizer(model)
    # The model's normaliser is "identity" with a dummy prefix and no whitespace removal.
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    specials = [sp.id_to_piece(i) for i in (sp.unk_id(), sp.bos_id(), sp.eos_id())]
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    bos = sp.id_to_piece(sp.bos_id())
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, sp.bos_id())]
    )
    return tokenizer


_BUILDERS = {"llama3": (LLAMA3_TIKTOKEN, _build_llama3), "mistral": (MISTRAL_SPM, _build_mistral)}


def tokenizer_source(family: str) -> Path:
    """The installed file a family's tokenizer is built from."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny model family {family!r}; choose one of {FAMILIES}")
    return asset_path(_BUILDERS[family][0])


def tokenizer_json(family: str, cache_dir=None) -> Path:
    """The built tokenizer.json of a family, cached under its source file's sha256."""
    source = tokenizer_source(family)
    cache_dir = Path(cache_dir) if cache_dir else cache_root() / "tokenizers"
    cached = cache_dir / f"{family}-{sha256_of(source)[:20]}-v{BUILD_VERSION}.json"
    if cached.is_file():
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(cached)
    try:
        _BUILDERS[family][1](source).save(str(tmp))
        os.replace(tmp, cached)
    finally:
        tmp.unlink(missing_ok=True)
    return cached


def _tokenizer_config(family: str, instruct: bool) -> dict:
    if family == "llama3":
        bos, eos = LLAMA3_BOS, (LLAMA3_EOT if instruct else LLAMA3_EOS)
        template = LLAMA3_CHAT_TEMPLATE
    else:
        bos, eos = "<s>", "</s>"
        template = MISTRAL_CHAT_TEMPLATE
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    if family == "mistral":
        config["unk_token"] = "<unk>"
    if instruct:
        config["chat_template"] = template
    return config


def write_tokenizer(family: str, out_dir, instruct: bool = False) -> Path:
    """Write a family's tokenizer files (tokenizer.json, tokenizer_config.json, ...) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_atomic(tokenizer_json(family), out_dir / "tokenizer.json")
    if family == "mistral":
        # The SentencePiece model too, as Mistral-7B-v0.1 ships it (tokenizer.json takes precedence).
        _copy_atomic(tokenizer_source(family), out_dir / "tokenizer.model")
    config = _tokenizer_config(family, instruct)
    atomic.write_json(out_dir / "tokenizer_config.json", config)
    special = {key: config[key] for key in ("bos_token", "eos_token", "unk_token") if key in config}
    atomic.write_json(out_dir / "special_tokens_map.json", special)
    return out_dir


def vocab_size(family: str) -> int:
    """The family's vocabulary size (tokens and special tokens), read from its source file."""
    source = tokenizer_source(family)
    if family == "llama3":
        return len(read_tiktoken_ranks(source)) + len(llama3_special_tokens())
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(source)).get_piece_size()
