"""The GGUF header, read before MLX loads a file: metadata, tensor names, shapes and types.

A file this cannot parse, or whose tensor types MLX cannot read, is refused here with its name
and the reason, before MLX reads gigabytes (see gguf.py, which converts what passes).
"""

import mmap
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import mlx.core as mx
import numpy as np

GGML_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
    24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0",
    35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip
KEPT_TYPES = {"F32", "F16", "Q4_0", "Q4_1", "Q8_0"}
DEQUANTISED_TYPES = {"BF16", "Q2_K", "Q4_K", "Q6_K"}  # MLX turns these into float16

# GGUF metadata value types: fixed sizes, 8 = string, 9 = array.
_VALUE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_VALUE_FORMATS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip

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
    """Parse a GGUF header (metadata scalars and the tensor table) without reading the tensors."""
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such file")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file (no 'GGUF' magic at the start)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse_header(data, path)


def _parse_header(data, path: Path) -> GGUFHeader:
    pos = 4

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise GGUFError(f"{path}: the header is truncated (incomplete download or corrupt file)")
        value = struct.unpack_from(fmt, data, pos)[0]
        pos += size
        return value

    def string() -> str:
        nonlocal pos
        size = take("<Q")
        if pos + size > len(data):
            raise GGUFError(f"{path}: the header is truncated (incomplete download or corrupt file)")
        raw = bytes(data[pos : pos + size])
        pos += size
        return raw.decode("utf-8", errors="replace")

    def skip_array():
        nonlocal pos
        kind, count = take("<I"), take("<Q")
        if kind in _VALUE_SIZES:
            pos += _VALUE_SIZES[kind] * count
        elif kind == 8:
            for _ in range(count):
                size = take("<Q")  # not `pos += take(...)`: that adds to the old pos
                pos += size
        elif kind == 9:
            for _ in range(count):
                skip_array()
        else:
            raise GGUFError(f"{path}: corrupt header (unknown metadata value type {kind})")
        if pos > len(data):
            raise GGUFError(f"{path}: the header is truncated (incomplete download or corrupt file)")

    version = take("<I")
    if version >= 1 << 16:
        raise GGUFError(f"{path}: big-endian GGUF files are not supported")
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (only 2 and 3)")
    header = GGUFHeader(version)
    n_tensors, n_kv = take("<Q"), take("<Q")
    for _ in range(n_kv):
        key, kind = string(), take("<I")
        if kind in _VALUE_FORMATS:
            header.metadata[key] = take(_VALUE_FORMATS[kind])
        elif kind == 8:
            header.metadata[key] = string()
        elif kind == 9:
            skip_array()
        else:
            raise GGUFError(f"{path}: corrupt header (unknown metadata value type {kind} for {key!r})")
    for _ in range(n_tensors):
        name, n_dims = string(), take("<I")
        if n_dims > 4:
            raise GGUFError(f"{path}: corrupt header (tensor {name!r} has {n_dims} dimensions)")
        shape = tuple(take("<Q") for _ in range(n_dims))
        kind = take("<I")
        take("<Q")  # offset into the data section; MLX checks it against the file size
        header.tensors.append(TensorInfo(name, shape, GGML_TYPES.get(kind, f"type {kind}")))
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
