"""What exists only for a CPU, behind one seam. Nothing here changes the Metal path.

  start(script=None)    once at process start (the CLI does it): re-execute with a fast BLAS
                        preloaded on Linux, and keep freed memory in the heap (blas.py)
  describe()            the start-up line: which device and which BLAS compute
  training()            the context around a training loop: freed memory kept (a no-op after start)
  dequantised(model, setting)          (model, done?): a quantised base computing with its float32
                                       values on a CPU (dequantize.py); the model as it is on a GPU
  load_for_inference(path, adapter, setting)   mlx-lm's load with the same rule
  float32(model, setting)     (model, done?): a float16/bfloat16 model computing in float32 on a CPU
  is_quantised(model)

The loss uses kernels.exp_shifted(x, shift): exp(x - shift) for x <= shift, the fast exp on a
CPU and mx.exp on a GPU (kernels.py loads MLX, so this package does not import it).
"""

from contextlib import contextmanager

# Only blas.py at import: start() runs before the process re-executes itself, so importing this
# package must not load MLX (the functions that compute import it when called).
from derta_mlx.accel.blas import describe, keep_freed_memory, reexec_with_openblas

__all__ = ["start", "describe", "training", "dequantised", "float32", "load_for_inference", "is_quantised"]


def start(script=None, argv=None) -> None:
    """At process start: on Linux, restart once with a fast BLAS preloaded (`python -m derta_mlx`
    with `argv`, by default this process's arguments, or `python SCRIPT` for a benchmark),
    keeping freed memory."""
    reexec_with_openblas(script, argv)


@contextmanager
def training():
    """Around a training loop. The CLI's start already did this; library callers get it here."""
    keep_freed_memory()
    yield


def dequantised(model, setting: str = "auto"):
    """(model, dequantised?): float32 base weights when `setting` (auto: on a CPU) asks for them."""
    from derta_mlx.accel.dequantize import dequantize_if_wanted

    return dequantize_if_wanted(model, setting)


def float32(model, setting: str = "auto"):
    """(model, upcast?): half-precision weights computing in float32 when `setting` (auto: on a CPU) asks."""
    from derta_mlx.accel.dequantize import float32_if_wanted

    return float32_if_wanted(model, setting)


def is_quantised(model) -> bool:
    from derta_mlx.accel.dequantize import is_quantised as quantised

    return quantised(model)


def load_for_inference(path, adapter_path=None, dequantize: str = "auto"):
    """(model, tokenizer, dequantised?) through mlx-lm, with `dequantised`'s rule, in eval mode."""
    from derta_mlx.accel.dequantize import load_for_inference as load

    return load(path, adapter_path, dequantize)

