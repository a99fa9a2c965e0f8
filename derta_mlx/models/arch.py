"""A decoder's shape, read from config.json (or a catalogue entry's `arch` block) without loading
weights: what the memory estimate (train/memory.py) and the catalogue's checks need."""

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from derta_mlx.common.errors import UserError


@dataclass(frozen=True)
class Arch:
    """What memory depends on in a (Llama / Mistral / Mixtral shaped) decoder."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    head_dim: Optional[int] = None  # None: hidden_size / num_heads
    tie_embeddings: bool = False
    bits: Optional[int] = None  # None: float weights
    group_size: int = 64
    embed_bits: Optional[int] = None  # None: as `bits`
    dtype: str = "float16"  # of float weights, or of the quantisation scales
    num_experts: int = 0  # 0: a dense MLP
    experts_per_token: int = 0

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def linears(self) -> dict:
        """key -> (in, out, copies) of every linear layer in one block (mlx-lm's module names)."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.num_heads * self.hd, self.num_kv_heads * self.hd
        out = {"self_attn.q_proj": (h, q, 1), "self_attn.k_proj": (h, kv, 1), "self_attn.v_proj": (h, kv, 1),
               "self_attn.o_proj": (q, h, 1)}
        if self.num_experts:
            e = self.num_experts
            out.update({"block_sparse_moe.gate": (h, e, 1), "block_sparse_moe.switch_mlp.gate_proj": (h, i, e),
                        "block_sparse_moe.switch_mlp.up_proj": (h, i, e),
                        "block_sparse_moe.switch_mlp.down_proj": (i, h, e)})
        else:
            out.update({"mlp.gate_proj": (h, i, 1), "mlp.up_proj": (h, i, 1), "mlp.down_proj": (i, h, 1)})
        return out

    def params(self) -> int:
        block = sum(a * b * c for a, b, c in self.linears().values()) + 2 * self.hidden_size
        embed = self.vocab_size * self.hidden_size
        return self.num_layers * block + embed * (1 if self.tie_embeddings else 2) + self.hidden_size


def arch_from_config(config: dict, dtype: Optional[str] = None) -> Arch:
    """An Arch from a Hugging Face / mlx-lm config.json."""
    q = config.get("quantization") or {}
    embed_q = q.get("model.embed_tokens")
    return Arch(
        hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"],
        intermediate_size=config["intermediate_size"], num_heads=config["num_attention_heads"],
        num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
        vocab_size=config["vocab_size"], head_dim=config.get("head_dim"),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        bits=q.get("bits"), group_size=q.get("group_size", 64),
        embed_bits=embed_q.get("bits") if isinstance(embed_q, dict) else None,
        dtype=dtype or config.get("torch_dtype") or "float16",
        num_experts=config.get("num_local_experts", 0), experts_per_token=config.get("num_experts_per_tok", 0),
    )


def _safetensors_dtype(path: Path) -> Optional[str]:
    """The dtype of the scales (quantised) or norms (float) in the first weights file's header."""
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        return None
    with open(files[0], "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    for suffix in (".scales", "norm.weight", ".weight"):
        for key, info in header.items():
            if key.endswith(suffix) and isinstance(info, dict):
                return {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}.get(info["dtype"])
    return None


def arch_from_dir(path) -> Arch:
    path = Path(path)
    try:
        return arch_from_config(json.loads((path / "config.json").read_text()), _safetensors_dtype(path))
    except KeyError as exc:
        raise UserError(f"{path}/config.json: no {exc.args[0]}; cannot estimate this model's memory") from None
