"""The GGUF header, read before MLX loads a file: metadata, tensor names, shapes and types.

It is read with llama.cpp's own reader (the `gguf` package's GGUFReader, which maps the file and
reads no tensor data). A file it cannot parse, or whose tensor types MLX cannot read, is refused
here with its name and the reason, before MLX reads gigabytes (convert.py converts what passes).
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import mlx.core as mx
import numpy as np
from gguf import GGUFReader, GGUFValueType

KEPT_TYPES = {"F32", "F16", "Q4_0", "Q4_1", "Q8_0"}
DEQUANTISED_TYPES = {"BF16", "Q2_K", "Q4_K", "Q6_K"}  # MLX turns these into float16


class GGUFError(ValueError):
    """A GGUF file that cannot be converted; the message names the file and the reason."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple  # GGUF order: the innermost (contiguous) dimension first
    ggml_type: str


@dataclass
class GGUFHeader:
    version: int
    metadata: dict = field(default_factory=dict)  # scalars and strings only; arrays are skipped
    tensors: list = field(default_factory=list)


# --- header --------------------------------------------------------------------------------


def read_header(path: Union[str, Path]) -> GGUFHeader:
    """The GGUF header (metadata scalars and strings, the tensor table) without the tensors."""
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such file")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file (no 'GGUF' magic at the start)")
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, IndexError, KeyError... on a bad file
        raise GGUFError(f"{path}: the header is truncated or corrupt (incomplete download?): {exc}") from None
    if reader.byte_order == "S":  # the reader swapped bytes: MLX reads little-endian files only
        raise GGUFError(f"{path}: big-endian GGUF files are not supported")
    version = int(reader.fields["GGUF.version"].contents())
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (only 2 and 3)")
    header = GGUFHeader(version)
    for name, entry in reader.fields.items():
        if not name.startswith("GGUF.") and entry.types and entry.types[0] != GGUFValueType.ARRAY:
            header.metadata[name] = entry.contents()
    for tensor in reader.tensors:
        header.tensors.append(TensorInfo(tensor.name, tuple(int(d) for d in tensor.shape), tensor.tensor_type.name))
    return header


def check_tensor_types(header: GGUFHeader, path: Path) -> None:
    by_type = {}
    for info in header.tensors:
        by_type.setdefault(info.ggml_type, []).append(info.name)
    unsupported = sorted(set(by_type) - KEPT_TYPES - DEQUANTISED_TYPES)
    if unsupported:
        found = "; ".join(f"{t} ({len(by_type[t])} tensors, e.g. {by_type[t][0]})" for t in unsupported)
        raise GGUFError(
            f"{path}: MLX cannot read the quantisation {found}. Supported: Q4_0, Q4_1 and Q8_0 (kept "
            "quantised), F16, F32, and BF16, Q2_K, Q4_K, Q6_K (loaded as float16). Re-quantise with "
            "llama.cpp's llama-quantize to Q4_0 or Q8_0, or convert the original Hugging Face weights "
            "with mlx_lm.convert."
        )
    dequantised = sorted(set(by_type) & DEQUANTISED_TYPES)
    if dequantised:
        count = sum(len(by_type[t]) for t in dequantised)
        warnings.warn(
            f"{path}: {count} tensors in {', '.join(dequantised)} are dequantised to float16 by MLX; "
            "the converted model is larger than the GGUF file",
            stacklevel=3,
        )


def metadata_value(metadata: dict, key: str, path: Path, default=None):
    """A scalar metadata value as a Python value (MLX gives numbers as 0-d arrays)."""
    if key not in metadata:
        if default is not None:
            return default
        raise GGUFError(f"{path}: metadata key {key!r} is missing")
    value = metadata[key]
    if isinstance(value, mx.array):
        if value.ndim:
            values = set(value.tolist())
            if len(values) != 1:
                raise GGUFError(f"{path}: {key} differs between layers ({sorted(values)}); not supported")
            return values.pop()
        if value.dtype == mx.float32:  # 1e-5, not 9.999999747378752e-06, in config.json
            return float(str(np.float32(value.item())))
        return value.item()
    return value
