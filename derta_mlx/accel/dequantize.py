"""Which weights compute: on a CPU, a quantised base runs with its dequantised float32 values.

MLX's 4-bit CPU kernels are far slower than float32 matmul through a fast BLAS
(`python bench/matmul.py` measures both; docs/speed.md). Dequantising gives exactly the values the 4-bit kernels multiply
with, so training, probing and evaluation see the same model, and an adapter learned on the
float32 copy is valid for the 4-bit model. Never on a GPU: the Metal path keeps its kernels.
"""

import mlx.core as mx
import mlx.nn as nn

from derta_mlx.common.errors import UserError
from derta_mlx.common.remote_code import check_no_remote_code

SETTINGS = ("auto", "yes", "no")


def is_quantised(model) -> bool:
    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())


def wants_dequantize(setting: str) -> bool:
    """auto: on a CPU only; yes/no: as told."""
    if setting not in SETTINGS:
        raise ValueError(f"dequantize must be one of {', '.join(SETTINGS)}, not {setting!r}")
    if setting != "auto":
        return setting == "yes"
    return mx.default_device() == mx.cpu


def dequantize_if_wanted(model, setting: str = "auto"):
    """(model, dequantised?): the model with float32 base weights when that is the setting."""
    from mlx_lm.utils import dequantize_model

    if not (is_quantised(model) and wants_dequantize(setting)):
        return model, False
    model = dequantize_model(model)
    model.set_dtype(mx.float32)
    return model, True


def float32_if_wanted(model, setting: str = "auto"):
    """(model, upcast?): a float16/bfloat16 model computes in float32 on a CPU, where only float32
    matmul has a fast BLAS; the weights keep exactly their values."""
    from mlx.utils import tree_flatten

    half = any(v.dtype in (mx.float16, mx.bfloat16) for _, v in tree_flatten(model.parameters()))
    if not half or is_quantised(model) or not wants_dequantize(setting):  # quantised: see dequantize_if_wanted
        return model, False
    model.set_dtype(mx.float32)
    return model, True


def load_for_inference(path, adapter_path=None, dequantize: str = "auto"):
    """(model, tokenizer, dequantised?) through mlx-lm, base dequantised before the adapter is
    added (LoRA layers keep their own float32 weights), in eval mode."""
    from mlx_lm import load
    from mlx_lm.tuner.utils import load_adapters

    check_no_remote_code(path)
    model, tokenizer = load(str(path), trust_remote_code=False, tokenizer_config={"trust_remote_code": False})
    model, dequantised = dequantize_if_wanted(model, dequantize)
    if adapter_path:
        try:
            model = load_adapters(model, str(adapter_path))
        except ValueError as exc:  # mlx-lm's shape or missing-layer errors
            raise UserError(f"{adapter_path}: the adapter does not fit the model {path} (trained on another base "
                            f"model?): {str(exc).splitlines()[0][:200]}") from None
    model.eval()
    return model, tokenizer, dequantised
