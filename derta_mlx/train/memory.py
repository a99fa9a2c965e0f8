"""Will it fit? The peak memory of a LoRA/DoRA training run, estimated without loading weights.

peak = base weights + LoRA (params, grads, AdamW m and v) + activations kept for the backward
pass + max(logits and loss, one block's backward pass) + MLX's buffers. Every term is a named
constant times a shape, so when the training step changes (a chunked loss, a compiled step)
recalibrate the constants with `python bench/memory_fit.py`, which measures the real peak.
"""

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

from derta_mlx.common.errors import UserError
from derta_mlx.models.arch import Arch
from derta_mlx.models.loading import arch_for_model
from derta_mlx.train.config import TrainConfig
from derta_mlx.train.cross_entropy import CHUNK_ELEMENTS

GB = 1e9

# Activations kept per token of every block with adapters, counted in widths of the block's
# arrays (compute dtype): the block input, the norms' outputs and residuals (hidden); q and the
# attention output (heads x head_dim); k and v before and after RoPE; gate, up and their
# swiglu product (intermediate); LoRA's x @ A (rank) for each adapted layer.
KEEP_HIDDEN = 6
KEEP_Q = 3
KEEP_KV = 4
KEEP_INTERMEDIATE = 4
# ... and per block the attention probabilities (batch x heads x length^2, float32).
KEEP_ATTENTION = 1
# Logits, at the loss: the model's output and its gradient, float32 copies of (tokens x
# vocabulary), plus the cast to float32 and its gradient when the compute dtype is 16-bit; and
# the cross-entropy's temporaries, which derta_mlx/train/cross_entropy.py bounds to one piece of
# CHUNK_ELEMENTS logits at a time. Fitted on a CPU (bench/memory_fit.py: 9 configurations within
# -12% and +19%); on Metal the same full-size copies, and fewer piece temporaries (mx.exp has
# one output, the CPU's polynomial exp several): not measured (no Mac here).
LOGIT_FLOAT32_COPIES = {"cpu": 4, "gpu": 4}
LOGIT_PIECE_COPIES = {"cpu": 8, "gpu": 4}
# The loss takes logits only at supervised positions (derta_mlx/models/logits.py); their share depends
# on the data, so the estimate takes the worst case: every position.
SUPERVISED_SHARE = 1.0
# One block's backward: its intermediates and their gradients (twice what a block keeps; under
# checkpointing, the recomputed block) and the attention scores, softmax and their gradient.
WORKSPACE_BLOCKS = 2
ATTENTION_TRANSIENT = 3
# MLX's own buffers, the batch, optimizer temporaries.
WORKSPACE_FIXED = 64e6
# DoRA materialises each adapted weight in float32 (for its norm) and keeps it for backward.
DORA_WEIGHT_COPIES = 1
# macOS lets a Metal process wire about this share of unified memory (the recommended working set).
METAL_USABLE_SHARE = 0.75

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Settings:
    """The training settings memory depends on (from a TrainConfig, see settings_for)."""

    batch_size: int = 4
    max_seq_length: int = 512
    lora_rank: int = 8
    num_layers: int = 16
    lora_keys: Optional[tuple] = None
    dora: bool = False
    grad_checkpoint: bool = False
    grad_accumulation_steps: int = 1
    dequantize: bool = False  # a quantised base trained with float32 weights
    device: str = "cpu"  # "cpu" | "gpu" (Metal)
    supervised_share: float = SUPERVISED_SHARE  # of the batch's positions; from the data when it is known


def settings_for(cfg, device: str) -> Settings:
    """Settings of a TrainConfig on `device` ("cpu" | "gpu"): --dequantize auto means on a CPU."""
    dequantize = cfg.dequantize == "yes" or (cfg.dequantize == "auto" and device == "cpu")
    return Settings(cfg.batch_size, cfg.max_seq_length, cfg.lora_rank, cfg.num_layers,
                    tuple(cfg.lora_keys) if cfg.lora_keys else None, cfg.fine_tune_type == "dora",
                    cfg.grad_checkpoint, cfg.grad_accumulation_steps, dequantize, device)


@dataclass(frozen=True)
class Estimate:
    """Bytes of each part of the peak. The logits are freed before the backward pass reaches the
    blocks, so the peak holds the larger of the two, not both."""

    base_weights: float
    lora: float
    activations: float
    logits: float
    block_backward: float
    other: float
    compute_dtype: str

    @property
    def total(self) -> float:
        return (self.base_weights + self.lora + self.activations + max(self.logits, self.block_backward)
                + self.other)

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def estimate(arch: Arch, s: Settings) -> Estimate:
    dequantised = s.dequantize and arch.bits is not None
    quantised = arch.bits is not None and not dequantised
    compute = "float32" if dequantised else arch.dtype  # what the activations are computed in
    a = DTYPE_BYTES[compute]
    h, L, B = arch.hidden_size, s.max_seq_length, s.batch_size
    embed = arch.vocab_size * h
    n_embed_matrices = 1 if arch.tie_embeddings else 2
    linear = arch.params() - n_embed_matrices * embed - (2 * arch.num_layers + 1) * h
    if quantised:  # packed values plus a scale and a bias per group (the norms stay float)
        sb = DTYPE_BYTES[arch.dtype]
        packed = linear * arch.bits + n_embed_matrices * embed * (arch.embed_bits or arch.bits)
        base = packed / 8 + (linear + n_embed_matrices * embed) / arch.group_size * 2 * sb \
            + (2 * arch.num_layers + 1) * h * sb
    else:
        base = arch.params() * a

    layers = arch.num_layers if s.num_layers < 0 else min(s.num_layers, arch.num_layers)
    keys = arch.linears() if s.lora_keys is None else {k: v for k, v in arch.linears().items() if k in s.lora_keys}
    lora_params = layers * sum(s.lora_rank * (i + o) * c + (o if s.dora else 0) for i, o, c in keys.values())
    # float32 params, grads and AdamW's two moments; accumulation keeps a running sum of grads
    lora = lora_params * 4 * (4 + (1 if s.grad_accumulation_steps > 1 else 0))

    tokens = B * L
    q, kv = arch.num_heads * arch.hd, arch.num_kv_heads * arch.hd
    inter = arch.intermediate_size * max(arch.experts_per_token, 1)
    scores = B * arch.num_heads * L * L * 4
    block = (tokens * (KEEP_HIDDEN * h + KEEP_Q * q + KEEP_KV * kv + KEEP_INTERMEDIATE * inter
                       + len(keys) * s.lora_rank) * a
             + KEEP_ATTENTION * scores)
    # with checkpointing each block keeps only its input and recomputes the rest in backward
    kept = layers * (tokens * h * a if s.grad_checkpoint else block)
    if s.dora:
        kept += layers * DORA_WEIGHT_COPIES * 4 * sum(i * o * c for i, o, c in keys.values())
    cast = 0 if a == 4 else 2 * a + 4  # 16-bit logits, their float32 cast, the gradient back

    logit_count = s.supervised_share * tokens * arch.vocab_size
    logits = (logit_count * (cast + 4 * LOGIT_FLOAT32_COPIES[s.device])
              + min(logit_count, CHUNK_ELEMENTS) * 4 * LOGIT_PIECE_COPIES[s.device])
    block_backward = WORKSPACE_BLOCKS * block + ATTENTION_TRANSIENT * scores
    return Estimate(base, lora, kept, logits, block_backward, WORKSPACE_FIXED, compute)


def estimate_for_config(arch: Arch, cfg, device: str) -> Estimate:
    return estimate(arch, settings_for(cfg, device))


# --- the machine ---------------------------------------------------------------------------------


def current_device() -> str:
    import mlx.core as mx

    return "gpu" if mx.default_device() == mx.gpu else "cpu"


def machine_memory(device: str, memory_gb: Optional[float] = None):
    """(usable bytes, how that was found) for training on `device`, this machine or `memory_gb`."""
    if memory_gb is not None:
        if device == "gpu":
            return memory_gb * GB * METAL_USABLE_SHARE, (
                f"{METAL_USABLE_SHARE:.0%} of {memory_gb:g} GB unified memory (macOS's recommended working set)")
        return memory_gb * GB, f"{memory_gb:g} GB (given)"
    if device == "gpu":
        import mlx.core as mx


        if not mx.metal.is_available():
            raise UserError("no Metal GPU on this machine: give --memory-gb GB to estimate for a Mac")
        info = mx.metal.device_info()
        total = info.get("memory_size", 0)
        usable = info.get("max_recommended_working_set_size") or total * METAL_USABLE_SHARE
        return float(usable), f"Metal recommended working set of {total / GB:.0f} GB unified memory"
    meminfo = _meminfo()
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"], f"available now of {meminfo.get('MemTotal', 0) / GB:.1f} GB RAM (/proc/meminfo)"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return float(total), "physical memory"


def _meminfo() -> dict:
    path = Path("/proc/meminfo")
    lines = path.read_text().splitlines() if path.is_file() else []
    return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in lines if ":" in line)}


# --- what would fit ------------------------------------------------------------------------------


def _candidates(arch: Arch, s: Settings, allow_dequantize_off: bool):
    """Changed settings in the order worth trying; each keeps the earlier changes."""
    if not s.grad_checkpoint:
        s = replace(s, grad_checkpoint=True)
        yield s
    effective = s.batch_size * s.grad_accumulation_steps
    for b in range(s.batch_size - 1, 0, -1):
        if effective % b == 0:
            yield replace(s, batch_size=b, grad_accumulation_steps=effective // b)
    s = replace(s, batch_size=1, grad_accumulation_steps=effective)
    length = s.max_seq_length
    while length > 128:
        length = max(128, length // 2)
        yield replace(s, max_seq_length=length)
    s = replace(s, max_seq_length=length)
    layers = arch.num_layers if s.num_layers < 0 else min(s.num_layers, arch.num_layers)
    while layers > 1:
        layers //= 2
        yield replace(s, num_layers=layers)
    s = replace(s, num_layers=max(layers, 1))
    if allow_dequantize_off and s.dequantize and arch.bits is not None:
        yield replace(s, dequantize=False)


def suggest(arch: Arch, s: Settings, usable: float, allow_dequantize_off: bool = True):
    """(settings, estimate) that fit, or None when nothing does: the first candidate that fits,
    then each earlier sacrifice given back (layers, length, batch, no checkpointing) as far as
    it still fits, so that e.g. --dequantize no does not come with 128 tokens it does not need."""
    found = next((c for c in _candidates(arch, s, allow_dequantize_off) if estimate(arch, c).total <= usable), None)
    if found is None:
        return None
    fits = lambda c: estimate(arch, c).total <= usable  # noqa: E731
    effective = s.batch_size * s.grad_accumulation_steps
    for name, values in (("num_layers", _halvings(s.num_layers if s.num_layers > 0 else arch.num_layers)),
                         ("max_seq_length", _halvings(s.max_seq_length)),
                         ("batch_size", [b for b in range(s.batch_size, 0, -1) if effective % b == 0])):
        for value in values:
            if value <= getattr(found, name):
                break
            change = {name: value}
            if name == "batch_size":
                change["grad_accumulation_steps"] = effective // value
            if name == "num_layers" and value == arch.num_layers and s.num_layers < 0:
                change[name] = -1
            if fits(replace(found, **change)):
                found = replace(found, **change)
                break
    if found.grad_checkpoint and not s.grad_checkpoint and fits(replace(found, grad_checkpoint=False)):
        found = replace(found, grad_checkpoint=False)
    return found, estimate(arch, found)


def _halvings(n: int):
    out = [n]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return out


def default_run_gb(model: str, device: str = "gpu", grad_checkpoint: bool = False) -> Optional[float]:
    """Estimated peak GB of `derta-mlx train --model MODEL` with default settings (and
    `--grad-checkpoint` if asked) on `device`, a Mac by default: the catalogue's "train mem"
    column, the number `train --dry-run --device gpu` gives. None when neither a local
    config.json nor the catalogue describes the model."""
    try:
        arch = arch_for_model(model)
    except UserError:
        return None
    return _default_run_gb(arch, model, device, grad_checkpoint)


def _default_run_gb(arch: Arch, model: str, device: str, grad_checkpoint: bool) -> float:
    cfg = TrainConfig(model=model, grad_checkpoint=grad_checkpoint)
    return estimate(arch, settings_for(cfg, device)).total / GB


def train_memory_label(model: str) -> str:
    """"20 / 12 GB": the default run, then with --grad-checkpoint (see default_run_gb)."""
    try:
        arch = arch_for_model(model)  # read once for both estimates
    except UserError:
        return "?"
    plain, checkpointed = (_default_run_gb(arch, model, "gpu", ckpt) for ckpt in (False, True))
    return f"{plain:.0f} / {checkpointed:.0f} GB" if plain >= 10 else f"{plain:.1f} / {checkpointed:.1f} GB"
